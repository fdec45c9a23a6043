"""The networks: a small pretrained-free CNN (the default) and, for real runs, torchvision's models.

`small` needs torch only and trains on a CPU in seconds (the tests use it). Any other architecture is
a torchvision model name (`resnet50`, `efficientnet_b0`, ...), imported only when asked for: the
training job has no network, so pretrained weights come as a file in the `pretrained` channel, never
from a download. The classification head (the last Linear layer) is replaced for `num_classes`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

SMALL = "small"


class SmallNet(nn.Module):
    """Three conv blocks and a linear head: ~25k parameters at width 16, any input size >= 8."""

    def __init__(self, num_classes: int, width: int = 16):
        super().__init__()

        def block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        self.features = nn.Sequential(*block(3, width, True), *block(width, 2 * width, True),
                                      *block(2 * width, 4 * width, False),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build(architecture: str, num_classes: int, pretrained_path: str | os.PathLike | None = None) -> nn.Module:
    """A network for `num_classes`; weights from `pretrained_path` (a state dict file) when given."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    state = _load_state(pretrained_path) if pretrained_path else None
    if architecture == SMALL:
        model: nn.Module = SmallNet(num_classes)
        if state is not None:
            _load_matching(model, state, pretrained_path)
        return model
    model = _torchvision_model(architecture)
    if state is not None:
        # The file holds the architecture's own weights (e.g. torchvision's ImageNet download).
        model.load_state_dict(state, strict=True)
    _replace_head(model, num_classes)
    return model


def _torchvision_model(architecture: str) -> nn.Module:
    try:
        import torchvision  # noqa: PLC0415  (only a torchvision architecture needs it)
    except ImportError as exc:
        raise RuntimeError(f"architecture {architecture!r} needs torchvision, which is not installed here; "
                           f"use architecture {SMALL!r} or a container that ships torchvision") from exc
    names = torchvision.models.list_models(module=torchvision.models)
    if architecture not in names:
        raise ValueError(f"unknown architecture {architecture!r}: use {SMALL!r} or one of "
                         f"torchvision's classification models ({', '.join(sorted(names)[:8])}, ...)")
    return torchvision.models.get_model(architecture, weights=None)


def _replace_head(model: nn.Module, num_classes: int) -> None:
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no Linear classification head to replace")
    name, head = linears[-1]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Linear(head.in_features, num_classes))


def _load_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"pretrained weights file {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # our own model.pt or a checkpoint
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state


def _load_matching(model: nn.Module, state: dict[str, torch.Tensor], path) -> None:
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(matching) < len(own) // 2:
        raise ValueError(f"{path} does not fit architecture {SMALL!r} ({len(matching)} of {len(own)} tensors match)")
    model.load_state_dict(matching, strict=False)
