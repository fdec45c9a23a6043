"""One tag set for every taggable resource of a stack, applied once by a stack transformation.

A transformation (rather than provider ``defaultTags``) puts the tags into each resource's own
inputs, where the offline plan and the tests can see them, and it also works for resources that
take an explicit provider.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pulumi

# ``Stack`` (``<project>/<stack>``) tells two stacks of one project apart in one account: the stack's budget
# filters on it (shared/budget.py), so it must be activated as a cost-allocation tag in the Billing console.
REQUIRED_TAG_KEYS = ("Project", "Stack", "Environment", "Owner", "CostCenter", "DataClassification", "ManagedBy")
DATA_CLASSIFICATIONS = ("public", "internal", "confidential", "restricted")
# Every taggable resource gets the whole set, S3 objects too (ml-pipeline uploads its training code package):
# S3 takes at most 10 tags per object (most services take 50), so the seven required tags leave 3 extra.
MAX_TAGS = 10


@dataclass(frozen=True)
class StackTags:
    """The tag set of one stack. ``extra`` adds team-specific tags; it cannot override the required ones.
    ``stack`` is the Pulumi stack name; the ``Stack`` tag is ``<project>/<stack>`` (left out when ``stack`` is
    unset, which the policy pack's required-tags rule then reports)."""

    project: str
    environment: str
    owner: str
    cost_center: str
    data_classification: str = "internal"
    managed_by: str = "pulumi"
    extra: Mapping[str, str] = field(default_factory=dict)
    stack: Optional[str] = None

    def __post_init__(self) -> None:
        if self.stack is not None and (not self.stack or len(self.stack_tag) > 256):
            raise ValueError(f"tag stack: <project>/<stack> must be 1 to 256 characters, got stack {self.stack!r}")
        for name in ("project", "environment", "owner", "cost_center", "managed_by"):
            value = getattr(self, name)
            if not value or len(value) > 256:
                raise ValueError(f"tag {name} must be 1 to 256 characters, got {value!r}")
        if self.data_classification not in DATA_CLASSIFICATIONS:
            raise ValueError(
                f"tag data_classification must be one of {', '.join(DATA_CLASSIFICATIONS)}, "
                f"got {self.data_classification!r}"
            )
        clash = set(self.extra) & set(REQUIRED_TAG_KEYS)
        if clash:
            raise ValueError(f"extra tags may not redefine required tags: {sorted(clash)}")
        if len(self.as_dict()) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags in all ({MAX_TAGS - len(REQUIRED_TAG_KEYS)} extra): every "
                             f"resource gets them, S3 objects too, which take {MAX_TAGS}; got {len(self.as_dict())}")

    @property
    def stack_tag(self) -> Optional[str]:
        return f"{self.project}/{self.stack}" if self.stack else None

    def as_dict(self) -> dict[str, str]:
        return {
            "Project": self.project,
            **({"Stack": self.stack_tag} if self.stack_tag else {}),
            "Environment": self.environment,
            "Owner": self.owner,
            "CostCenter": self.cost_center,
            "DataClassification": self.data_classification,
            "ManagedBy": self.managed_by,
            **dict(self.extra),
        }


@functools.lru_cache(maxsize=None)
def _has_tags_input(cls: type) -> bool:
    init = getattr(cls, "_internal_init", None)
    return init is not None and "tags" in inspect.signature(init).parameters


def is_taggable(resource: pulumi.Resource) -> bool:
    """True for AWS resources whose inputs take a ``tags`` map."""
    return isinstance(resource, pulumi.CustomResource) and _has_tags_input(type(resource))


def _merge(stack_tags: dict[str, str], own: object) -> pulumi.Input[dict]:
    # A resource's own tags win over the stack's for keys it sets itself (Name, for example).
    return pulumi.Output.from_input(own).apply(lambda tags: {**stack_tags, **(tags or {})})


def register_stack_tags(tags: StackTags) -> None:
    """Add ``tags`` to every taggable resource registered after this call in the current stack."""
    stack_tags = tags.as_dict()

    def transform(args: pulumi.ResourceTransformationArgs):
        if not is_taggable(args.resource):
            return None
        props = dict(args.props)
        own = props.get("tags")
        props["tags"] = dict(stack_tags) if own is None else _merge(stack_tags, own)
        return pulumi.ResourceTransformationResult(props, args.opts)

    pulumi.runtime.register_stack_transformation(transform)
