"""TSM ResNet-18 (Lin et al., "TSM: Temporal Shift Module for Efficient Video Understanding",
ICCV 2019), as used by Gare et al. for lung-ultrasound biomarkers.

Parameter names match torchvision's ``resnet18`` so a local ImageNet weights file loads directly.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lus.schema import BiomarkerSchema
from lus.video import InputSpec


def temporal_shift(x: torch.Tensor, num_segments: int, fold_div: int = 8) -> torch.Tensor:
    """Shift 1/fold_div of the channels one frame back and 1/fold_div one frame forward.

    ``x`` is ``(clips * num_segments, C, H, W)`` with each clip's frames consecutive and in
    order. Frames shifted past a clip's ends are dropped and the gap is zero-filled.
    """
    nt, c, h, w = x.shape
    x = x.view(nt // num_segments, num_segments, c, h, w)
    fold = c // fold_div
    # pad order: (W, W, H, H, C, C, T_start, T_end)
    left = F.pad(x[:, 1:, :fold], (0, 0, 0, 0, 0, 0, 0, 1))  # shift left: frame t sees t+1
    right = F.pad(x[:, :-1, fold : 2 * fold], (0, 0, 0, 0, 0, 0, 1, 0))  # shift right: sees t-1
    unchanged = x[:, :, 2 * fold :]
    shifted: torch.Tensor = torch.cat([left, right, unchanged], dim=2)
    return shifted.view(nt, c, h, w)


class BasicBlock(nn.Module):
    """ResNet basic block with the temporal shift at the start of its residual branch."""

    expansion = 1

    def __init__(self, in_ch: int, out_ch: int, stride: int, num_segments: int) -> None:
        super().__init__()
        self.num_segments = num_segments
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = temporal_shift(x, self.num_segments)  # residual shift: the identity path is untouched
        out = self.relu(self.bn1(self.conv1(out)))
        out = self.bn2(self.conv2(out))
        result: torch.Tensor = self.relu(out + identity)
        return result


class GrayToNormalizedRGB(nn.Module):
    """uint8 or [0, 255] float gray frames -> ImageNet-normalised 3-channel frames."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.to(self.mean.dtype).unsqueeze(1) / 255.0  # (N, 1, H, W)
        return (x - self.mean) / self.std  # broadcasts gray to 3 channels


class TSMResNet(nn.Module):
    """Clips ``(B, T, H, W)`` of gray frames -> ``(B, num_outputs)`` logits, frames averaged."""

    def __init__(
        self,
        *,
        num_outputs: int,
        spec: InputSpec,
        width: int = 64,
        layers: tuple[int, ...] = (2, 2, 2, 2),
    ) -> None:
        super().__init__()
        self.spec = spec
        self.num_segments = spec.frames_per_clip
        self.width = width
        self.normalize = GrayToNormalizedRGB(spec.mean, spec.std)
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._stage(width, width, 1, layers[0])
        self.layer2 = self._stage(width, width * 2, 2, layers[1])
        self.layer3 = self._stage(width * 2, width * 4, 2, layers[2])
        self.layer4 = self._stage(width * 4, width * 8, 2, layers[3])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = width * 8
        self.fc = nn.Linear(self.feature_dim, num_outputs)

    def _stage(self, in_ch: int, out_ch: int, stride: int, blocks: int) -> nn.Sequential:
        first = BasicBlock(in_ch, out_ch, stride, self.num_segments)
        rest = [BasicBlock(out_ch, out_ch, 1, self.num_segments) for _ in range(blocks - 1)]
        return nn.Sequential(first, *rest)

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, feature_dim)``: per-frame features averaged over time."""
        b, t, h, w = clips.shape
        if t != self.num_segments:
            raise ValueError(f"clip has {t} frames; the model was built for {self.num_segments}")
        x = self.normalize(clips.reshape(b * t, h, w))
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        per_frame: torch.Tensor = self.avgpool(x).flatten(1)
        return per_frame.view(b, t, -1).mean(dim=1)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc(self.features(clips))
        return logits


def load_torchvision_weights(model: TSMResNet, weights_path: Path) -> list[str]:
    """Copy a torchvision ResNet-18 state dict into ``model`` (all but the classifier head).

    Returns the names of parameters that were not initialised from the file.
    """
    state = torch.load(weights_path, map_location="cpu", weights_only=True)  # no pickled code
    own = model.state_dict()
    usable = {
        k: v
        for k, v in state.items()
        if k in own and own[k].shape == v.shape and not k.startswith("fc.")
    }
    if not usable:
        raise ValueError(
            f"{weights_path} holds no ResNet-18 weights matching a width-{model.width} model"
        )
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def tsm_resnet18(
    *,
    schema: BiomarkerSchema,
    spec: InputSpec | None = None,
    width: int = 64,
    weights_path: Path | None = None,
) -> TSMResNet:
    """TSM ResNet-18 with one output per biomarker of ``schema`` (Gare et al., TSM ResNet-18).

    Args:
        schema: the biomarker schema; sets the head size.
        spec: frames per clip and frame size (default 15 x 224 x 224, 4 clips).
        width: channels of the first stage (64 is ResNet-18; smaller for quick CPU runs).
        weights_path: optional local torchvision ``resnet18`` weights (ImageNet) to start from.
    """
    model = TSMResNet(num_outputs=len(schema), spec=spec or InputSpec(), width=width)
    if weights_path is not None:
        load_torchvision_weights(model, weights_path)
    return model
