"""Attack throughput: the same PGD through facesec's native engine, torchattacks and ART, in one process.

Real celeba-mini faces are detected and aligned with facesec's own pipeline for each recognizer's
template (dlib-resnet: 150 px dlib chips; iresnet50: 112 px ArcFace crops). One facesec Objective
(closed-set identification over a gallery of each identity's first image) and one Budget drive
`facesec.attacks.create(library, "pgd", ...)` for every library: same steps, eps, step size and
random start. Each attack gets a warm-up (one step, same shapes); then the libraries are timed in
turn for `--repeats` rounds, so load from other processes falls on all alike; each one's best counts.
Printed per library: adversarial images/s, the ratio to torchattacks, the clean success rate and
the attack success rate (ASR, over the samples the clean faces do not already satisfy), computed
by `objective.success(objective.margin(model(x_adv), ...))`; the ASRs must agree within 2 points.

No pretrained IResNet-50 weights exist offline: iresnet50 runs with seeded random weights, which
is why the objective is closed-set (identification is meaningful for any embedding).

On a CUDA device the native attack is also timed under bf16 autocast with channels_last (and
torchattacks under bf16 autocast, for a like-for-like ratio); faces are tiled to `--gpu-batch`.
The default keeps a quiet 2-core CPU run to about 3 minutes: 16 dlib probes, 8 IResNet-50 probes
(an IResNet-50 PGD step costs ~25 GFLOP per image). Usage:
    FACESEC_DATA=../shared/data python benchmarks/attack_throughput.py [--n-images 16] [--steps 10]
        [--eps 8/255] [--repeats 3] [--models dlib-resnet,iresnet50:8] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from facesec.attacks import Budget, Objective, create
from facesec.device import pick_device
from facesec.population import select
from facesec.recognizers.base import load
from facesec.threat_model import Data

LIBRARIES = ("native", "torchattacks", "art")
AGREEMENT_POINTS = 2.0


def fraction(text: str) -> float:
    """`8/255`, `0.5/255`, `0.03` or `2`: a budget in [0, 1] pixel units."""
    num, _, den = text.replace(" ", "").partition("/")
    if Fraction(den or "1") == 0:
        raise ValueError(text)
    value = Fraction(num) / Fraction(den or "1")
    if value < 0:
        raise ValueError(text)
    return float(value)


@dataclass
class Case:
    """Probes, the objective judging them, and the recognizer's name."""

    name: str
    x: torch.Tensor
    objective: Objective
    n_identities: int


def build_case(name: str, n_images: int, goal: str, data: str, seed: int, device: torch.device) -> Case:
    """Aligned probes (2 per identity) and a closed-set gallery (each identity's first image)."""
    torch.manual_seed(seed)  # the random IResNet weights
    model = load(name, device)
    if any(p.requires_grad for p in model.parameters()):
        raise RuntimeError(f"{name} has parameters that require gradients")
    k = max(2, math.ceil(n_images / 2))
    pop = select(Data(dataset=data, identities=k, images_per_identity=3, seed=seed), model.info.template,
                 progress=False)
    first = np.arange(len(pop.identity)) % 3 == 0
    faces = pop.faces.to(device)
    with torch.no_grad():
        enrol = model(faces[torch.from_numpy(first).to(device)])
    if model.info.comparison == "cosine":
        enrol = torch.nn.functional.normalize(enrol, dim=-1)
    probes = np.flatnonzero(~first)[:n_images]
    own = pop.identity[probes]
    if goal == "dodging":
        labels = own
    else:  # a seeded random other identity per probe
        labels = (own + np.random.default_rng(seed).integers(1, k, size=len(own))) % k
    objective = Objective(model, "closed-set", goal, enrol,  # type: ignore[arg-type]
                          torch.from_numpy(labels).long().to(device))
    return Case(name, faces[torch.from_numpy(probes).to(device)].contiguous(), objective, k)


def tile(case: Case, n: int) -> Case:
    """The case's probes repeated to `n` samples (random starts make the copies differ)."""
    reps = math.ceil(n / len(case.x))
    index = torch.arange(len(case.x), device=case.x.device).repeat(reps)[:n]
    o = case.objective
    objective = Objective(o.recognizer, o.setting, o.goal, o.gallery, o.labels[index], o.threshold)
    return Case(case.name, case.x[index].contiguous(), objective, case.n_identities)


def success(objective: Objective, x: torch.Tensor, batch: int = 64) -> np.ndarray:
    """Per-sample success of `x` against the objective, in fp32."""
    model = objective.recognizer
    with torch.no_grad():
        emb = torch.cat([model(x[i:i + batch]).float() for i in range(0, len(x), batch)])
    return objective.success(objective.margin(emb, slice(None))).cpu().numpy()


@dataclass
class Variant:
    """One way to run the PGD: a library, optionally under autocast and channels_last."""

    label: str
    library: str
    autocast: torch.dtype | None = None
    channels_last: bool = False


@dataclass
class Row:
    label: str
    seconds: float
    n: int
    success: np.ndarray

    @property
    def rate(self) -> float:
        return self.n / self.seconds


