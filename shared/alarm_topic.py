"""An encrypted SNS topic that CloudWatch alarms of this account may publish to."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from shared import iam
from shared.context import AwsContext


@dataclass(frozen=True)
class AlarmTopicArgs:
    """``kms_key_arn``: its key policy must grant the 'cloudwatch' service (EncryptionKey services)."""

    ctx: AwsContext
    topic_name: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    email_endpoints: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        bad = [e for e in self.email_endpoints if "@" not in e]
        if bad:
            raise ValueError(f"AlarmTopicArgs.email_endpoints must be e-mail addresses, got {bad}")


class AlarmTopic(pulumi.ComponentResource):
    topic: aws.sns.Topic
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: AlarmTopicArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:monitoring:AlarmTopic", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.topic = aws.sns.Topic(name, name=args.topic_name, kms_master_key_id=args.kms_key_arn, opts=child)
        aws.sns.TopicPolicy(
            f"{name}-policy",
            arn=self.topic.arn,
            policy=iam.document([
                {
                    "Sid": "CloudWatchAlarms", "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": "sns:Publish", "Resource": self.topic.arn,
                    "Condition": {"StringEquals": {"aws:SourceAccount": args.ctx.account_id}},
                },
                # Every action (subscribe, read attributes, publish) only over TLS, not publish alone.
                iam.deny_insecure_transport("sns", self.topic.arn),
            ]),
            opts=child,
        )
        for email in args.email_endpoints:
            # Keyed by the address, not its position, so reordering the list replaces nothing.
            aws.sns.TopicSubscription(f"{name}-{email}", topic=self.topic.arn, protocol="email", endpoint=email, opts=child)
        self.arn = self.topic.arn
        self.register_outputs({"arn": self.arn})
