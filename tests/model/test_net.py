"""net.py: the default network needs torch alone; pretrained weights come from a file."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from model import net


def test_the_small_network_takes_any_image_size():
    model = net.build("small", 3).eval()
    for size in (16, 32, 224):
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 3)


def test_pretrained_small_weights_keep_the_features_and_get_a_new_head(tmp_path):
    # GIVEN weights of a small network trained for 5 classes, in the pretrained channel's file
    torch.manual_seed(0)
    donor = net.build("small", 5)
    torch.save(donor.state_dict(), tmp_path / "small.pt")
    # WHEN a 3-class network is built from them
    model = net.build("small", 3, tmp_path / "small.pt")
    # THEN the feature layers are the donor's and the head has 3 outputs
    for key, tensor in donor.features.state_dict().items():
        assert torch.equal(model.features.state_dict()[key], tensor), key
    assert model.classifier.out_features == 3


def test_weights_that_do_not_fit_are_refused(tmp_path):
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit architecture 'small'"):
        net.build("small", 3, tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        net.build("small", 3, tmp_path / "missing.pt")


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_a_torchvision_architecture_without_torchvision_says_so():
    with pytest.raises(RuntimeError, match="architecture 'resnet18' needs torchvision"):
        net.build("resnet18", 3)


class _FakeResNet(torch.nn.Module):
    """Shaped like torchvision's classifiers: features, then a head whose last layer is a Linear."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                                            torch.nn.Flatten(), torch.nn.Linear(4, 8))
        self.classifier = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Linear(8, 1000))

    def forward(self, x):
        return self.classifier(self.features(x))


def test_a_torchvision_architecture_loads_the_channel_file_then_replaces_the_last_linear(tmp_path, monkeypatch):
    # GIVEN a stand-in for torchvision (not installable here) and the architecture's ImageNet weights
    import sys
    import types
    calls = []
    models = types.SimpleNamespace(list_models=lambda module: ["fakenet"],
                                   get_model=lambda name, weights: calls.append((name, weights)) or _FakeResNet())
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(models=models))
    torch.manual_seed(0)
    imagenet = _FakeResNet()
    torch.save(imagenet.state_dict(), tmp_path / "fakenet.pth")
    # WHEN it is built for 3 classes
    model = net.build("fakenet", 3, tmp_path / "fakenet.pth")
    # THEN nothing was downloaded, the weights are the file's, and only the final Linear changed
    assert calls == [("fakenet", None)]
    assert torch.equal(model.features[3].weight, imagenet.features[3].weight)
    assert model.classifier[1].out_features == 3 and model.features[3].out_features == 8
    with pytest.raises(ValueError, match="unknown architecture 'resnet9000'"):
        net.build("resnet9000", 3)
