"""Typed reads of Pulumi config with errors that name the key and what is allowed.

Only each project's ``config.py`` uses this: it hands in its ``pulumi.Config`` and gets plain values back.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Optional, Sequence, TypeVar

import pulumi

from shared.contracts import config_set_command
from shared.tagging import DATA_CLASSIFICATIONS, StackTags

T = TypeVar("T")


class ConfigError(ValueError):
    """A stack config value is missing or wrong; the message names the key."""


@dataclass(frozen=True)
class KeySpec:
    """One config key a program reads, with what it accepts: the source of the README's limits table."""

    key: str
    kind: str
    default: Any
    limits: str = ""


# Observers of every key read (the offline plan uses them to reject unknown --set keys and to document
# limits); nothing observes them during `pulumi up`.
OBSERVERS: list[Callable[[KeySpec], None]] = []


def _range(minimum: Any, maximum: Any) -> str:
    minimum, maximum = (int(v) if isinstance(v, float) and v.is_integer() else v for v in (minimum, maximum))
    if minimum is not None and maximum is not None:
        return f"{minimum}–{maximum}"
    if minimum is not None:
        return f">= {minimum}"
    return f"<= {maximum}" if maximum is not None else ""
# RFC 1918 only: ipaddress's is_private also accepts loopback, link-local, CGNAT (100.64/10) and
# documentation ranges, none of which a VPC can route as its own.
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))

# S3 bucket naming rules (general purpose buckets): 3-63 of a-z 0-9 . -, a letter or digit at both
# ends, no "..", not an IP address, none of the reserved prefixes and suffixes.
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
LONGEST_ACCOUNT_ID = "123456789012"  # account ids are always 12 digits


@lru_cache(maxsize=1)
def longest_region() -> str:
    """The longest region name botocore knows (all partitions), e.g. us-isof-south-1: a name built
    from {region} must fit wherever the stack may be deployed."""
    import botocore.loaders
    endpoints = botocore.loaders.Loader().load_data("endpoints")
    regions = [r for partition in endpoints["partitions"] for r in partition["regions"]]
    return max(sorted(regions), key=len)


def check_bucket_name(value: str) -> Optional[str]:
    """None when ``value`` is a valid S3 bucket name once ``{account}`` and ``{region}`` are filled in
    with the longest account id and region name; else what is wrong."""
    try:
        name = value.format(account=LONGEST_ACCOUNT_ID, region=longest_region())
    except (KeyError, IndexError, ValueError):
        return f"{value!r}: only {{account}} and {{region}} may appear in braces"
    if len(name) > 63:
        return (f"{value!r} is {len(name)} characters with a 12-digit account and the region "
                f"{longest_region()}; S3 allows 63")
    if (not _BUCKET_NAME.match(name) or ".." in name or name.startswith(_BUCKET_RESERVED_PREFIXES)
            or name.endswith(_BUCKET_RESERVED_SUFFIXES)):
        return f"{value!r} is not an S3 bucket name (3-63 of a-z 0-9 . -, starting and ending with a letter or digit)"
    try:
        ipaddress.IPv4Address(name)
        return f"{value!r} is not an S3 bucket name (it looks like an IP address)"
    except ValueError:
        return None


def check_default_bucket_name(template: str) -> Optional[str]:
    """Like check_bucket_name, for a default name template such as
    ``ml-training-data-dev-{account}-{region}``: the account and region are only known at deploy, so
    the preview would pass and ``pulumi up`` fail; check the longest case at config load instead."""
    return check_bucket_name(template)


