"""Physical names derived from project and stack, so two stacks coexist in one account."""
from __future__ import annotations

import re

_SEGMENT = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def physical_name(project: str, stack: str, *parts: str, max_length: int = 63) -> str:
    """``<project>-<stack>-<part>...``, lower-case and dash-separated.

    63 is the tightest limit among the resources named this way (S3 bucket names); callers with
    tighter limits (an IAM role name prefix, a target group) pass ``max_length``.
    """
    segments = [project, stack, *parts]
    for segment in segments:
        if not _SEGMENT.match(segment):
            raise ValueError(
                f"name segment {segment!r} must be lower-case letters, digits and single dashes"
            )
    name = "-".join(segments)
    if len(name) > max_length:
        raise ValueError(f"physical name {name!r} is {len(name)} characters; the limit is {max_length}")
    return name
