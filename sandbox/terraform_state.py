"""Terraform state in S3 and its locks, written the way Terraform's S3 backend writes them: the state object, the
DynamoDB lock table with the state's BUCKET/KEY-md5 digest item, a lock item {LockID: BUCKET/KEY, Info: LockInfo
JSON}, and the S3-native lock file KEY.tflock (use_lockfile). The sandbox seeds one stale lock with it (what
terraform-unlock.yml removes); the tests take locks of every age with it."""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid

TERRAFORM_VERSION = "1.9.5"


def state_document() -> bytes:
    return json.dumps({"version": 4, "terraform_version": TERRAFORM_VERSION, "serial": 12,
                       "lineage": str(uuid.uuid4()), "outputs": {}, "resources": []}).encode()


def go_time(moment: datetime.datetime) -> str:
    """Go's JSON for a time.Time in UTC: RFC 3339 with nanoseconds."""
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}417Z"


def lock_info(bucket: str, key: str, age: datetime.timedelta, who: str = "alice@ci-runner-7",
              operation: str = "OperationTypeApply") -> dict:
    """statemgr.LockInfo, its fields in Terraform's order."""
    created = datetime.datetime.now(datetime.UTC) - age
    return {"ID": str(uuid.uuid4()), "Operation": operation, "Info": "", "Who": who, "Version": TERRAFORM_VERSION,
            "Created": go_time(created), "Path": f"{bucket}/{key}"}


class StateBackend:
    """A state bucket with its state object and a DynamoDB lock table with the state's -md5 digest item, as a
    `terraform apply` leaves them; then locks taken the way Terraform takes them."""

    def __init__(self, s3, dynamodb, bucket: str, key: str, table: str):
        self.s3, self.ddb, self.bucket, self.key, self.table = s3, dynamodb, bucket, key, table

    def create(self, state: bytes | None = None) -> None:
        state = state or state_document()
        self.s3.create_bucket(Bucket=self.bucket)
        self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=state, ContentType="application/json")
        self.ddb.create_table(TableName=self.table, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}])
        self.ddb.put_item(TableName=self.table, Item={"LockID": {"S": f"{self.bucket}/{self.key}-md5"},
                                                      "Digest": {"S": hashlib.md5(state).hexdigest()}})

    def lock_dynamodb(self, info: dict, replace: bool = False) -> None:
        condition = {} if replace else {"ConditionExpression": "attribute_not_exists(LockID)"}
        self.ddb.put_item(TableName=self.table, Item={"LockID": {"S": f"{self.bucket}/{self.key}"},
                                                      "Info": {"S": json.dumps(info, separators=(",", ":"))}},
                          **condition)

    def lock_s3(self, info: dict, replace: bool = False) -> None:
        condition = {} if replace else {"IfNoneMatch": "*"}
        self.s3.put_object(Bucket=self.bucket, Key=f"{self.key}.tflock", Body=json.dumps(info, separators=(",", ":")),
                           ContentType="application/json", **condition)
