"""IAM mappings of the AWS calls the serving functions make, for tests/iam_recorder.py (issue 11): each
call to the (action, resource ARN, condition context) AWS authorizes. Registered only for services the
recorder does not map itself (SageMaker's endpoint calls are mapped there, beside the training jobs')."""
from __future__ import annotations

from tests import iam_recorder
from tests.iam_recorder import ACCOUNT, Authorization, Call


def _kinesis(call: Call) -> list[Authorization]:
    stream = call.params.get("StreamARN") or f"arn:aws:kinesis:{call.region}:{ACCOUNT}:stream/{call.params['StreamName']}"
    return [(f"kinesis:{call.operation}", stream, {})]


def _states(call: Call) -> list[Authorization]:
    return [(f"states:{call.operation}", call.params["stateMachineArn"], {})]


def _application_autoscaling(call: Call) -> list[Authorization]:
    # A scalable target's ARN ends in an id AWS assigns at registration (not in the request): any target.
    if call.operation.startswith("Describe"):
        return [(f"application-autoscaling:{call.operation}", "*", {})]
    return [(f"application-autoscaling:{call.operation}",
             f"arn:aws:application-autoscaling:{call.region}:{ACCOUNT}:scalable-target/*", {})]


MAPPERS = {"kinesis": _kinesis, "states": _states,
           "application-autoscaling": _application_autoscaling}
for _service, _mapper in MAPPERS.items():
    iam_recorder.MAPPERS.setdefault(_service, _mapper)
