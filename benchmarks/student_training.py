"""Student training throughput: the plain fp32 PyTorch step against facesec's fast path.

`facesec surrogate train` runs the student in channels-last memory under bf16 autocast; this
times one optimiser step (forward, backward, AdamW) of each student architecture both ways on
the same random batch, in this one process, and prints images per second and the ratio. Usage:
    python benchmarks/student_training.py [--batch 32] [--repeats 3] [--arch dlib-resnet iresnet18]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from facesec.recognizers.students import ARCHITECTURES, build


def rate(arch: str, batch: int, repeats: int, fast: bool, device: torch.device) -> float:
    """Images per second of the fastest of `repeats` training steps (after one warm-up step)."""
    torch.manual_seed(0)
    net = build(arch, 128).to(device).train()
    x = torch.rand(batch, 3, 150, 150, device=device)
    if fast:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    target = torch.randn(batch, 128, device=device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            out = net(x)
        loss = (out.float() - target).pow(2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return batch / min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--arch", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {name}, torch threads: {torch.get_num_threads()}, batch {args.batch}")
    for arch in args.arch:
        plain = rate(arch, args.batch, args.repeats, fast=False, device=device)
        fast = rate(arch, args.batch, args.repeats, fast=True, device=device)
        print(f"{arch:12s} fp32 {plain:7.1f} img/s | channels-last + bf16 {fast:7.1f} img/s | x{fast / plain:.2f}")


if __name__ == "__main__":
    main()