def runner(variant: Variant, case: Case, budget: Budget, steps: int, step_size: float, seed: int
           ) -> Callable[[], torch.Tensor]:
    """A function that runs the variant's PGD on the case's probes and returns the adversarial images."""
    x, objective = case.x, case.objective
    params: dict[str, object] = {"steps": steps, "step_size": step_size, "random_start": True}
    if variant.library in ("native", "art"):
        params["batch_size"] = max(64, len(x))
    native_autocast = variant.library == "native" and variant.autocast is not None
    if native_autocast:
        params["autocast_dtype"] = variant.autocast
    if variant.channels_last:  # a copy of the recognizer, so the other variants keep the default layout
        o = objective
        model = copy.deepcopy(o.recognizer).to(memory_format=torch.channels_last)
        objective = Objective(model, o.setting, o.goal, o.gallery, o.labels, o.threshold)
        x = x.contiguous(memory_format=torch.channels_last)
    attack = create(variant.library, "pgd", **params)
    wrap = variant.autocast is not None and not native_autocast  # the native attack autocasts itself

    def run() -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=variant.autocast or torch.bfloat16, enabled=wrap):
            return attack.run(x, objective, budget, torch.Generator().manual_seed(seed)).x_adv

    return run


def measure(variants: list[Variant], case: Case, budget: Budget, args: argparse.Namespace,
            step_size: float) -> list[Row]:
    """Warm every variant up (one step), then time them in turn, `repeats` rounds; the best round counts.

    Interleaving the variants spreads any load from other processes over all of them alike.
    """
    cuda = case.x.device.type == "cuda"
    for variant in variants:  # warm-up: same shapes, one step
        runner(variant, case, budget, 1, step_size, args.seed)()
    runs = [runner(variant, case, budget, args.steps, step_size, args.seed) for variant in variants]
    best = [math.inf] * len(variants)
    outputs: list[torch.Tensor | None] = [None] * len(variants)
    for _ in range(args.repeats):
        for i, run in enumerate(runs):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            outputs[i] = run()
            if cuda:
                torch.cuda.synchronize()
            best[i] = min(best[i], time.perf_counter() - t)
    rows = []
    for variant, seconds, x_adv in zip(variants, best, outputs, strict=True):
        assert x_adv is not None
        if (x_adv - case.x).abs().amax() > budget.eps + 1e-5:
            raise RuntimeError(f"{variant.label} left the budget")
        rows.append(Row(variant.label, seconds, len(case.x), success(case.objective, x_adv.contiguous())))
    return rows


def report(case: Case, rows: list[Row], clean: np.ndarray, reference: str = "torchattacks") -> bool:
    """Print the table; True when all ASRs agree within AGREEMENT_POINTS."""
    attempted = ~clean
    ref = {r.label: r for r in rows}.get(reference)
    print(f"  {'path':<34} {'adv img/s':>9} {'vs ' + reference:>16} {'success':>8} {'ASR':>7}")
    asrs = []
    for r in rows:
        n_ok = int((r.success & attempted).sum())
        asr = 100.0 * n_ok / max(int(attempted.sum()), 1)
        asrs.append(asr)
        ratio = f"{r.rate / ref.rate:.2f}x" if ref else "-"
        print(f"  {r.label:<34} {r.rate:9.2f} {ratio:>16} {int(r.success.sum()):>4}/{len(r.success):<3} "
              f"{asr:6.1f}%")
    spread = max(asrs) - min(asrs)
    agree = spread <= AGREEMENT_POINTS
    print(f"  clean success {int(clean.sum())}/{len(clean)}; ASR spread {spread:.1f} points "
          f"({'agree' if agree else 'DISAGREE'}: limit {AGREEMENT_POINTS:g})")
    return agree


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=16, help="probe faces (2 per identity), unless a model says")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", type=fraction, default=8 / 255, help="L-inf budget, e.g. 8/255")
    ap.add_argument("--step-size", type=fraction, default=None, help="default 2.5 * eps / steps")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per library (best counts)")
    ap.add_argument("--models", default="dlib-resnet,iresnet50:8",
                    help="recognizers, each optionally with its own probe count: name:N")
    ap.add_argument("--libraries", default=",".join(LIBRARIES))
    ap.add_argument("--goal", choices=("dodging", "impersonation"), default="impersonation")
    ap.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    ap.add_argument("--gpu-batch", type=int, default=256, help="on CUDA, probes tiled to this many")
    ap.add_argument("--data", default="celeba-mini")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    device = pick_device(args.device)
    step_size = args.step_size if args.step_size is not None else 2.5 * args.eps / args.steps
    budget = Budget("linf", args.eps)
    libraries = [s.strip() for s in args.libraries.split(",") if s.strip()]
    gpu = device.type == "cuda"
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, load average {os.getloadavg()[0]:.1f}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if gpu else ""))
    print(f"PGD L-inf eps {args.eps * 255:g}/255, step {step_size * 255:g}/255, {args.steps} steps, random start; "
          f"closed-set {args.goal}; warm-up then best of {args.repeats}")
    all_agree = True
    for entry in [s.strip() for s in args.models.split(",") if s.strip()]:
        name, _, count = entry.partition(":")
        case = build_case(name, int(count) if count else args.n_images, args.goal, args.data, args.seed, device)
        if gpu:
            case = tile(case, args.gpu_batch)
        weights = "random weights (no pretrained IResNet weights offline)" if name.startswith("iresnet") \
            else "pretrained"
        size = case.objective.recognizer.info.input_size
        print(f"\n{name} ({weights}): {len(case.x)} probes, {case.n_identities} identities, {size}x{size} crops")
        clean = success(case.objective, case.x)
        variants = [Variant(lib, lib) for lib in libraries]
        if gpu:
            variants.append(Variant("native bf16 channels_last", "native", torch.bfloat16, channels_last=True))
            if "torchattacks" in libraries:
                variants.append(Variant("torchattacks bf16 autocast", "torchattacks", torch.bfloat16))
        rows = measure(variants, case, budget, args, step_size)
        all_agree &= report(case, rows, clean)
    if not all_agree:
        raise SystemExit("success rates disagree by more than 2 points")


if __name__ == "__main__":
    main()
