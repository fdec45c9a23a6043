"""Run one Pulumi project of this repository under recording mocks, from its real stack file.

Each run resets the Pulumi runtime first: without the reset a second program in the same process
inherits the first one's stack transformations (its tags), root stack and exports.
"""
from __future__ import annotations

import asyncio
import logging
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import pulumi
import yaml
from pulumi.runtime.sync_await import _sync_await

from offline.mocks import RecordedResource, RecordingMocks, RecordingMonitor, UnplannedStackError
from shared import config_reader
from shared.config_reader import ConfigError, KeySpec

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REGION = "us-east-1"


class UnknownStackError(LookupError):
    """The stack asked for has no stack file."""


@dataclass(frozen=True)
class Project:
    name: str
    directory: Path

    @property
    def program(self) -> Path:
        main = yaml.safe_load((self.directory / "Pulumi.yaml").read_text()).get("main", ".")
        return (self.directory / main / "__main__.py").resolve()

    def stacks(self) -> list[str]:
        """The stacks that have a stack file (`Pulumi.<stack>.yaml`) beside the project's Pulumi.yaml."""
        return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in self.directory.glob("Pulumi.*.yaml"))

    def stack_config(self, stack: str) -> dict[str, str]:
        """The stack file's config as the strings Pulumi hands a program (objects as JSON text)."""
        path = self.directory / f"Pulumi.{stack}.yaml"
        if not path.is_file():
            raise UnknownStackError(f"{self.name} has no stack {stack!r} (no {path.relative_to(REPO)}); "
                                    f"its stacks: {', '.join(self.stacks())}")
        raw = (yaml.safe_load(path.read_text()) or {}).get("config", {}) or {}
        config = {}
        for key, value in raw.items():
            if isinstance(value, dict) and "secure" in value:
                raise ValueError(f"{path.name}: {key} is a secret; the offline plan cannot decrypt it")
            config[key] = value if isinstance(value, str) else json.dumps(value)
        return config


def projects() -> dict[str, Project]:
    found = {}
    for directory in (REPO, REPO / "gpu_training"):
        name = yaml.safe_load((directory / "Pulumi.yaml").read_text())["name"]
        found[name] = Project(name, directory)
    return found


@dataclass
class Plan:
    project: str
    stack: str
    resources: list[RecordedResource]
    registrations: dict[str, dict]
    outputs: dict[str, Any]
    invokes: list[tuple[str, dict]]
    error: Optional[str] = None
    config: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Every config key the program read, with its default and limits (shared/config_reader.py).
    keys_read: dict[str, KeySpec] = field(default_factory=dict)

    def of_type(self, type_token: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_token]

    def by_id(self, resource_id: str) -> RecordedResource:
        found = [r for r in self.resources if r.id == resource_id]
        if len(found) != 1:
            raise LookupError(f"expected one resource with id {resource_id!r}, found {len(found)}")
        return found[0]

    def one(self, type_token: str, name: str) -> RecordedResource:
        found = [r for r in self.resources if r.type == type_token and r.name == name]
        if len(found) != 1:
            known = sorted(r.name for r in self.of_type(type_token))
            raise LookupError(f"expected one {type_token} named {name!r}, found {len(found)}; known: {known}")
        return found[0]


def _resolve(value: Any) -> Any:
    return _sync_await(pulumi.Output.from_input(value).future())


def run(
    project: Project,
    stack: str,
    *,
    config_overrides: Optional[Mapping[str, str]] = None,
    stack_outputs: Optional[Mapping[str, Mapping[str, Any]]] = None,
    raise_errors: bool = True,
) -> Plan:
    """Run ``project``'s program for ``stack``. ``config_overrides`` replace or add stack-file keys (a
    value of None removes the key); ``stack_outputs`` answer StackReferences by stack name."""
    config = project.stack_config(stack)
    for key, value in (config_overrides or {}).items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return run_callable(lambda: runpy.run_path(str(project.program), run_name="__main__"), project.name, stack,
                        config=config, stack_outputs=stack_outputs, raise_errors=raise_errors)


def run_callable(
    program: Callable[[], Any],
    project: str = "components",
    stack: str = "test",
    *,
    config: Optional[Mapping[str, str]] = None,
    stack_outputs: Optional[Mapping[str, Mapping[str, Any]]] = None,
    raise_errors: bool = True,
) -> Plan:
    """Run any callable as a Pulumi program under fresh recording mocks (a component test builds one
    component this way)."""
    config = dict(config or {})
    region = config.get("aws:region", DEFAULT_REGION)
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.reset_options(project=project, stack=stack, preview=False)
    pulumi.runtime.set_all_config(config)
    mocks = RecordingMocks(region, {k: dict(v) for k, v in (stack_outputs or {}).items()})
    monitor = RecordingMonitor(mocks)
    engine_log = _EngineLog()
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor,
                             logger=engine_log.logger)

    keys_read: dict[str, KeySpec] = {}
    observer = lambda spec: keys_read.setdefault(spec.key, spec)  # noqa: E731
    config_reader.OBSERVERS.append(observer)
    error = None
    try:
        _sync_await(pulumi.runtime.stack.run_pulumi_func(program))
        root = pulumi.runtime.settings.get_root_resource()
        outputs = {k: _resolve(v) for k, v in root.outputs.items()}
    except Exception as exc:  # a config error, for one, is reported in the plan rather than a traceback
        if raise_errors:
            raise
        error, outputs = describe_error(exc), {}
    finally:
        config_reader.OBSERVERS.remove(observer)
    return Plan(project, stack, mocks.resources, monitor.registrations, outputs, mocks.invokes, error, config,
                engine_log.warnings, keys_read)


def describe_error(exc: BaseException) -> str:
    """The cause a person needs: a ConfigError (or the innermost error) of a chain of Output errors."""
    chain, seen = [], set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    chosen = next((e for e in chain if isinstance(e, (ConfigError, UnplannedStackError))), chain[-1])
    return f"{type(chosen).__name__}: {chosen}"


class _EngineLog(logging.Handler):
    """Collects what the program logs through pulumi.log at warning level or above (shown in the plan)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.warnings: list[str] = []
        self.logger = logging.getLogger(f"offline.engine.{id(self)}")
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.warnings.append(record.getMessage())
