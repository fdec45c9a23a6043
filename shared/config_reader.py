"""Typed reads of Pulumi config with errors that name the key and what is allowed.

Only each project's ``config.py`` uses this: it hands in its ``pulumi.Config`` and gets plain values back.
"""
from __future__ import annotations

import ipaddress
import json
from typing import Any, Callable, Optional, Sequence, TypeVar

import pulumi

from shared.tagging import StackTags

T = TypeVar("T")


class ConfigError(ValueError):
    """A stack config value is missing or wrong; the message names the key."""


class ConfigReader:
    def __init__(self, config: pulumi.Config):
        self.config = config
        self.namespace = config.name

    def key(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def _fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"config {self.key(name)}: {message} (set it with `pulumi config set {name} ...`)")

    def string(self, name: str, default: Optional[str] = None, *, choices: Sequence[str] = (),
               check: Optional[Callable[[str], bool]] = None, expected: str = "") -> str:
        value = self.config.get(name)
        if value is None:
            if default is None:
                raise self._fail(name, f"is required{': ' + expected if expected else ''}")
            value = default
        if choices and value not in choices:
            raise self._fail(name, f"must be one of {', '.join(choices)}; got {value!r}")
        if check is not None and not check(value):
            raise self._fail(name, f"must be {expected}; got {value!r}")
        return value

    def optional_string(self, name: str) -> Optional[str]:
        return self.config.get(name) or None

    def integer(self, name: str, default: int, *, minimum: Optional[int] = None, maximum: Optional[int] = None,
                allowed: Sequence[int] = ()) -> int:
        raw = self.config.get(name)
        if raw is None:
            value = default
        else:
            try:
                value = int(raw)
            except ValueError:
                raise self._fail(name, f"must be a whole number; got {raw!r}") from None
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            raise self._fail(name, f"must be between {minimum} and {maximum}; got {value}")
        if allowed and value not in allowed:
            raise self._fail(name, f"must be one of {', '.join(map(str, allowed))}; got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        raw = self.config.get(name)
        try:
            value = default if raw is None else float(raw)
        except ValueError:
            raise self._fail(name, f"must be a number; got {raw!r}") from None
        if not minimum <= value <= maximum:
            raise self._fail(name, f"must be between {minimum} and {maximum}; got {value}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.config.get(name)
        if raw is None:
            return default
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise self._fail(name, f"must be true or false; got {raw!r}")

    def _json(self, name: str) -> Any:
        raw = self.config.get(name)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise self._fail(name, f"must be a JSON/YAML list or object; got {raw!r}") from None

    def string_list(self, name: str, default: Sequence[str], *, min_items: int = 0,
                    item_check: Optional[Callable[[str], Optional[str]]] = None) -> list[str]:
        value = self._json(name)
        if value is None:
            value = list(default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(name, f"must be a list of strings; got {value!r}")
        if len(value) < min_items:
            raise self._fail(name, f"needs at least {min_items} item(s)")
        if len(set(value)) != len(value):
            raise self._fail(name, f"has duplicates: {value}")
        for item in value:
            problem = item_check(item) if item_check else None
            if problem:
                raise self._fail(name, problem)
        return value

    def mapping(self, name: str, default: dict) -> dict:
        value = self._json(name)
        if value is None:
            return dict(default)
        if not isinstance(value, dict):
            raise self._fail(name, f"must be an object; got {value!r}")
        return value

    def cidr(self, name: str, default: str, *, min_prefix: int, max_prefix: int) -> ipaddress.IPv4Network:
        raw = self.string(name, default)
        try:
            network = ipaddress.IPv4Network(raw, strict=True)
        except ValueError as exc:
            raise self._fail(name, f"must be an IPv4 CIDR block such as 10.20.0.0/16 ({exc})") from None
        if not min_prefix <= network.prefixlen <= max_prefix:
            raise self._fail(name, f"prefix length must be /{min_prefix} to /{max_prefix}; got /{network.prefixlen}")
        if not network.is_private:
            raise self._fail(name, f"must be a private (RFC 1918) range; got {raw}")
        return network

    def stack_tags(self, project: str, stack: str) -> StackTags:
        """The tag keys both projects share: owner, costCenter, dataClassification, extraTags."""
        extra = self.mapping("extraTags", {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
            raise self._fail("extraTags", "must map strings to strings")
        try:
            return StackTags(
                project=project,
                environment=self.string("environment", stack),
                owner=self.string("owner", expected="the team or person that owns the stack, e.g. ml-platform"),
                cost_center=self.string("costCenter", expected="the cost center to bill, e.g. cc-1234"),
                data_classification=self.string("dataClassification", "internal"),
                extra=extra,
            )
        except ValueError as exc:
            raise ConfigError(f"config {self.namespace} tags: {exc}") from None
