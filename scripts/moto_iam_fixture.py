#!/usr/bin/env python3
"""A published IAM policy (deploy/iam/sqs-source.json, or the file FLOWLOG_IAM_POLICY names
in deploy/iam/) against a moto server that enforces IAM (started with
INITIAL_NO_AUTH_ACTION_COUNT=6); used by tests/iam.rs.

usage:
  moto_iam_fixture.py setup ENDPOINT LINES
      The six unauthenticated requests moto allows, all IAM: a user `flowlog` holding the
      policy file, and a user `fixture` allowed everything, each with an access key. Then,
      as `fixture`: a versioned bucket, the queue, two objects of LINES flow-log lines each
      under the policy's prefix, and an S3 notification for each on the queue (one naming
      the object's version, as notifications from a versioned bucket do). Prints JSON.
  moto_iam_fixture.py policy ENDPOINT FIXTURE_KEY FIXTURE_SECRET [WITHOUT_ACTION]
      Gives `flowlog` the policy file again, without WITHOUT_ACTION if one is named.
  moto_iam_fixture.py depth ENDPOINT FIXTURE_KEY FIXTURE_SECRET QUEUE_URL
      Prints the messages left on the queue (visible and in flight).
  moto_iam_fixture.py kinesis ENDPOINT FIXTURE_KEY FIXTURE_SECRET RECORDS LINES
      The stream `flow-logs` with two shards, and RECORDS records put as a CloudWatch Logs
      subscription puts them (gzip'd JSON of LINES flow-log lines each, and one
      CONTROL_MESSAGE first). Prints JSON.
  moto_iam_fixture.py lake ENDPOINT FIXTURE_KEY FIXTURE_SECRET [WITHOUT_ACTION]
      A Security Lake bucket and the provider role CreateCustomLogSource would make for the
      source `vpcflow`: trusting the user `flowlog` with an external id, allowed s3:PutObject under
      ext/vpcflow/ (without WITHOUT_ACTION if named). Prints JSON.

moto names what it authorizes after the operation called, so the batch delete flowlog
makes is checked as sqs:DeleteMessageBatch, an action AWS does not have (AWS authorizes
it as sqs:DeleteMessage); the same for SendMessageBatch. Wherever the policy allows
sqs:DeleteMessage or sqs:SendMessage, moto's name is added beside it; that is the only
change made to the published file. moto also authorizes Kinesis and DynamoDB calls against
the resource "*" (it names no stream or table), and Security Hub calls too, so statements
made only of kinesis:, dynamodb: or securityhub: actions get "Resource": "*" in the test's
copy: their actions are proven, their ARNs are not.
  moto_iam_fixture.py hub ENDPOINT FIXTURE_KEY FIXTURE_SECRET
      Enables Security Hub (as the fixture user).
  moto_iam_fixture.py hub-findings ENDPOINT FIXTURE_KEY FIXTURE_SECRET
      Prints the findings Security Hub holds, as JSON.
"""
import gzip
import json
import os
import sys
import time

import boto3

REGION = "us-east-1"
ACCOUNT = "123456789012"
QUEUE = "flow-logs"
BUCKET = "example-flow-log-bucket"
PREFIX = f"AWSLogs/{ACCOUNT}/vpcflowlogs/{REGION}/2026/08/01/"
POLICY = os.path.join(os.path.dirname(__file__), "..", "deploy", "iam",
                      os.environ.get("FLOWLOG_IAM_POLICY", "sqs-source.json"))
ALIASES = {"sqs:DeleteMessage": ["sqs:DeleteMessageBatch"],
           "sqs:SendMessage": ["sqs:SendMessageBatch"]}


def client(kind, endpoint, key="testing", secret="testing"):
    return boto3.client(kind, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=key, aws_secret_access_key=secret)


def policy(without=None):
    document = json.load(open(POLICY))
    for statement in document["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        kept = [a for a in actions if a != without]
        statement["Action"] = kept + [alias for a in kept for alias in ALIASES.get(a, [])]
        if kept and all(a.split(":")[0] in ("kinesis", "dynamodb", "securityhub") for a in kept):
            statement["Resource"] = "*"
    document["Statement"] = [s for s in document["Statement"] if s["Action"]]
    # A policy of one action, without it, is no policy: one that allows nothing flowlog asks.
    document["Statement"] = document["Statement"] or [
        {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]
    return json.dumps(document)


def line(i):
    return (f"2 {ACCOUNT} eni-0a1b2c3d4e5f60001 10.0.{i // 250 % 250}.{i % 250 + 1} "
            f"10.1.0.1 {1024 + i % 60000} 443 6 10 840 1785542400 1785542460 ACCEPT OK\n")


def setup(endpoint, lines):
    iam = client("iam", endpoint)
    iam.create_user(UserName="flowlog")
    iam.put_user_policy(UserName="flowlog", PolicyName="sqs-source", PolicyDocument=policy())
    key = iam.create_access_key(UserName="flowlog")["AccessKey"]
    iam.create_user(UserName="fixture")
    iam.put_user_policy(UserName="fixture", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    admin = iam.create_access_key(UserName="fixture")["AccessKey"]
    # From here on every request is signed and checked.
    fixture = (admin["AccessKeyId"], admin["SecretAccessKey"])
    s3, sqs = client("s3", endpoint, *fixture), client("sqs", endpoint, *fixture)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    objects = []
    for n, versioned in enumerate([False, True]):
        name = f"{PREFIX}{ACCOUNT}_vpcflowlogs_{REGION}_fl-0123_{n}.log"
        body = "".join(line(n * lines + i) for i in range(lines))
        put = s3.put_object(Bucket=BUCKET, Key=name, Body=body.encode())
        obj = {"key": name, "size": len(body)}
        if versioned:
            obj["versionId"] = put["VersionId"]
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"}, "object": obj},
        }]}))
        objects.append({"uri": f"s3://{BUCKET}/{name}", "version_id": obj.get("versionId")})
    print(json.dumps({
        "queue_url": url,
        "objects": objects,
        "flowlog": [key["AccessKeyId"], key["SecretAccessKey"]],
        "fixture": list(fixture),
    }))


