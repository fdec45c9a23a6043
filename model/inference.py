"""Inference handlers for SageMaker's PyTorch serving container (contract 5).

The container imports this module from `code/` in model.tar.gz and calls `model_fn(model_dir)` once,
then per request `input_fn(body, content_type)`, `predict_fn(inputs, model)` and
`output_fn(prediction, accept)`.

Requests: `application/json` `{"instances": ["<base64 image>", ...]}` (a batch) or
`application/x-image` (the raw bytes of one image). Response: `application/json`
`{"predictions": [{"label", "probability", "top": [[label, p], ...]}]}`.

A bad request raises `InvalidRequest`, a ValueError that is also the serving toolkit's
`BaseInferenceToolkitError` when that is installed, so the container answers 400 (415 for an
unsupported content type, 406 for an unsupported accept) with the message instead of a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

import torch

try:  # as the `model` package (tests, evaluate) ...
    from . import data, net
except ImportError:  # ... or flat, from code/ in the serving container
    import data  # type: ignore[no-redef]
    import net  # type: ignore[no-redef]

try:
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
except ImportError:  # outside the serving container
    class _ToolkitError(Exception):  # type: ignore[no-redef]
        def __init__(self, status_code: int, message: str, phrase: str):
            super().__init__(status_code, message, phrase)
            self.status_code, self.message, self.phrase = status_code, message, phrase

JSON = "application/json"
IMAGE = "application/x-image"
MODEL_FILE = "model.pt"
MAX_INSTANCES = 64
TOP_K = 5


class InvalidRequest(ValueError, _ToolkitError):
    """A client error: the message says what is wrong with the request."""

    def __init__(self, message: str, status_code: int = 400):
        _ToolkitError.__init__(self, status_code, message, message)
        self.args = (message,)


@dataclass
class LoadedModel:
    network: torch.nn.Module
    labels: list[str]
    image_size: int
    config: dict

    def decode(self, image: bytes) -> torch.Tensor:
        """An image as this model was trained to see it (size and normalisation from its config)."""
        return data.decode(image, self.image_size, self.config.get("mean", data.MEAN),
                           self.config.get("std", data.STD))


def model_fn(model_dir: str) -> LoadedModel:
    """Load `model.pt` (written by train.py) into an eval-mode network on the CPU or the GPU."""
    loaded = from_saved(torch.load(Path(model_dir) / MODEL_FILE, map_location="cpu", weights_only=True))
    if torch.cuda.is_available():
        loaded.network.cuda()
    return loaded


def from_saved(saved: dict) -> LoadedModel:
    """The eval-mode network of a loaded `model.pt` (`{"config": ..., "state_dict": ...}`)."""
    config = saved["config"]
    network = net.build(config["architecture"], len(config["labels"]))
    network.load_state_dict(saved["state_dict"])
    network.eval()
    return LoadedModel(network, list(config["labels"]), int(config["image_size"]), config)


def input_fn(request_body: bytes | bytearray | str, request_content_type: str) -> list[bytes]:
    """The request's images as a list of encoded image bytes (decoded in predict_fn)."""
    content_type = (request_content_type or "").split(";")[0].strip().lower()
    if content_type == IMAGE:
        if isinstance(request_body, str):
            raise InvalidRequest(f"{IMAGE} bodies are raw image bytes")
        if not request_body:
            raise InvalidRequest("the request body is empty")
        return [bytes(request_body)]
    if content_type != JSON:
        raise InvalidRequest(f"unsupported content type {request_content_type!r}: use {JSON} or {IMAGE}", 415)
    try:
        document = json.loads(request_body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    instances = document.get("instances") if isinstance(document, dict) else None
    if not isinstance(instances, list) or not instances:
        raise InvalidRequest('the body must be {"instances": ["<base64 image>", ...]} with at least one image')
    if len(instances) > MAX_INSTANCES:
        raise InvalidRequest(f"at most {MAX_INSTANCES} instances per request, got {len(instances)}")
    images = []
    for i, item in enumerate(instances):
        if not isinstance(item, str):
            raise InvalidRequest(f"instances[{i}] must be a base64 string")
        try:
            images.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"instances[{i}] is not valid base64") from None
    return images


def predict_fn(input_data: list[bytes], model: LoadedModel) -> list[dict]:
    """Class probabilities for each image: the best label and the top few."""
    tensors = []
    for i, image in enumerate(input_data):
        try:
            tensors.append(model.decode(image))
        except ValueError as exc:
            raise InvalidRequest(f"image {i}: {exc}") from None
    device = next(model.network.parameters()).device
    with torch.no_grad():
        probabilities = torch.softmax(model.network(torch.stack(tensors).to(device)), dim=1).cpu()
    k = min(TOP_K, len(model.labels))
    predictions = []
    for row in probabilities:
        values, indices = row.topk(k)
        top = [[model.labels[int(j)], round(float(p), 6)] for p, j in zip(values, indices)]
        predictions.append({"label": top[0][0], "probability": top[0][1], "top": top})
    return predictions


def output_fn(prediction: list[dict], accept: str | None) -> tuple[str, str]:
    """The JSON response body and its content type."""
    wanted = {part.split(";")[0].strip().lower() for part in (accept or JSON).split(",")}
    if not wanted & {JSON, "*/*", "application/*"}:
        raise InvalidRequest(f"unsupported accept {accept!r}: responses are {JSON}", 406)
    return json.dumps({"predictions": prediction}), JSON
