"""The inference handlers on the trained model, as SageMaker's PyTorch serving container calls them."""

from __future__ import annotations

import base64
import importlib
import json
import random
import sys

import builders
import pytest

from model import inference


@pytest.fixture(scope="module")
def loaded(trained):
    return inference.model_fn(str(trained.model_dir))


def _images(seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {label: builders.image(label, rng) for label in builders.COLOURS}


def test_a_json_batch_gets_the_right_label_for_each_image(loaded):
    # GIVEN one new image of each colour, base64 in a JSON batch (str, as the toolkit decodes JSON bodies)
    images = _images(seed=99)
    body = json.dumps({"instances": [base64.b64encode(b).decode() for b in images.values()]})
    # WHEN the container runs the handlers
    batch = inference.input_fn(body, "application/json")
    response, content_type = inference.output_fn(inference.predict_fn(batch, loaded), "application/json")
    # THEN each prediction names the image's colour, with the top list sorted by probability
    predictions = json.loads(response)["predictions"]
    assert content_type == "application/json"
    assert [p["label"] for p in predictions] == list(images)
    for p in predictions:
        assert p["top"][0] == [p["label"], p["probability"]]
        assert len(p["top"]) == 3
        assert [prob for _, prob in p["top"]] == sorted((prob for _, prob in p["top"]), reverse=True)
        assert 0.5 < p["probability"] <= 1.0
        assert sum(prob for _, prob in p["top"]) == pytest.approx(1.0, abs=1e-4)


def test_one_raw_image_gets_one_prediction(loaded):
    image = _images(seed=7)["green"]
    batch = inference.input_fn(image, "application/x-image")
    response, _ = inference.output_fn(inference.predict_fn(batch, loaded), "*/*")
    assert [p["label"] for p in json.loads(response)["predictions"]] == ["green"]


NOT_AN_IMAGE = base64.b64encode(b"definitely not an image").decode()


@pytest.mark.parametrize(("body", "content_type", "status", "message"), [
    ("{}", "text/csv", 415, "unsupported content type 'text/csv'"),
    ("{not json", "application/json", 400, "not valid JSON"),
    ('{"images": []}', "application/json", 400, 'must be {"instances"'),
    ('{"instances": []}', "application/json", 400, "at least one image"),
    ('{"instances": [42]}', "application/json", 400, r"instances\[0\] must be a base64 string"),
    ('{"instances": ["***"]}', "application/json", 400, r"instances\[0\] is not valid base64"),
    (json.dumps({"instances": ["AAAA"] * 65}), "application/json", 400, "at most 64 instances"),
    (b"", "application/x-image", 400, "the request body is empty"),
])
def test_a_bad_request_is_a_value_error_with_a_client_status(body, content_type, status, message):
    with pytest.raises(ValueError, match=message) as caught:
        inference.input_fn(body, content_type)
    assert caught.value.status_code == status
    assert str(caught.value) == caught.value.message


def test_bytes_that_are_no_image_are_a_client_error(loaded):
    batch = inference.input_fn(json.dumps({"instances": [NOT_AN_IMAGE]}), "application/json")
    with pytest.raises(ValueError, match="image 0: not a readable image") as caught:
        inference.predict_fn(batch, loaded)
    assert caught.value.status_code == 400


def test_an_unsupported_accept_is_refused():
    with pytest.raises(ValueError, match="unsupported accept") as caught:
        inference.output_fn([], "text/csv")
    assert caught.value.status_code == 406


def test_the_code_directory_works_alone_as_the_serving_container_imports_it(trained, monkeypatch):
    # The container puts code/ on sys.path and imports `inference` as a top-level module.
    names = ("inference", "data", "net")
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    monkeypatch.syspath_prepend(str(trained.model_dir / "code"))
    try:
        flat = importlib.import_module("inference")
        assert flat.__file__ == str(trained.model_dir / "code" / "inference.py")
        model = flat.model_fn(str(trained.model_dir))
        batch = flat.input_fn(_images(seed=5)["blue"], "application/x-image")
        assert flat.predict_fn(batch, model)[0]["label"] == "blue"
    finally:
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def test_in_the_serving_container_a_bad_request_is_the_toolkit_error_with_its_status(monkeypatch):
    # GIVEN the serving toolkit's error type (sagemaker_inference.errors, not installed here), which the
    # toolkit turns into the response status instead of a 500
    import importlib.util
    import types

    class BaseInferenceToolkitError(Exception):
        def __init__(self, status_code, message, phrase):
            self.status_code, self.message, self.phrase = status_code, message, phrase
            super().__init__(status_code, message, phrase)

    errors = types.ModuleType("sagemaker_inference.errors")
    errors.BaseInferenceToolkitError = BaseInferenceToolkitError
    monkeypatch.setitem(sys.modules, "sagemaker_inference", types.ModuleType("sagemaker_inference"))
    monkeypatch.setitem(sys.modules, "sagemaker_inference.errors", errors)
    spec = importlib.util.spec_from_file_location("model._inference_in_container", inference.__file__)
    probe = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, probe)  # dataclasses look their module up there
    spec.loader.exec_module(probe)
    # WHEN a request has an unsupported content type
    with pytest.raises(BaseInferenceToolkitError) as caught:
        probe.input_fn("a,b", "text/csv")
    # THEN the error is both the toolkit's (status 415, message as phrase) and a ValueError
    assert isinstance(caught.value, ValueError)
    assert (caught.value.status_code, caught.value.phrase) == (415, caught.value.message)
    assert "unsupported content type" in str(caught.value)
