"""Values AWS would reject but mocks accept: enum settings checked against botocore's service models."""
from functools import lru_cache

import pytest
from tests.botocore_models import service_model

# (resource type, path into the recorded inputs with [] for "each item", service, botocore shape)
ENUM_FIELDS = [
    ("aws:ec2/fleet:Fleet", "type", "ec2", "FleetType"),
    ("aws:ec2/fleet:Fleet", "spotOptions.allocationStrategy", "ec2", "SpotAllocationStrategy"),
    ("aws:ec2/fleet:Fleet", "spotOptions.instanceInterruptionBehavior", "ec2", "SpotInstanceInterruptionBehavior"),
    ("aws:ec2/fleet:Fleet", "spotOptions.maintenanceStrategies.capacityRebalance.replacementStrategy", "ec2",
     "FleetReplacementStrategy"),
    ("aws:ec2/fleet:Fleet", "targetCapacitySpecification.defaultTargetCapacityType", "ec2", "DefaultTargetCapacityType"),
    ("aws:ec2/fleet:Fleet", "excessCapacityTerminationPolicy", "ec2", "FleetExcessCapacityTerminationPolicy"),
    ("aws:ec2/fleet:Fleet", "launchTemplateConfigs[].overrides[].instanceType", "ec2", "InstanceType"),
    ("aws:ec2/launchTemplate:LaunchTemplate", "metadataOptions.httpTokens", "ec2", "LaunchTemplateHttpTokensState"),
    ("aws:ec2/launchTemplate:LaunchTemplate", "metadataOptions.httpEndpoint", "ec2",
     "LaunchTemplateInstanceMetadataEndpointState"),
    ("aws:ec2/launchTemplate:LaunchTemplate", "metadataOptions.instanceMetadataTags", "ec2",
     "LaunchTemplateInstanceMetadataTagsState"),
    ("aws:ec2/launchTemplate:LaunchTemplate", "blockDeviceMappings[].ebs.volumeType", "ec2", "VolumeType"),
    ("aws:ec2/launchTemplate:LaunchTemplate", "tagSpecifications[].resourceType", "ec2", "ResourceType"),
    ("aws:ec2/flowLog:FlowLog", "trafficType", "ec2", "TrafficType"),
    ("aws:ec2/flowLog:FlowLog", "logDestinationType", "ec2", "LogDestinationType"),
    ("aws:ec2/vpcEndpoint:VpcEndpoint", "vpcEndpointType", "ec2", "VpcEndpointType"),
    ("aws:ec2/eip:Eip", "domain", "ec2", "DomainType"),
    ("aws:lambda/function:Function", "runtime", "lambda", "Runtime"),
    ("aws:lambda/function:Function", "architectures[]", "lambda", "Architecture"),
    ("aws:lambda/function:Function", "tracingConfig.mode", "lambda", "TracingMode"),
    ("aws:lambda/function:Function", "loggingConfig.logFormat", "lambda", "LogFormat"),
    ("aws:lambda/function:Function", "loggingConfig.applicationLogLevel", "lambda", "ApplicationLogLevel"),
    ("aws:lambda/function:Function", "loggingConfig.systemLogLevel", "lambda", "SystemLogLevel"),
    ("aws:lambda/layerVersion:LayerVersion", "compatibleRuntimes[]", "lambda", "Runtime"),
    ("aws:lambda/layerVersion:LayerVersion", "compatibleArchitectures[]", "lambda", "Architecture"),
    ("aws:lambda/eventSourceMapping:EventSourceMapping", "functionResponseTypes[]", "lambda", "FunctionResponseType"),
    ("aws:dynamodb/table:Table", "billingMode", "dynamodb", "BillingMode"),
    ("aws:dynamodb/table:Table", "attributes[].type", "dynamodb", "ScalarAttributeType"),
    ("aws:dynamodb/table:Table", "globalSecondaryIndexes[].projectionType", "dynamodb", "ProjectionType"),
    ("aws:dynamodb/table:Table", "globalSecondaryIndexes[].keySchemas[].keyType", "dynamodb", "KeyType"),
    ("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "rules[].transitions[].storageClass", "s3",
     "TransitionStorageClass"),
    ("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "transitionDefaultMinimumObjectSize", "s3",
     "TransitionDefaultMinimumObjectSize"),
    ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
     "rules[].applyServerSideEncryptionByDefault.sseAlgorithm", "s3", "ServerSideEncryption"),
    ("aws:s3/bucketOwnershipControls:BucketOwnershipControls", "rule.objectOwnership", "s3", "ObjectOwnership"),
    ("aws:s3/bucketVersioning:BucketVersioning", "versioningConfiguration.status", "s3", "BucketVersioningStatus"),
    ("aws:cloudwatch/metricAlarm:MetricAlarm", "comparisonOperator", "cloudwatch", "ComparisonOperator"),
    ("aws:cloudwatch/metricAlarm:MetricAlarm", "statistic", "cloudwatch", "Statistic"),
    ("aws:ssm/parameter:Parameter", "type", "ssm", "ParameterType"),
]
# Ranges the API enforces (shape min/max) for numeric settings.
RANGE_FIELDS = [
    ("aws:lambda/function:Function", "memorySize", "lambda", "MemorySize"),
    ("aws:lambda/function:Function", "timeout", "lambda", "Timeout"),
    ("aws:lambda/eventSourceMapping:EventSourceMapping", "batchSize", "lambda", "BatchSize"),
    ("aws:lambda/eventSourceMapping:EventSourceMapping", "maximumBatchingWindowInSeconds", "lambda",
     "MaximumBatchingWindowInSeconds"),
    ("aws:lambda/eventSourceMapping:EventSourceMapping", "scalingConfig.maximumConcurrency", "lambda", "MaximumConcurrency"),
]
TREAT_MISSING = {"breaching", "notBreaching", "ignore", "missing"}  # documented; botocore types it as a plain string


