"""Landmark morph throughput: facesec's OpenCV morph (one dense remap per photo built from per-triangle
affine maps) against the same morph with scikit-image's PiecewiseAffineTransform + warp doing the
piecewise-affine warps (the library way), on the same celeba-mini photos and landmarks, in one process.

scikit-image comes with facesec (the backdoor family measures stealth with it). Usage:
    FACESEC_DATA=../shared/data python benchmarks/morph_throughput.py [--pairs 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from skimage.transform import PiecewiseAffineTransform, warp

from facesec.data.dataset import load_dataset
from facesec.data.faces import FaceAnalyzer, NoFace
from facesec.data.images import read_rgb
from facesec.families.morph import landmark


def _skimage_warp(image: np.ndarray, src: np.ndarray, dst: np.ndarray, h: int, w: int) -> np.ndarray:
    """`image` warped so that its points `src` land on `dst`, by scikit-image (output pixels -> input)."""
    tform = PiecewiseAffineTransform.from_estimate(dst, src)
    return warp(image, tform, output_shape=(h, w), order=1, mode="reflect", preserve_range=True)


def skimage_morph(image_a: np.ndarray, lm_a: np.ndarray, image_b: np.ndarray, lm_b: np.ndarray,
                  alpha: float) -> np.ndarray:
    """The same morph as `landmark.landmark_morph`, with scikit-image's piecewise-affine warps."""
    import cv2

    h, w = image_a.shape[:2]
    b_to_a = landmark.similarity_transform(lm_b, lm_a)
    lm_a, lm_b = landmark._with_forehead(lm_a, image_a.shape), landmark._with_forehead(lm_b, image_b.shape)
    anchors = np.array([[0, 0], [(w - 1) / 2, 0], [w - 1, 0], [w - 1, (h - 1) / 2],
                        [w - 1, h - 1], [(w - 1) / 2, h - 1], [0, h - 1], [0, (h - 1) / 2]])
    mean = np.vstack([(1 - alpha) * lm_a + alpha * landmark.map_points(lm_b, b_to_a), anchors])
    warp_a = _skimage_warp(image_a, np.vstack([lm_a, anchors]), mean, h, w)
    src_b = np.vstack([lm_b, landmark.map_points(anchors, cv2.invertAffineTransform(b_to_a))])
    warp_b = _skimage_warp(image_b, src_b, mean, h, w)
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, np.rint(cv2.convexHull(mean[:len(lm_a)].astype(np.float32)) * 16).astype(np.int32),
                       1, cv2.LINE_8, 4)
    warp_b = landmark._match_colour(warp_b, warp_a, hull)
    ramp = landmark.FEATHER * float(np.linalg.norm(mean[16] - mean[0]))
    depth = np.clip(cv2.distanceTransform(hull, cv2.DIST_L2, 5) / max(ramp, 1.0), 0.0, 1.0)
    weight = alpha * depth * depth * (3 - 2 * depth)
    out = warp_a + weight[..., None] * (warp_b - warp_a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    analyzer = FaceAnalyzer()
    faces: list[tuple[np.ndarray, np.ndarray]] = []
    for path, _ in load_dataset("celeba-mini").items:
        if len(faces) == 2 * args.pairs:
            break
        image, _ = read_rgb(path)
        try:
            faces.append((image, analyzer.detect(image).landmarks68))
        except NoFace:
            continue
    pairs = [(faces[2 * i], faces[2 * i + 1]) for i in range(args.pairs)]
    print(f"{platform.processor() or platform.machine()}, {len(pairs)} pairs of 250 x 250 photos, alpha 0.5")
    timings = {}
    for name, fn in (("facesec (OpenCV remap)", landmark.landmark_morph), ("scikit-image warps", skimage_morph)):
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            for (ia, la), (ib, lb) in pairs:
                fn(ia, la, ib, lb, 0.5)
            best = min(best, (time.perf_counter() - start) / len(pairs))
        timings[name] = best
        print(f"{name:24s} {best * 1e3:7.1f} ms per morph")
    (ia, la), (ib, lb) = pairs[0]
    diff = np.abs(landmark.landmark_morph(ia, la, ib, lb, 0.5).astype(int) - skimage_morph(ia, la, ib, lb, 0.5))
    print(f"speed-up {timings['scikit-image warps'] / timings['facesec (OpenCV remap)']:.1f}x; "
          f"mean |difference| {diff.mean():.2f} grey levels (Delaunay triangulations differ at the border)")


if __name__ == "__main__":
    main()
