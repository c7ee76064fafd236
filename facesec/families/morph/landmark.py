"""Classic landmark-based face morph of two photos (FaceMorpher / OpenCV style), in the first photo's frame.

B is aligned to A by a similarity transform fitted on dlib's 68 points; the mean of the two landmark sets
(plus fixed anchors on A's border) is Delaunay-triangulated; both photos are warped piecewise-affinely onto
it and cross-dissolved; only the face (the hull of the 68 mean points and the forehead above the brows) takes
the blend, through a feathered
mask, so B's hair and background never show. Outside the face the output is A, warped to the mean shape.
"""

from __future__ import annotations

import cv2
import numpy as np

from facesec.data.align import similarity_transform
from facesec.data.faces import map_points

N_LANDMARKS = 68
FEATHER = 0.1
"""Width of the seam's ramp, inward from the face hull, as a fraction of the face width (jaw span)."""
FOREHEAD = 0.4
"""How far above the brows the face region reaches, as a fraction of the brow-to-chin height: morphing tools
blend the forehead too (dlib's 68 points stop at the brows, and a face cut off there keeps A's forehead)."""


def landmark_morph(image_a: np.ndarray, landmarks_a: np.ndarray, image_b: np.ndarray, landmarks_b: np.ndarray,
                   alpha: float) -> np.ndarray:
    """RGB uint8 morph in A's photo frame; alpha = B's weight (0 -> A, 1 -> B's face in A's photo)."""
    lm_a = _checked(image_a, landmarks_a, "a")
    lm_b = _checked(image_b, landmarks_b, "b")
    if not isinstance(alpha, int | float | np.floating) or not 0.0 <= alpha <= 1.0:  # also refuses NaN
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    h, w = image_a.shape[:2]
    b_to_a = similarity_transform(lm_b, lm_a)
    lm_a, lm_b = _with_forehead(lm_a, image_a.shape), _with_forehead(lm_b, image_b.shape)
    anchors = np.array([[0, 0], [(w - 1) / 2, 0], [w - 1, 0], [w - 1, (h - 1) / 2],
                        [w - 1, h - 1], [(w - 1) / 2, h - 1], [0, h - 1], [0, (h - 1) / 2]])
    mean = np.vstack([(1 - alpha) * lm_a + alpha * map_points(lm_b, b_to_a), anchors])
    triangles = _delaunay(mean)
    labels = _rasterise(mean, triangles, h, w)
    warp_a = _warp(image_a, np.vstack([lm_a, anchors]), mean, triangles, labels)
    # B's triangles are taken in B's own photo (anchors mapped back): one resampling instead of two
    src_b = np.vstack([lm_b, map_points(anchors, cv2.invertAffineTransform(b_to_a))])
    warp_b = _warp(image_b, src_b, mean, triangles, labels)
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, np.rint(cv2.convexHull(mean[:len(lm_a)].astype(np.float32)) * 16).astype(np.int32),
                       1, cv2.LINE_8, 4)
    warp_b = _match_colour(warp_b, warp_a, hull)
    ramp = FEATHER * float(np.linalg.norm(mean[16] - mean[0]))
    depth = np.clip(cv2.distanceTransform(hull, cv2.DIST_L2, 5) / max(ramp, 1.0), 0.0, 1.0)
    weight = alpha * depth * depth * (3 - 2 * depth)  # smoothstep: no hard edge at the hull or at the ramp's end
    out = warp_a + weight[..., None] * (warp_b - warp_a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _with_forehead(landmarks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """dlib's 68 points and 10 more above the brows (each brow point raised along the chin-to-brows direction)."""
    brows = landmarks[17:27]
    up = brows.mean(0) - landmarks[8]
    raised = brows + FOREHEAD * up
    raised = np.clip(raised, 0, np.array([shape[1] - 1, shape[0] - 1], dtype=np.float64))
    return np.vstack([landmarks, raised])


def _checked(image: np.ndarray, landmarks: np.ndarray, name: str) -> np.ndarray:
    """The landmarks as float64 68 x 2 after checking both inputs: bad shapes fail here, not deep in OpenCV."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image_{name} must be an RGB uint8 H x W x 3 array, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
    if min(image.shape[:2]) < 2:
        raise ValueError(f"image_{name} is too small: {image.shape}")
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (N_LANDMARKS, 2) or not np.isfinite(lm).all():
        raise ValueError(f"landmarks_{name} must be dlib's 68 x 2 finite points, got shape {lm.shape}")
    if lm.std(0).min() < 0.5:
        raise ValueError(f"landmarks_{name} are degenerate (the 68 points do not spread out like a face's)")
    return lm


def _delaunay(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T x 3 point indices, positive area) of the points, via cv2.Subdiv2D."""
    lo = np.floor(points.min(0)) - 1
    size = np.ceil(points.max(0)) - lo + 2
    subdiv = cv2.Subdiv2D((int(lo[0]), int(lo[1]), int(size[0]), int(size[1])))
    pts32 = points.astype(np.float32)
    subdiv.insert([(float(x), float(y)) for x, y in pts32])
    corners = np.asarray(subdiv.getTriangleList(), np.float32).reshape(-1, 3, 1, 2)
    dist = np.abs(corners - pts32).sum(-1)  # T x 3 x N; Subdiv2D's outer virtual vertices match no point
    tri = dist.argmin(-1)[(dist.min(-1) < 1e-3).all(-1)]
    return tri[np.abs(_areas(points, tri)) > 1e-3]


def _areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Signed areas of the triangles."""
    p = points[triangles]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


def _rasterise(points: np.ndarray, triangles: np.ndarray, h: int, w: int) -> np.ndarray:
    """H x W index of the triangle each pixel belongs to (edges drawn inclusively, so neighbours leave no gap)."""
    labels = np.full((h, w), -1, np.int32)
    fixed = np.rint(points * 16).astype(np.int32)  # 4 fractional bits (shift=4)
    for k in np.argsort(np.abs(_areas(points, triangles))):  # large triangles last: they win shared edge pixels
        cv2.fillConvexPoly(labels, fixed[triangles[k]], int(k), cv2.LINE_8, 4)
    holes = (labels < 0).astype(np.uint8)
    if holes.any():  # Subdiv2D gives thin slivers along the hull to its outer vertices: use the nearest triangle
        _, nearest = cv2.distanceTransformWithLabels(holes, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
        labels = labels[holes == 0][nearest - 1]  # covered pixels are numbered from 1 in scan order
    return labels


def _warp(image: np.ndarray, src: np.ndarray, dst: np.ndarray, triangles: np.ndarray,
          labels: np.ndarray) -> np.ndarray:
    """float32 image resampled so that each triangle of `src` lands on the same triangle of `dst`."""
    d = np.concatenate([dst[triangles], np.ones((len(triangles), 3, 1))], axis=2)
    affine = np.linalg.solve(d, src[triangles]).astype(np.float32)  # T x 3 x 2: [x y 1] @ affine = src
    h, w = labels.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    per = affine[labels]
    map_x = xs * per[..., 0, 0] + ys * per[..., 1, 0] + per[..., 2, 0]
    map_y = xs * per[..., 0, 1] + ys * per[..., 1, 1] + per[..., 2, 1]
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).astype(np.float32)


def _match_colour(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`image` with its per-channel mean and std inside `mask` set to the reference's: B's skin in A's tone."""
    mu, sd = (v.ravel().astype(np.float32) for v in cv2.meanStdDev(image, mask=mask))
    mu_ref, sd_ref = (v.ravel().astype(np.float32) for v in cv2.meanStdDev(reference, mask=mask))
    return np.clip((image - mu) * (sd_ref / np.maximum(sd, 1.0)) + mu_ref, 0, 255)
