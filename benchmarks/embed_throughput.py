"""Embedding throughput: facesec's PyTorch port of dlib's ResNet against dlib's own C++ model, and
facesec's TF.js loader running hse-faceres against the same graph without folding its batch norms
and clamps into the convolutions, and against onnx2torch and onnxruntime on an ONNX export of the
same graph (when `--hse-onnx` gives one; it is not part of facesec).

All run on the same aligned crops in this one process; the ratios are printed. On a CUDA machine
both PyTorch models are also timed at batch 256 in fp32 and bf16. Usage:
    FACESEC_DATA=../shared/data python benchmarks/embed_throughput.py [--chips 64] [--repeats 3] \
        [--hse-onnx ../shared/models/hse-faceres/faceres_emb.onnx]
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
from facesec.recognizers import packaged
from facesec.recognizers.base import Recognizer, load
from facesec.recognizers.dlib_resnet import MODEL_FILE
from facesec.recognizers.tfjs import HSE_OUTPUT, Nhwc
from facesec.recognizers.tfjs_format import read_graph_model
from facesec.recognizers.tfjs_graph import TfjsGraph


def best_rate(fn: Callable[[], None], n_images: int, repeats: int) -> float:
    """Images per second of the fastest of `repeats` timed runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n_images / min(times)


def torch_rates(model: Callable[[torch.Tensor], object], x: torch.Tensor, repeats: int,
                batches: tuple[int, ...] = (1, 32)) -> dict[int, float]:
    """Images per second at each batch size on the CPU, fp32."""
    rates = {}
    for batch in batches:
        def run(b: int = batch) -> None:
            with torch.inference_mode():
                for i in range(0, len(x), b):
                    model(x[i:i + b])
        rates[batch] = best_rate(run, len(x), repeats)
    return rates


def gpu_rates(model: Recognizer, x: torch.Tensor, repeats: int) -> None:
    gpu = model.to("cuda").to(memory_format=torch.channels_last)
    n = len(x)
    big = x.repeat((256 * 8 + n - 1) // n, 1, 1, 1)[: 256 * 8].cuda().contiguous(memory_format=torch.channels_last)
    for dtype in (torch.float32, torch.bfloat16):
        def run_gpu(d: torch.dtype = dtype) -> None:
            with torch.inference_mode(), torch.autocast("cuda", dtype=d, enabled=d != torch.float32):
                for i in range(0, len(big), 256):
                    gpu(big[i:i + 256])
            torch.cuda.synchronize()
        rate = best_rate(run_gpu, len(big), repeats)
        print(f"{model.info.name} GPU {str(dtype).split('.')[-1]:8s} batch 256: {rate:10.1f} img/s")


def crops(model: Recognizer, data: str, n: int) -> torch.Tensor:
    ds = load_dataset(data)
    faces = align_faces([p for p, _ in ds.items[: n + 8]], model.info.template, progress=False)
    return torch.from_numpy(faces.crops[:n]).permute(0, 3, 1, 2).float().div(255)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="celeba-mini")
    ap.add_argument("--chips", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hse-onnx", help="an ONNX export of hse-faceres's graph, timed as the library baseline")
    args = ap.parse_args()

    model = load("dlib-resnet")
    x = crops(model, args.data, args.chips)
    chips = (x.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    n = len(chips)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, {n} chips")

    dlib_model = dlib.face_recognition_model_v1(str(models_dir() / MODEL_FILE))
    chip_list = [np.ascontiguousarray(c) for c in chips]
    dlib_rate = best_rate(lambda: dlib_model.compute_face_descriptor(chip_list), n, args.repeats)
    print(f"dlib C++ (batch {n}):        {dlib_rate:8.1f} img/s")
    for batch, rate in torch_rates(model, x, args.repeats).items():
        print(f"port CPU fp32 batch {batch:3d}:   {rate:8.1f} img/s   {rate / dlib_rate:5.2f}x dlib")

    if packaged.is_installed("hse-faceres"):
        hse = load("hse-faceres")
        xh = crops(hse, args.data, args.chips)
        sizes = (1, 16, 32)
        ours = torch_rates(hse, xh, args.repeats, sizes)
        unfused = Nhwc(TfjsGraph(read_graph_model(packaged.installed("hse-faceres") / "faceres.json"), HSE_OUTPUT,
                                 fuse=False)).eval()
        baselines: dict[str, dict[int, float]] = {
            "unfused graph": torch_rates(lambda t: unfused(t * 255), xh, args.repeats, sizes)}
        if args.hse_onnx:
            import onnxruntime
            from onnx2torch import convert

            converted = convert(args.hse_onnx).eval()
            nhwc = (xh * 255).permute(0, 2, 3, 1).contiguous()
            baselines["onnx2torch"] = torch_rates(converted, nhwc, args.repeats, sizes)
            session = onnxruntime.InferenceSession(args.hse_onnx, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            feed = nhwc.numpy()
            baselines["onnxruntime"] = {b: best_rate(lambda b=b: [session.run(None, {name: feed[i:i + b]})
                                                                    for i in range(0, n, b)], n, args.repeats)
                                        for b in sizes}
        for batch, rate in ours.items():
            ratios = "".join(f"   {rate / r[batch]:5.2f}x {lib}" for lib, r in baselines.items())
            print(f"hse-faceres (TF.js loader) CPU fp32 batch {batch:3d}: {rate:8.1f} img/s{ratios}")
        for lib, r in baselines.items():
            for batch, rate in r.items():
                print(f"hse-faceres via {lib} CPU fp32 batch {batch:3d}: {rate:8.1f} img/s")
    else:
        print("hse-faceres: not installed (facesec models fetch hse-faceres); skipped")

    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}")
        gpu_rates(model, x, args.repeats)
        if packaged.is_installed("hse-faceres"):
            gpu_rates(load("hse-faceres"), xh, args.repeats)


if __name__ == "__main__":
    main()
