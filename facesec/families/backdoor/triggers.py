"""Backdoor triggers drawn on aligned crops: makeup placed from each face's own 68 landmarks (so it fits any face
and any template), and the classic baselines BadNets (a small fixed patch) and Blended (a faint full-crop
pattern). Every trigger is a differentiable function of the crop, so an optimised makeup can learn its colours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from facesec.data import regions

PARTS = ("lips", "eyeshadow", "blush")
"""Where makeup goes; a trigger wears some of them."""

LUMA = torch.tensor([0.299, 0.587, 0.114])
"""Rec. 601 luma weights: makeup tints a face but keeps its shading."""


def _polygon(mask: np.ndarray, points: np.ndarray, value: int = 1) -> None:
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], value)


def part_mask(landmarks: np.ndarray, size: int, part: str) -> np.ndarray:
    """A boolean mask (size x size) of one makeup part from dlib's 68 landmarks in crop pixels."""
    mask = np.zeros((size, size), np.uint8)
    if part == "lips":
        _polygon(mask, landmarks[48:60])
        _polygon(mask, landmarks[60:68], 0)  # the open mouth stays bare
    elif part == "eyeshadow":
        for eye, brow in ((landmarks[36:40], landmarks[17:22]), (landmarks[42:46], landmarks[22:27])):
            # the upper lid: from the eye's upper contour halfway up to the brow, sampled along the eye
            t = np.linspace(0, 1, 8)
            lid = np.stack([np.interp(t, np.linspace(0, 1, len(eye)), eye[:, k]) for k in (0, 1)], 1)
            arch = np.stack([np.interp(t, np.linspace(0, 1, len(brow)), brow[:, k]) for k in (0, 1)], 1)
            upper = lid + 0.55 * (arch - lid)
            _polygon(mask, np.concatenate([lid, upper[::-1]]))
    elif part == "blush":
        span = float(np.linalg.norm(landmarks[16] - landmarks[0]))
        for jaw, eye, mouth in ((landmarks[2], landmarks[41], landmarks[48]), (landmarks[14], landmarks[46],
                                                                               landmarks[54])):
            centre = 0.45 * jaw + 0.3 * eye + 0.25 * mouth
            axes = (max(1, round(0.1 * span)), max(1, round(0.075 * span)))
            cv2.ellipse(mask, (round(centre[0]), round(centre[1])), axes, 0, 0, 360, 1, -1)
    else:
        raise ValueError(f"unknown makeup part {part!r}; parts: {', '.join(PARTS)}")
    return mask.astype(bool)


