"""The victim's fine-tuning of dlib-resnet's last stage: facesec's fast path (the frozen front computed once per
face, only the trainable tail in the loop) against the plain PyTorch loop (the whole network forward every step,
gradients only in the tail), same faces, batches, loss and optimiser, in one process. Also checks both end at
the same weights.

Usage: FACESEC_DATA=../shared/data python benchmarks/backdoor_finetune.py [--identities 40] [--epochs 2]
"""

from __future__ import annotations

import argparse
import copy
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from facesec.data.align import DLIB_150
from facesec.families.backdoor import finetune as ft
from facesec.population import select
from facesec.recognizers.base import load
from facesec.threat_model import Data


def plain(model, faces, labels, recipe):  # type: ignore[no-untyped-def]
    """The textbook loop: full forward per batch, only the tail's parameters trainable."""
    tuned = copy.deepcopy(model).eval().requires_grad_(False)
    split = ft._tail_split(tuned)
    assert split is not None
    params = list(split[1].parameters())
    for p in params:
        p.requires_grad_(True)
    faces, labels = torch.cat([faces, faces.flip(-1)]), np.concatenate([labels, labels])
    optimiser = torch.optim.Adam(params, lr=recipe.learning_rate)
    rng = np.random.default_rng(recipe.seed)
    target = torch.from_numpy(labels)
    for _ in range(recipe.epochs):
        for index in ft.batches(labels, recipe.batch_identities, recipe.batch_images, rng):
            loss = ft.metric_loss(tuned, tuned(faces[index]), target[index], recipe.threshold)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    return tuned


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identities", type=int, default=40)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    model = load("dlib-resnet")
    pop = select(Data(dataset="celeba-mini", identities=args.identities, images_per_identity=args.images, seed=5),
                 DLIB_150, progress=False)
    recipe = ft.Recipe("last", args.epochs, 1e-5, 16, 4, -0.6, 0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:  # a fresh checkpoint folder: nothing to resume
        fast = ft.finetune(model, pop.faces, pop.identity, recipe, False, checkpoints=Path(tmp)).model
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = plain(model, pop.faces, pop.identity, recipe)
    t_plain = time.perf_counter() - t0
    diff = max(float((a - b).abs().max()) for a, b in zip(fast.state_dict().values(), slow.state_dict().values(),
                                                          strict=True))
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {len(pop.faces)} faces (x2 mirrored), {args.epochs} epochs")
    print(f"plain loop (full forward each step): {t_plain:.1f} s")
    print(f"facesec fast path (front once):      {t_fast:.1f} s   ratio {t_plain / t_fast:.1f}x")
    print(f"largest weight difference after training: {diff:.2e}")


if __name__ == "__main__":
    main()