@lru_cache(maxsize=None)
def _shape(service: str, name: str):
    return service_model(service).shape_for(name)


def values_at(obj, path: str) -> list:
    items = [obj]
    for part in path.split("."):
        listed = part.endswith("[]")
        key = part[:-2] if listed else part
        nxt = []
        for item in items:
            value = item.get(key) if isinstance(item, dict) else None
            if value is None:
                continue
            nxt.extend(value if listed else [value])
        items = nxt
    return items


def _check(plans, fields, verify):
    """(fields that matched no value at all, errors): a field matching nothing would pass vacuously."""
    unmatched, errors = [], []
    for type_token, path, service, shape_name in fields:
        seen = 0
        for plan in plans:
            for r in plan.of_type(type_token):
                for value in values_at(r.inputs, path):
                    seen += 1
                    problem = verify(_shape(service, shape_name), value)
                    if problem:
                        errors.append(f"{plan.project}:{r.name} {path}={value!r}: {problem}")
        if not seen:
            unmatched.append(f"{type_token} {path}")
    return unmatched, errors


def test_enum_settings_are_values_the_api_accepts(plans):
    unmatched, errors = _check(plans, ENUM_FIELDS, _in_enum)
    assert errors == [] and unmatched == []


def _in_range(shape, value):
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    return None if (low is None or value >= low) and (high is None or value <= high) else f"outside {low}..{high}"


def _in_enum(shape, value):
    return None if value in shape.enum else f"not in {shape.name}"


def test_numeric_settings_are_within_the_api_ranges(plans):
    unmatched, errors = _check(plans, RANGE_FIELDS, _in_range)
    assert errors == [] and unmatched == []


def test_alarms_treat_missing_data_with_a_documented_value(plans):
    values = [a.inputs["treatMissingData"] for p in plans for a in p.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")]
    assert values and set(values) <= TREAT_MISSING


class _Plan:
    """A plan holding one recorded resource: enough to feed the checks a value AWS would reject."""

    def __init__(self, type_token, inputs):
        self.project, self.resources = "broken", [type("R", (), {"type": type_token, "name": "r", "inputs": inputs})]

    def of_type(self, type_token):
        return [r for r in self.resources if r.type == type_token]


@pytest.mark.parametrize("type_token, inputs", [
    ("aws:ec2/fleet:Fleet", {"launchTemplateConfigs": [{"overrides": [{"instanceType": "p3.2xlargee"}]}]}),
    ("aws:ec2/launchTemplate:LaunchTemplate", {"metadataOptions": {"httpTokens": "mandatory"}}),
])
def test_the_enum_check_reports_a_typo_in_a_recorded_resource(type_token, inputs):
    fields = [f for f in ENUM_FIELDS if f[0] == type_token]
    _, errors = _check([_Plan(type_token, inputs)], fields, _in_enum)
    assert len(errors) == 1 and ("p3.2xlargee" in errors[0] or "mandatory" in errors[0])


def test_the_range_check_reports_a_value_outside_the_api_range():
    fields = [f for f in RANGE_FIELDS if f[1] == "memorySize"]
    broken = _Plan("aws:lambda/function:Function", {"memorySize": 64.0})
    assert _check([broken], fields, _in_range)[1] == ["broken:r memorySize=64.0: outside 128..32768"]
