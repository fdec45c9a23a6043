"""Account, region and partition of the stack's provider, looked up once and passed to components."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class AwsContext:
    account_id: pulumi.Output[str]
    region: pulumi.Output[str]
    partition: pulumi.Output[str]
    dns_suffix: pulumi.Output[str]

    @staticmethod
    def lookup() -> "AwsContext":
        partition = aws.get_partition_output()
        return AwsContext(
            account_id=aws.get_caller_identity_output().account_id,
            region=aws.get_region_output().region,
            partition=partition.partition,
            dns_suffix=partition.dns_suffix,
        )

    def arn(self, service: str, resource: str) -> pulumi.Output[str]:
        """``arn:<partition>:<service>:<region>:<account>:<resource>`` built from the provider, never by hand."""
        return pulumi.Output.all(self.partition, self.region, self.account_id).apply(
            lambda v: f"arn:{v[0]}:{service}:{v[1]}:{v[2]}:{resource}"
        )

    def bucket_name(self, name_template: str) -> pulumi.Output[str]:
        """A bucket name with optional {account} and {region} placeholders filled in (config's bucket
        names and the defaults, which append them to be globally unique)."""
        return pulumi.Output.all(self.account_id, self.region).apply(
            lambda v: name_template.format(account=v[0], region=v[1]))

    def bucket_arn(self, name_template: str) -> pulumi.Output[str]:
        """ARN of a bucket named with optional {account} and {region} placeholders (bucket names of
        other stacks, which append them to be globally unique)."""
        return pulumi.Output.all(self.partition, self.account_id, self.region).apply(
            lambda v: f"arn:{v[0]}:s3:::{name_template.format(account=v[1], region=v[2])}")

    def root_principal(self) -> pulumi.Output[str]:
        return pulumi.Output.all(self.partition, self.account_id).apply(lambda v: f"arn:{v[0]}:iam::{v[1]}:root")
