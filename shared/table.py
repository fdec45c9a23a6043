"""A DynamoDB table with on-demand billing, point-in-time recovery and a customer-managed key."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

_TYPES = ("S", "N", "B")
_PROJECTIONS = ("ALL", "KEYS_ONLY", "INCLUDE")


@dataclass(frozen=True)
class Index:
    """A global secondary index. Leave the hash key attribute off items to keep them out (a sparse index)."""

    name: str
    hash_key: str
    range_key: Optional[str] = None
    projection_type: str = "ALL"
    non_key_attributes: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.projection_type not in _PROJECTIONS:
            raise ValueError(f"Index {self.name}: projection_type must be one of {_PROJECTIONS}")
        if (self.projection_type == "INCLUDE") != bool(self.non_key_attributes):
            raise ValueError(f"Index {self.name}: non_key_attributes go with projection_type INCLUDE only")


@dataclass(frozen=True)
class KeySchema:
    """A table's keys and indexes, in one place for a schema that several areas (and the moto fixtures of
    their tests) share, such as the model-versions table of contract 4."""

    hash_key: str
    attributes: Mapping[str, str]
    range_key: Optional[str] = None
    indexes: Sequence[Index] = field(default_factory=tuple)

    def table_args(self) -> dict:
        """The key fields of TableArgs."""
        return dict(hash_key=self.hash_key, range_key=self.range_key, attributes=dict(self.attributes),
                    indexes=tuple(self.indexes))

    def create_table_request(self, table_name: str) -> dict:
        """The same table as a boto3 ``create_table`` request (on-demand), for tests against moto."""
        def keys(hash_key: str, range_key: Optional[str]) -> list[dict]:
            return [{"AttributeName": hash_key, "KeyType": "HASH"},
                    *([{"AttributeName": range_key, "KeyType": "RANGE"}] if range_key else [])]
        request = {"TableName": table_name, "BillingMode": "PAY_PER_REQUEST",
                   "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in self.attributes.items()],
                   "KeySchema": keys(self.hash_key, self.range_key)}
        if self.indexes:
            request["GlobalSecondaryIndexes"] = [
                {"IndexName": i.name, "KeySchema": keys(i.hash_key, i.range_key),
                 "Projection": {"ProjectionType": i.projection_type,
                                **({"NonKeyAttributes": list(i.non_key_attributes)} if i.non_key_attributes else {})}}
                for i in self.indexes]
        return request


# The experiments table both projects write (gpu-training's, or the pipeline's own when no gpu-training
# stack is referenced): one run per item; "which runs are RUNNING / FAILED, newest first" across experiments.
EXPERIMENTS = KeySchema(hash_key="experiment_id", range_key="run_id",
                        attributes={"experiment_id": "S", "run_id": "S", "status": "S", "started_at": "S"},
                        indexes=(Index(name="status-started_at-index", hash_key="status", range_key="started_at"),))


@dataclass(frozen=True)
class TableArgs:
    """``attributes`` declares the type of every key attribute of the table and its indexes, and nothing else."""

    table_name: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    hash_key: str
    attributes: dict[str, str]
    range_key: Optional[str] = None
    indexes: Sequence[Index] = field(default_factory=tuple)
    deletion_protection: bool = False
    ttl_attribute: Optional[str] = None

    def __post_init__(self) -> None:
        keys = {self.hash_key, *([self.range_key] if self.range_key else [])}
        for index in self.indexes:
            keys |= {index.hash_key, *([index.range_key] if index.range_key else [])}
        if set(self.attributes) != keys:
            # DynamoDB rejects attribute definitions that no key uses, and keys without a definition.
            raise ValueError(f"TableArgs.attributes must define exactly the key attributes {sorted(keys)}, "
                             f"got {sorted(self.attributes)}")
        bad = {k: v for k, v in self.attributes.items() if v not in _TYPES}
        if bad:
            raise ValueError(f"TableArgs.attributes types must be one of {_TYPES}: {bad}")
        names = [i.name for i in self.indexes]
        if len(names) != len(set(names)):
            raise ValueError(f"TableArgs.indexes names must be unique: {names}")


def _key_schema(index: Index) -> list[aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs]:
    keys = [aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(attribute_name=index.hash_key, key_type="HASH")]
    if index.range_key:
        keys.append(aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(attribute_name=index.range_key, key_type="RANGE"))
    return keys


class Table(pulumi.ComponentResource):
    table: aws.dynamodb.Table
    name: pulumi.Output[str]
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: TableArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:storage:Table", name, None, opts)
        self.table = aws.dynamodb.Table(
            name,
            name=args.table_name,
            billing_mode="PAY_PER_REQUEST",
            hash_key=args.hash_key,
            range_key=args.range_key,
            attributes=[aws.dynamodb.TableAttributeArgs(name=k, type=v) for k, v in sorted(args.attributes.items())],
            global_secondary_indexes=[
                aws.dynamodb.TableGlobalSecondaryIndexArgs(
                    # key_schemas replaces the deprecated hash_key/range_key of an index.
                    name=i.name, key_schemas=_key_schema(i), projection_type=i.projection_type,
                    non_key_attributes=list(i.non_key_attributes) or None,
                ) for i in args.indexes
            ] or None,
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True, kms_key_arn=args.kms_key_arn),
            deletion_protection_enabled=args.deletion_protection,
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=args.ttl_attribute, enabled=True) if args.ttl_attribute else None,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.name = self.table.name
        self.arn = self.table.arn
        self.register_outputs({"name": self.name, "arn": self.arn})
