"""The environment the stack gives the ingest function is one the function accepts, at every config bound."""
import os
import subprocess
import sys

import pytest

from offline import runner
from shared.lambda_function import function_source

BOUNDS = {
    "max": {"trainingImageSize": "4096", "jpegQuality": "95", "maxImageMb": "500", "maxImageMegapixels": "200",
            "minImageDimension": "4096", "ingestWorkers": "16", "ingestLogLevel": "ERROR",
            "labelPathSegment": "20", "maxImagePixelsPerByte": "100000",
            "allowedImageFormats": '["PNG"]'},
    "min": {"trainingImageSize": "32", "jpegQuality": "50", "maxImageMb": "1", "maxImageMegapixels": "1",
            "minImageDimension": "1", "ingestWorkers": "1", "ingestLogLevel": "DEBUG",
            "labelPathSegment": "0", "maxImagePixelsPerByte": "10"},
}


@pytest.mark.parametrize("bound", sorted(BOUNDS))
def test_the_function_starts_with_the_environment_the_stack_gives_it(projects, bound):
    plan = runner.run(projects["ml-pipeline"], "dev",
                      config_overrides={f"ml-pipeline:{k}": v for k, v in BOUNDS[bound].items()})
    function = plan.one("aws:lambda/function:Function", "ingest-fn").inputs
    env = function["environment"]["variables"]
    # A fresh interpreter imports the handler as Lambda does (its folder on sys.path), with only
    # that environment: a value the function refuses would fail every cold start in AWS.
    probe = ("import handler, json; s = handler.SETTINGS; "
             "print(json.dumps([s.limits.jpeg_quality, s.limits.training_image_size, s.workers, list(s.limits.allowed_formats)]))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=function_source("image_ingest"), capture_output=True,
                            text=True, timeout=60, env={"PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": "us-east-1",
                                                        # Lambda sets this one itself, from the memory size.
                                                        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(int(function["memorySize"])),
                                                        **env})
    assert result.returncode == 0, result.stderr
    # The log level reaches the function through the runtime's logging config, not a variable.
    assert function["loggingConfig"]["applicationLogLevel"] == BOUNDS[bound]["ingestLogLevel"]
    quality, size, workers, formats = __import__("json").loads(result.stdout)
    assert (str(quality), str(size), str(workers)) == (env["JPEG_QUALITY"], env["TRAINING_IMAGE_SIZE"], env["WORKERS"])
    assert ",".join(formats) == env["ALLOWED_FORMATS"]
