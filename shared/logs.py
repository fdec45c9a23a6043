"""CloudWatch log groups encrypted with the stack's key and kept for a bounded time."""
from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws

# The only values CloudWatch Logs accepts for retentionInDays.
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                  2922, 3288, 3653)


def check_retention(days: int, field: str = "retention_days") -> int:
    if days not in RETENTION_DAYS:
        raise ValueError(f"{field} must be one of {RETENTION_DAYS}, got {days}")
    return days


def encrypted_log_group(
    resource_name: str,
    *,
    log_group_name: pulumi.Input[str],
    kms_key_arn: pulumi.Input[str],
    retention_days: int,
    opts: Optional[pulumi.ResourceOptions] = None,
) -> aws.cloudwatch.LogGroup:
    """The key's policy must grant CloudWatch Logs (EncryptionKey services=['logs']), or creation fails."""
    return aws.cloudwatch.LogGroup(
        resource_name,
        name=log_group_name,
        kms_key_id=kms_key_arn,
        retention_in_days=check_retention(retention_days),
        opts=opts,
    )