def kinesis(endpoint, key, secret, records, lines):
    client_ = client("kinesis", endpoint, key, secret)
    client_.create_stream(StreamName=QUEUE, ShardCount=2)
    control = {"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "",
               "logStream": "", "subscriptionFilters": [], "logEvents": [{
                   "id": "", "timestamp": int(time.time() * 1000),
                   "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}
    client_.put_record(StreamName=QUEUE, PartitionKey="control",
                       Data=gzip.compress(json.dumps(control).encode()))
    for r in range(records):
        events = [{"id": str(r * lines + i), "timestamp": 1785542460000,
                   "message": line(r * lines + i).rstrip("\n")} for i in range(lines)]
        data = {"messageType": "DATA_MESSAGE", "owner": ACCOUNT, "logGroup": "vpc-flow-logs",
                "logStream": f"eni-0a1b2c3d4e5f6000{r % 4}-all",
                "subscriptionFilters": ["to-kinesis"], "logEvents": events}
        client_.put_record(StreamName=QUEUE, PartitionKey=f"eni-{r % 7}",
                           Data=gzip.compress(json.dumps(data).encode()))
    print(json.dumps({"stream": QUEUE, "lines": records * lines}))


LAKE_BUCKET = "aws-security-data-lake-us-east-1-abcdefghij"
LAKE_ROLE = "AmazonSecurityLake-Provider-vpcflow-us-east-1"
EXTERNAL_ID = "flowlog-vpcflow"


def lake(endpoint, key, secret, without=None):
    s3, iam = client("s3", endpoint, key, secret), client("iam", endpoint, key, secret)
    if LAKE_BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=LAKE_BUCKET)
    trust = {"Version": "2012-10-17", "Statement": [{
        # moto matches the caller's ARN itself (AWS would also take the account's root).
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/flowlog"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}}]}
    try:
        role = iam.get_role(RoleName=LAKE_ROLE)["Role"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(RoleName=LAKE_ROLE,
                               AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    actions = [a for a in ["s3:PutObject"] if a != without]
    statements = [{"Effect": "Allow", "Action": actions,
                   "Resource": f"arn:aws:s3:::{LAKE_BUCKET}/ext/vpcflow/*"}] if actions else []
    # An empty policy is not a policy: a statement that allows nothing useful instead.
    statements = statements or [{"Effect": "Allow", "Action": "s3:GetBucketLocation",
                                 "Resource": f"arn:aws:s3:::{LAKE_BUCKET}"}]
    iam.put_role_policy(RoleName=LAKE_ROLE, PolicyName="provider", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": statements}))
    print(json.dumps({"bucket": LAKE_BUCKET, "role_arn": role["Arn"],
                      "external_id": EXTERNAL_ID}))


def hub(endpoint, key, secret):
    securityhub = client("securityhub", endpoint, key, secret)
    try:
        securityhub.enable_security_hub(EnableDefaultStandards=False)
    except securityhub.exceptions.ResourceConflictException:
        pass


def hub_findings(endpoint, key, secret):
    securityhub = client("securityhub", endpoint, key, secret)
    findings = []
    for page in securityhub.get_paginator("get_findings").paginate():
        findings.extend(page["Findings"])
    print(json.dumps(findings, default=str))


def main():
    command, endpoint = sys.argv[1], sys.argv[2]
    if command == "setup":
        setup(endpoint, int(sys.argv[3]))
    elif command == "hub":
        hub(endpoint, sys.argv[3], sys.argv[4])
    elif command == "hub-findings":
        hub_findings(endpoint, sys.argv[3], sys.argv[4])
    elif command == "policy":
        iam = client("iam", endpoint, sys.argv[3], sys.argv[4])
        without = sys.argv[5] if len(sys.argv) > 5 else None
        iam.put_user_policy(UserName="flowlog", PolicyName="sqs-source",
                            PolicyDocument=policy(without))
    elif command == "depth":
        sqs = client("sqs", endpoint, sys.argv[3], sys.argv[4])
        attributes = sqs.get_queue_attributes(QueueUrl=sys.argv[5], AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        print(int(attributes["ApproximateNumberOfMessages"])
              + int(attributes["ApproximateNumberOfMessagesNotVisible"]))
    elif command == "kinesis":
        kinesis(endpoint, sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    elif command == "lake":
        lake(endpoint, sys.argv[3], sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
