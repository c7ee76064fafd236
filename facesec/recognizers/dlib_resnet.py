"""dlib's `dlib_face_recognition_resnet_model_v1` (99.38% on LFW) as a PyTorch module.

The weights are read straight from the `.dat` file that the `face_recognition_models` package
installs, so the model dlib ships can be attacked white-box. The network mirrors dlib's
template definition (a ResNet-29 at 150x150) including dlib's quirks: stride-2 convolutions and
pools have no padding, and residual sums zero-pad the smaller operand instead of projecting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facesec.errors import WeightsError
from facesec.recognizers.dlib_format import DlibReader

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
INPUT_SIZE = 150
FC_NO_BIAS = 1  # dlib's fc_bias_mode enum


# ---------------------------------------------------------------------------------------------
# Structure of dlib's network, outermost layer first, as dlib serialises it.

def _block(stride: int) -> list[str]:
    # block<N,BN,stride,SUBNET> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>
    return ["affine", "con", "relu", "affine", "con"]


def _ares() -> list[str]:
    # relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
    return ["relu", "add_prev", *_block(1), "tag"]


def _ares_down() -> list[str]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
    return ["relu", "add_prev", "avg_pool", "skip", "tag", *_block(2), "tag"]


LEVELS: list[tuple[int, int, bool]] = [
    # (channels, residual blocks, first block downsamples), in forward order
    (32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True),
]


def _structure() -> list[str]:
    nodes = ["loss", "fc", "avg_pool"]
    for _, blocks, down in reversed(LEVELS):
        nodes += _ares() * (blocks - 1 if down else blocks)
        if down:
            nodes += _ares_down()
    return nodes + ["max_pool", "relu", "affine", "con", "input"]


@dataclass
class DlibNetParams:
    """What the `.dat` file holds that inference needs, in forward order."""

    input_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    convs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    affines: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    fc: np.ndarray | None = None
    distance_threshold: float = 0.6
    n_params: int = 0


class _Parser:
    def __init__(self, reader: DlibReader) -> None:
        self.r = reader
        self.nodes = _structure()
        self.out = DlibNetParams()

    def parse(self) -> DlibNetParams:
        self._node(0)
        if not self.r.at_end:
            raise WeightsError(f"{self.r.source}: {len(self.r.data) - self.r.pos} unread bytes after the "
                               "network: not dlib_face_recognition_resnet_model_v1")
        return self.out

    def _node(self, i: int) -> None:
        kind, r = self.nodes[i], self.r
        if kind == "loss":
            r.expect_int(1)
            if r.expect_string("loss_metric_", "loss_metric_2") == "loss_metric_2":
                r.read_float()  # margin
                self.out.distance_threshold = r.read_float()
            self._node(i + 1)
        elif kind in ("tag", "skip"):
            r.expect_int(1)
            self._node(i + 1)
        elif self.nodes[i + 1] == "input":
            version = r.expect_int(2, 3)
            self._input()
            self._details(kind)
            for _ in range(3):
                r.read_bool()
            for _ in range(3):  # x_grad, cached_output, grad_final
                r.read_tensor()
            if version == 3:
                r.read_int()
        else:
            version = r.expect_int(1, 2)
            self._node(i + 1)
            self._details(kind)
            for _ in range(3):
                r.read_bool()
            for _ in range(2 if version == 1 else 3):  # x_grad, cached_output[, params_grad]
                r.read_tensor()

    def _input(self) -> None:
        r = self.r
        r.expect_string("input_rgb_image_sized")
        self.out.input_mean = (r.read_float(), r.read_float(), r.read_float())
        if (r.read_int(), r.read_int()) != (INPUT_SIZE, INPUT_SIZE):
            raise WeightsError(f"{r.source}: input size is not {INPUT_SIZE}x{INPUT_SIZE}")

    def _details(self, kind: str) -> None:
        r = self.r
        if kind == "con":
            tag = r.expect_string("con_4", "con_5", "con_6")
            params = r.read_tensor().ravel()
            for _ in range(7):  # num_filters, nr, nc, stride_y, stride_x, padding_y, padding_x
                r.read_int()
            fshape, bshape = r.alias_tensor(), r.alias_tensor()
            for _ in range(4):  # learning-rate and weight-decay multipliers
                r.read_float()
            use_bias = r.read_bool() if tag in ("con_5", "con_6") else True
            if tag == "con_6":
                r.read_bool()
            nf = int(np.prod(fshape))
            bias = params[nf:nf + int(np.prod(bshape))] if use_bias else np.zeros(fshape[0], np.float32)
            self.out.convs.append((params[:nf].reshape(fshape), bias))
            self.out.n_params += params.size
        elif kind == "affine":
            tag = r.expect_string("affine_", "affine_2")
            params = r.read_tensor().ravel()
            gshape, _ = r.alias_tensor(), r.alias_tensor()
            r.read_int()  # mode
            if tag == "affine_2":
                r.read_bool()
            k = int(np.prod(gshape))
            self.out.affines.append((params[:k], params[k:2 * k]))
            self.out.n_params += params.size
        elif kind == "fc":
            tag = r.expect_string("fc_2", "fc_3")
            n_out, n_in = r.read_int(), r.read_int()
            params = r.read_tensor().ravel()
            r.alias_tensor()
            r.alias_tensor()
            if r.read_int() != FC_NO_BIAS:
                raise WeightsError(f"{r.source}: expected an fc layer without bias")
            for _ in range(4):
                r.read_float()
            if tag == "fc_3":
                r.read_bool()
            self.out.fc = params[:n_in * n_out].reshape(n_in, n_out)
            self.out.n_params += params.size
        elif kind == "relu":
            if r.expect_string("relu_", "relu_2") == "relu_2":
                r.read_bool()
        elif kind in ("max_pool", "avg_pool"):
            r.expect_string(f"{kind}_2")
            for _ in range(6):
                r.read_int()
        elif kind == "add_prev":
            r.expect_string("add_prev_")
        else:  # pragma: no cover - the structure list only names the kinds above
            raise AssertionError(kind)


def read_dlib_resnet(path: Path) -> DlibNetParams:
    """Parse `dlib_face_recognition_resnet_model_v1.dat`; every byte must be consumed."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read dlib model file {path}: {exc.strerror}") from exc
    return _Parser(DlibReader(data, str(path))).parse()