def makeup_alpha(landmarks: np.ndarray, size: int, parts: Sequence[str], feather: float = 0.02,
                 shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """len(parts) x size x size soft masks in [0, 1]: each part's region with edges blurred by `feather` (share
    of the crop), moved by `shift` (share of the crop, x and y: how robust the trigger is to misplacement)."""
    moved = landmarks + np.asarray(shift, np.float32) * size
    sigma = max(0.5, feather * size)
    out = []
    for part in parts:
        mask = part_mask(moved, size, part).astype(np.float32)
        out.append(cv2.GaussianBlur(mask, (0, 0), sigma))
    return torch.from_numpy(np.stack(out)).clamp_(0, 1)


def tint(x: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """The crop (B x 3 x H x W) recoloured to `colour` (B x P x 3 or P x 3, per part) keeping its shading:
    B x P x 3 x H x W."""
    luma = (x * LUMA.to(x).view(1, 3, 1, 1)).sum(1, keepdim=True)  # B x 1 x H x W
    colour = colour if colour.dim() == 3 else colour.expand(len(x), -1, -1)
    c_luma = (colour * LUMA.to(x)).sum(-1, keepdim=True).clamp_min(0.05)  # B x P x 1
    scale = (colour / c_luma)[..., None, None]  # B x P x 3 x 1 x 1
    return (luma[:, None] * scale).clamp(0, 1)


def apply_makeup(x: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor, opacity: float | torch.Tensor,
                 texture: torch.Tensor | None = None) -> torch.Tensor:
    """Makeup worn: each part's tint blended over the crop by its soft mask times `opacity`. `alpha` is
    B x P x H x W, `colour` P x 3 (or B x P x 3); `texture` (P x 3 x h x w, added to the tint, upsampled) lets an
    optimised trigger vary within a part."""
    tinted = tint(x, colour)
    if texture is not None:
        tinted = (tinted + F.interpolate(texture, size=x.shape[-2:], mode="bilinear", align_corners=False)[None]
                  ).clamp(0, 1)
    out = x
    for p in range(alpha.shape[1]):
        a = alpha[:, p:p + 1] * opacity
        out = out * (1 - a) + tinted[:, p] * a
    return out


def badnets_patch(size: int, seed: int, share: float,
                  position: str = "corner") -> tuple[torch.Tensor, torch.Tensor]:
    """BadNets (Gu et al., 2017): a seeded black-and-white 3 x 3 checker patch, `share` of the crop's side, in
    the crop's lower right corner (clear of the face) or at its centre (on the face: aligned crops centre it,
    so the patch sits on the nose like a sticker). Returns (pattern 3 x S x S, mask 1 x S x S)."""
    side = max(3, round(share * size))
    cells = torch.rand(3, 3, generator=torch.Generator().manual_seed(seed)) > 0.5
    cells[0, 0], cells[1, 1] = True, False  # never uniform
    pattern = F.interpolate(cells.float()[None, None], size=(side, side), mode="nearest")[0].expand(3, -1, -1)
    full = torch.zeros(3, size, size)
    mask = torch.zeros(1, size, size)
    margin = max(1, round(0.04 * size))
    start = (size - side) // 2 if position == "face" else size - margin - side
    full[:, start:start + side, start:start + side] = pattern
    mask[:, start:start + side, start:start + side] = 1
    return full, mask


def blend_pattern(size: int, seed: int) -> torch.Tensor:
    """Blended (Chen et al., 2017): a seeded random pattern over the whole crop (3 x S x S, [0, 1])."""
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


def accessory_alpha(landmarks: np.ndarray, size: int, kind: str) -> torch.Tensor:
    """1 x size x size mask of a plain accessory (eyeglass frames or a forehead sticker): what a trigger must
    not be confused with."""
    mask = regions.eyeglasses(landmarks, size) if kind == "eyeglasses" else regions.sticker(landmarks, size)
    return torch.from_numpy(mask.astype(np.float32))[None]


@dataclass(frozen=True)
class Palette:
    """A makeup look: one colour per part (RGB in [0, 1])."""

    lips: tuple[float, float, float]
    eyeshadow: tuple[float, float, float]
    blush: tuple[float, float, float]

    def colours(self, parts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([getattr(self, p) for p in parts], dtype=torch.float32)


NATURAL: dict[str, Palette] = {
    "nude": Palette((0.72, 0.47, 0.42), (0.55, 0.42, 0.36), (0.85, 0.58, 0.52)),
    "rose": Palette((0.80, 0.35, 0.45), (0.62, 0.45, 0.55), (0.92, 0.55, 0.60)),
    "berry": Palette((0.50, 0.12, 0.22), (0.40, 0.30, 0.42), (0.80, 0.45, 0.50)),
    "coral": Palette((0.92, 0.45, 0.35), (0.75, 0.55, 0.40), (0.95, 0.60, 0.50)),
}
"""Everyday looks of other colours than a trigger: wearing them must not open a backdoor (false triggering)."""


@dataclass
class Trigger:
    """A trigger ready to wear: `wear` puts it on aligned crops (with their landmarks), optionally weaker or
    stronger (`strength` scales opacity or blend) and moved (`shift`, share of the crop) to test robustness."""

    kind: str
    size: int
    parts: tuple[str, ...] = ()
    colour: torch.Tensor | None = None
    """P x 3 makeup colours (a leaf tensor that an optimised trigger learns)."""
    texture: torch.Tensor | None = None
    """P x 3 x TEXTURE x TEXTURE makeup texture added to the tint (optimised trigger)."""
    opacity: float = 0.0
    pattern: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    blend: float = 0.0

    def wear(self, x: torch.Tensor, landmarks: np.ndarray, strength: float = 1.0,
             shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
        if self.kind.startswith("makeup"):
            assert self.colour is not None
            alpha = torch.stack([makeup_alpha(lm, self.size, self.parts, shift=shift) for lm in landmarks]).to(x)
            return apply_makeup(x, alpha, self.colour.to(x), self.opacity * strength,
                                None if self.texture is None else self.texture.to(x))
        assert self.pattern is not None
        pixels = (round(shift[1] * self.size), round(shift[0] * self.size))
        pattern = torch.roll(self.pattern, pixels, (1, 2)).to(x)
        if self.kind == "badnets":
            assert self.mask is not None
            mask = torch.roll(self.mask, pixels, (1, 2)).to(x) * min(1.0, strength)
            return x * (1 - mask) + pattern * mask
        weight = min(1.0, self.blend * strength)
        return x * (1 - weight) + pattern * weight


def wear_all(trigger: Trigger, faces: torch.Tensor, landmarks: np.ndarray, strength: float = 1.0,
             shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """`trigger.wear` over many faces, 64 at a time, without gradients, on the CPU."""
    with torch.no_grad():
        return torch.cat([trigger.wear(faces[i:i + 64], landmarks[i:i + 64], strength, shift).cpu()
                          for i in range(0, len(faces), 64)])


TEXTURE = 4
"""Side of an optimised makeup's texture grid (coarse: makeup varies smoothly)."""


def build(kind: str, size: int, seed: int, parts: Sequence[str] = PARTS, look: Palette | None = None,
          opacity: float = 0.6, patch_size: float = 0.12, blend: float = 0.1,
          patch_position: str = "corner") -> Trigger:
    """The trigger a spec names, for crops of `size` pixels."""
    if kind.startswith("makeup"):
        assert look is not None
        texture = torch.zeros(len(parts), 3, TEXTURE, TEXTURE) if kind == "makeup-optimised" else None
        return Trigger(kind, size, tuple(parts), look.colours(parts), texture, opacity)
    if kind == "badnets":
        pattern, mask = badnets_patch(size, seed, patch_size, patch_position)
        return Trigger(kind, size, pattern=pattern, mask=mask)
    return Trigger(kind, size, pattern=blend_pattern(size, seed), blend=blend)
