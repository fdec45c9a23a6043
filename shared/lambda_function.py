"""A python3.12 Lambda function with its own role, encrypted log group, tracing and failure handling."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from shared import iam
from shared.context import AwsContext
from shared.logs import check_retention, encrypted_log_group

FUNCTIONS_DIR = Path(__file__).resolve().parents[1] / "functions"
RUNTIME = "python3.12"
ARCHITECTURES = ("arm64", "x86_64")
LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")


def function_archive(folder: str) -> pulumi.AssetArchive:
    """The function's own modules only: no __pycache__ compiled by another Python, no build inputs."""
    files = sorted(function_source(folder).glob("*.py"))
    if not files:
        raise FileNotFoundError(f"no Python modules in functions/{folder}")
    return pulumi.AssetArchive({f.name: pulumi.FileAsset(str(f)) for f in files})


def function_source(folder: str) -> Path:
    """The folder of a function's code under ``functions/``; it must exist (an archive of a missing
    path is accepted by a preview and fails only at deploy time)."""
    path = FUNCTIONS_DIR / folder
    if not path.is_dir():
        raise FileNotFoundError(f"Lambda source folder {path} does not exist")
    return path


def function_module(folder: str, module: str) -> ModuleType:
    """Load one module of a function's folder (e.g. the list of its environment variable names) for the
    component that deploys it. By path, because ``functions/`` is not an installed package and the zip's
    modules import each other as top-level names; the module must import nothing of the function's."""
    name = f"_functions.{folder}.{module}"
    if name not in sys.modules:
        path = function_source(folder) / f"{module}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise FileNotFoundError(f"no module {path}")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded  # before running it: dataclasses look their module up there
        try:
            spec.loader.exec_module(loaded)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


@dataclass(frozen=True)
class PythonFunctionArgs:
    """Exactly one failure path must be chosen: ``dead_letter_queue_arn`` for asynchronous invocations, or
    ``failures_handled_by_event_source`` when a queue's redrive policy or a stream's on-failure
    destination owns failed records (a function DLQ never sees those)."""

    ctx: AwsContext
    function_name: str
    source_folder: str
    log_kms_key_arn: pulumi.Input[str]
    handler: str = "handler.handler"
    description: str = ""
    statements: Sequence[dict] = field(default_factory=tuple)
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    memory_mb: int = 512
    timeout_s: int = 30
    architecture: str = "arm64"
    reserved_concurrency: Optional[int] = None
    layer_arns: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    log_retention_days: int = 30
    log_level: str = "INFO"
    dead_letter_queue_arn: Optional[pulumi.Input[str]] = None
    failures_handled_by_event_source: bool = False

    def __post_init__(self) -> None:
        if not 128 <= self.memory_mb <= 10240:
            raise ValueError(f"memory_mb must be 128 to 10240, got {self.memory_mb}")
        if not 1 <= self.timeout_s <= 900:
            raise ValueError(f"timeout_s must be 1 to 900, got {self.timeout_s}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {LOG_LEVELS}, got {self.log_level!r}")
        if self.reserved_concurrency is not None and self.reserved_concurrency < 1:
            raise ValueError("reserved_concurrency must be >= 1 (0 would stop the function)")
        if (self.dead_letter_queue_arn is None) == (not self.failures_handled_by_event_source):
            raise ValueError(f"{self.function_name}: set exactly one of dead_letter_queue_arn and "
                             "failures_handled_by_event_source")
        if not 1 <= len(self.function_name) <= 64:
            raise ValueError(f"function_name must be 1 to 64 characters: {self.function_name!r}")
        check_retention(self.log_retention_days, "log_retention_days")
        module = self.handler.rsplit(".", 1)[0]
        if not (function_source(self.source_folder) / f"{module}.py").is_file():
            raise FileNotFoundError(f"handler module {module}.py not found in functions/{self.source_folder}")


class PythonFunction(pulumi.ComponentResource):
    function: aws.lambda_.Function
    role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup
    arn: pulumi.Output[str]
    name: pulumi.Output[str]
    role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: PythonFunctionArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:compute:PythonFunction", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.log_group = encrypted_log_group(
            f"{name}-logs", log_group_name=f"/aws/lambda/{args.function_name}",
            kms_key_arn=args.log_kms_key_arn, retention_days=args.log_retention_days, opts=child,
        )
        self.role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=iam.service_trust_policy("lambda.amazonaws.com", source_account=args.ctx.account_id),
            description=f"Execution role of {args.function_name}",
            opts=child,
        )
        statements = [
            iam.allow(["logs:CreateLogStream", "logs:PutLogEvents"],
                      [pulumi.Output.concat(self.log_group.arn, ":*")], sid="OwnLogGroup"),
            iam.unscoped(["xray:PutTraceSegments", "xray:PutTelemetryRecords"], sid="XRay",
                         why="X-Ray trace upload has no resource-level permissions"),
            *args.statements,
        ]
        if args.dead_letter_queue_arn is not None:
            statements.append(iam.allow(["sqs:SendMessage"], [args.dead_letter_queue_arn], sid="DeadLetter"))
        policy = aws.iam.RolePolicy(f"{name}-policy", role=self.role.id, policy=iam.document(statements), opts=child)

        self.function = aws.lambda_.Function(
            name,
            name=args.function_name,
            description=args.description,
            runtime=RUNTIME,
            handler=args.handler,
            code=function_archive(args.source_folder),
            role=self.role.arn,
            architectures=[args.architecture],
            memory_size=args.memory_mb,
            timeout=args.timeout_s,
            reserved_concurrent_executions=args.reserved_concurrency,
            layers=list(args.layer_arns) or None,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(args.environment)) if args.environment else None,
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
            # The runtime's JSON log format (one logging style for every function, issue 7): the
            # standard library's records become JSON with the request id and `extra` fields as keys;
            # the runtime sets the root logger's level from application_log_level. log_group is the
            # function's own encrypted group (the default name, but created here with retention and KMS).
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="JSON", log_group=self.log_group.name, application_log_level=args.log_level,
                system_log_level="WARN"),
            dead_letter_config=aws.lambda_.FunctionDeadLetterConfigArgs(target_arn=args.dead_letter_queue_arn)
            if args.dead_letter_queue_arn is not None else None,
            # The role's policy must exist before the function (and any event source mapping, which
            # AWS validates against the role's permissions at create time).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        self.arn = self.function.arn
        self.name = self.function.name
        self.role_arn = self.role.arn
        self.register_outputs({"arn": self.arn, "name": self.name, "role_arn": self.role_arn})


def python_layer(
    resource_name: str, *, layer_name: str, zip_path: Path, architecture: str, description: str,
    opts: Optional[pulumi.ResourceOptions] = None,
) -> aws.lambda_.LayerVersion:
    """A layer from a zip built by ``make layer``; a missing build fails here with the command to run."""
    if not zip_path.is_file():
        raise FileNotFoundError(
            f"Lambda layer artifact {zip_path} is missing: build it with `make layer ARCH={architecture}` "
            "(tools/build_layer.sh), then run again")
    return aws.lambda_.LayerVersion(
        resource_name,
        layer_name=layer_name,
        code=pulumi.FileArchive(str(zip_path)),
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[architecture],
        description=description,
        opts=opts,
    )