class ConfigReader:
    def __init__(self, config: pulumi.Config):
        self.config = config
        self.namespace = config.name

    def key(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def _seen(self, name: str, kind: str, default: Any, limits: str = "") -> None:
        for observer in OBSERVERS:
            observer(KeySpec(self.key(name), kind, default, limits))

    def _fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"config {self.key(name)}: {message} "
                           f"(set it with `{config_set_command(self.namespace)} {name} ...`)")

    def error(self, name: str, message: str) -> ConfigError:
        """An error about one key (a check the reader's typed reads cannot express), with how to set it."""
        return self._fail(name, message)

    def require(self, ok: bool, names: Sequence[str], rule: str, got: str = "") -> None:
        """A rule between keys (documented with the limits): raise naming every key when it does not hold."""
        for observer in OBSERVERS:
            observer(KeySpec(" ".join(self.key(n) for n in names), "rule", None, rule))
        if not ok:
            raise self.fail(names, f"{rule}{'; got ' + got if got else ''}")

    def fail(self, names: Sequence[str], message: str) -> ConfigError:
        """An error about a rule between several keys, naming each of them and how to set them."""
        keys = ", ".join(self.key(n) for n in names)
        return ConfigError(f"config {keys}: {message} (set them with `{config_set_command(self.namespace)} KEY VALUE`)")

    def string(self, name: str, default: Optional[str] = None, *, choices: Sequence[str] = (),
               check: Optional[Callable[[str], bool]] = None, expected: str = "") -> str:
        self._seen(name, "string", default, ", ".join(choices) if choices else expected)
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

    def optional_string(self, name: str, expected: str = "") -> Optional[str]:
        self._seen(name, "string", None, expected)
        return self.config.get(name) or None

    def integer(self, name: str, default: int, *, minimum: Optional[int] = None, maximum: Optional[int] = None,
                allowed: Sequence[int] = ()) -> int:
        self._seen(name, "integer", default, ", ".join(map(str, allowed)) if allowed else _range(minimum, maximum))
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
        self._seen(name, "number", default, _range(minimum, maximum))
        raw = self.config.get(name)
        try:
            value = default if raw is None else float(raw)
        except ValueError:
            raise self._fail(name, f"must be a number; got {raw!r}") from None
        if not minimum <= value <= maximum:
            raise self._fail(name, f"must be between {minimum} and {maximum}; got {value}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        self._seen(name, "boolean", default, "true, false")
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
        self._seen(name, "list", list(default), f"at least {min_items} item(s)" if min_items else "")
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
        self._seen(name, "object", dict(default))
        value = self._json(name)
        if value is None:
            return dict(default)
        if not isinstance(value, dict):
            raise self._fail(name, f"must be an object; got {value!r}")
        return value

    def cidr(self, name: str, default: str, *, min_prefix: int, max_prefix: int) -> ipaddress.IPv4Network:
        raw = self.string(name, default, expected=f"an RFC 1918 IPv4 CIDR block, /{min_prefix} to /{max_prefix}")
        try:
            network = ipaddress.IPv4Network(raw, strict=True)
        except ValueError as exc:
            raise self._fail(name, f"must be an IPv4 CIDR block such as 10.20.0.0/16 ({exc})") from None
        if not min_prefix <= network.prefixlen <= max_prefix:
            raise self._fail(name, f"prefix length must be /{min_prefix} to /{max_prefix}; got /{network.prefixlen}")
        if not any(network.subnet_of(block) for block in RFC1918):
            raise self._fail(name, f"must lie in a private RFC 1918 range (10.0.0.0/8, 172.16.0.0/12, "
                                   f"192.168.0.0/16); got {raw}")
        return network

    def bucket_name(self, name: str, default_template: Optional[str] = None) -> Optional[str]:
        """A ``*BucketName`` key: the configured name (``{account}``/``{region}`` allowed) checked for the
        longest account and region, or None when unset, after checking that ``default_template`` (the
        name the program would use instead) fits."""
        value = self.optional_string(name, expected="an S3 bucket name ({account} and {region} allowed) that fits 63 "
                                                    "characters with a 12-digit account and the longest region")
        if value is not None:
            problem = check_bucket_name(value)
            if problem:
                raise self._fail(name, problem)
            return value
        if default_template is not None:
            problem = check_default_bucket_name(default_template)
            if problem:
                raise self._fail(name, f"is unset and the default name does not fit: {problem}; set a shorter name")
        return None

    def stack_tags(self, project: str, stack: str) -> StackTags:
        """The tag keys both projects share: owner, costCenter, dataClassification, extraTags."""
        extra = self.mapping("extraTags", {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
            raise self._fail("extraTags", "must map strings to strings")
        tag_value = dict(check=lambda v: 1 <= len(v) <= 256, expected="1 to 256 characters")
        environment = self.string("environment", stack, **tag_value)
        owner = self.string("owner", expected="the team or person that owns the stack, e.g. ml-platform")
        cost_center = self.string("costCenter", expected="the cost center to bill, e.g. cc-1234")
        for name, value in (("owner", owner), ("costCenter", cost_center)):
            if not 1 <= len(value) <= 256:
                raise self._fail(name, f"must be 1 to 256 characters; got {value!r}")
        try:
            return StackTags(
                project=project, stack=stack, environment=environment, owner=owner, cost_center=cost_center,
                data_classification=self.string("dataClassification", "internal", choices=DATA_CLASSIFICATIONS),
                extra=extra,
            )
        except ValueError as exc:  # what is left: extra tags that clash or too many tags
            raise self._fail("extraTags", str(exc)) from None


# A region name of any AWS partition (botocore's partition data), e.g. us-east-1, eu-central-2, us-gov-west-1.
@lru_cache(maxsize=1)
def _region_patterns() -> tuple[re.Pattern, ...]:
    import botocore.loaders  # only here: the programs need botocore only for this check
    partitions = botocore.loaders.create_loader().load_data("endpoints")["partitions"]
    return tuple(re.compile(p["regionRegex"]) for p in partitions)


def known_region(name: str) -> bool:
    return any(p.fullmatch(name) for p in _region_patterns())


def check_region() -> Optional[str]:
    """``aws:region`` must name a real region. The provider also takes the region from AWS_REGION or
    AWS_DEFAULT_REGION when the key is unset, so a missing key is left to the provider's own error."""
    for observer in OBSERVERS:
        observer(KeySpec("aws:region", "string", None, "an AWS region, e.g. us-east-1 (or AWS_REGION)"))
    region = pulumi.Config("aws").get("region")
    source = "config aws:region"
    if not region:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        source = "AWS_REGION/AWS_DEFAULT_REGION (aws:region is unset)"
    if region and not known_region(region):
        raise ConfigError(f"{source}: must be an AWS region such as us-east-1; got {region!r} "
                          f"(set it with `pulumi config set aws:region us-east-1`)")
    return region
