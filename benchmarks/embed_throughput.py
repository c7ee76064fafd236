"""Embedding throughput: facesec's PyTorch port of dlib's ResNet against dlib's own C++ model.

Both run on the same aligned chips in this one process; the ratio is printed. On a CUDA machine
the port is also timed at batch 256 in fp32 and bf16. Usage:
    FACESEC_DATA=../shared/data python benchmarks/embed_throughput.py [--chips 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import dlib
import numpy as np
import torch

from facesec.data.dataset import load_dataset
from facesec.data.pipeline import align_faces
from facesec.dlib_models import models_dir
from facesec.recognizers import load
from facesec.recognizers.dlib_resnet import MODEL_FILE


def best_rate(fn: Callable[[], None], n_images: int, repeats: int) -> float:
    """Images per second of the fastest of `repeats` timed runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n_images / min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="celeba-mini")
    ap.add_argument("--chips", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    model = load("dlib-resnet")
    ds = load_dataset(args.data)
    faces = align_faces([p for p, _ in ds.items[: args.chips + 8]], model.info.template, progress=False)
    chips = faces.crops[: args.chips]
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float().div(255)
    n = len(chips)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, {n} chips")

    dlib_model = dlib.face_recognition_model_v1(str(models_dir() / MODEL_FILE))
    chip_list = [np.ascontiguousarray(c) for c in chips]
    dlib_rate = best_rate(lambda: dlib_model.compute_face_descriptor(chip_list), n, args.repeats)
    print(f"dlib C++ (batch {n}):        {dlib_rate:8.1f} img/s")

    for batch in (1, 32):
        def run(b: int = batch) -> None:
            with torch.inference_mode():
                for i in range(0, n, b):
                    model(x[i:i + b])
        rate = best_rate(run, n, args.repeats)
        print(f"port CPU fp32 batch {batch:3d}:   {rate:8.1f} img/s   {rate / dlib_rate:5.2f}x dlib")

    if torch.cuda.is_available():
        gpu = load("dlib-resnet", "cuda").to(memory_format=torch.channels_last)
        big = x.repeat((256 * 8 + n - 1) // n, 1, 1, 1)[: 256 * 8].cuda().contiguous(memory_format=torch.channels_last)
        print(f"GPU: {torch.cuda.get_device_name()}")
        for dtype in (torch.float32, torch.bfloat16):
            def run_gpu(d: torch.dtype = dtype) -> None:
                with torch.inference_mode(), torch.autocast("cuda", dtype=d, enabled=d != torch.float32):
                    for i in range(0, len(big), 256):
                        gpu(big[i:i + 256])
                torch.cuda.synchronize()
            rate = best_rate(run_gpu, len(big), args.repeats)
            print(f"port GPU {str(dtype).split('.')[-1]:8s} batch 256: {rate:10.1f} img/s")


if __name__ == "__main__":
    main()