# ---------------------------------------------------------------------------------------------
# The network.

def _add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: zero-pad the smaller operand (channels, bottom and right edges), then add."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        dc, dh, dw = c - t.shape[1], h - t.shape[2], w - t.shape[3]
        return F.pad(t, (0, dw, 0, dh, 0, dc)) if dc or dh or dw else t

    return pad(a) + pad(b)


class Affine(nn.Module):
    """Per-channel scale and shift (dlib's affine layer: batch norm folded at test time)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


Norm = Literal["affine", "batchnorm"]
"""dlib trains with batch norm and ships it folded into affine layers; facesec does the same."""


def _norm(kind: Norm, channels: int) -> nn.Module:
    return Affine(channels) if kind == "affine" else nn.BatchNorm2d(channels)


class ResBlock(nn.Module):
    """dlib's `ares` / `ares_down`: two 3x3 convolutions and an unprojected shortcut."""

    def __init__(self, c_in: int, c_out: int, down: bool, norm: Norm = "affine") -> None:
        super().__init__()
        stride = 2 if down else 1
        self.down = down
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=0 if down else 1)
        self.aff1 = _norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=1)
        self.aff2 = _norm(norm, c_out)
        self.erosion: tuple[float, torch.Generator] | None = None
        """Set by `eroded`: scale the shortcut by a random factor per sample and pass."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        if self.erosion is not None:
            amount, rng = self.erosion
            shortcut = shortcut * (1 + (torch.rand(len(x), 1, 1, 1, generator=rng) * 2 - 1) * amount).to(x)
        return F.relu(_add_zero_padded(y, shortcut))


@contextmanager
def eroded(net: nn.Module, amount: float, rng: torch.Generator) -> Iterator[None]:
    """Within it, every pass of `net` (a DlibResNet) scales each residual shortcut by a random factor in
    [1 - amount, 1 + amount], drawn per sample: a different ghost of the network each time (skip-connection
    erosion, Ghost Networks, Li et al., AAAI 2020), an ensemble for free. Outside it, the network is itself."""
    blocks = [b for b in net.modules() if isinstance(b, ResBlock)]
    for b in blocks:
        b.erosion = (amount, rng)
    try:
        yield
    finally:
        for b in blocks:
            b.erosion = None


class DlibResNet(nn.Module):
    """Aligned RGB in [0, 1], N x 3 x 150 x 150 -> dlib's 128-d face descriptor (not normalised).

    `norm="batchnorm"` builds the trainable form (a student of the same architecture).
    """

    mean: torch.Tensor

    def __init__(self, input_mean: tuple[float, float, float] = (122.782, 117.001, 104.298),
                 norm: Norm = "affine") -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(input_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 32, 7, 2, padding=0)
        self.aff = _norm(norm, 32)
        blocks: list[nn.Module] = []
        c_in = 32
        for channels, n, down in LEVELS:
            for j in range(n):
                blocks.append(ResBlock(c_in, channels, down and j == 0, norm))
                c_in = channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x * 255.0 - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.aff(self.conv(x))), 3, 2)
        x = self.blocks(x).mean(dim=(2, 3))
        return self.fc(x)

    def load_dlib(self, params: DlibNetParams) -> None:
        """Copy parsed dlib weights into this module, in forward order, checking every shape."""
        blocks = [cast(ResBlock, b) for b in self.blocks]
        convs = [self.conv] + [c for b in blocks for c in (b.conv1, b.conv2)]
        affs = [cast(Affine, a) for a in [self.aff] + [a for b in blocks for a in (b.aff1, b.aff2)]]
        if not all(isinstance(a, Affine) for a in affs):
            raise WeightsError("dlib weights load into the affine (test-time) form: DlibResNet(norm='affine')")
        if len(convs) != len(params.convs) or len(affs) != len(params.affines) or params.fc is None:
            raise WeightsError("dlib model file does not match dlib_face_recognition_resnet_model_v1")
        self.mean.copy_(torch.tensor(params.input_mean).view(1, 3, 1, 1))
        with torch.no_grad():
            for conv, (w, b) in zip(convs, params.convs, strict=True):
                _copy(conv.weight, w)
                _copy(conv.bias, b)
            for aff, (g, b) in zip(affs, params.affines, strict=True):
                _copy(aff.weight, g)
                _copy(aff.bias, b)
            _copy(self.fc.weight, params.fc.T)


def _copy(dst: torch.Tensor | None, src: np.ndarray) -> None:
    assert dst is not None
    if tuple(dst.shape) != tuple(src.shape):
        raise WeightsError(f"dlib weights of shape {src.shape} do not fit a layer of shape {tuple(dst.shape)}")
    dst.copy_(torch.from_numpy(np.ascontiguousarray(src)))
