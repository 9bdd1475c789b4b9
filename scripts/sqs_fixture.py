#!/usr/bin/env python3
"""S3 buckets announcing new objects on an SQS queue, in a moto server, the way AWS sets
them up; used by tests/sqs.rs. Everything goes through boto3 (the AWS SDK for Python).

usage:
  sqs_fixture.py setup ENDPOINT NAME    one queue, four buckets (prints JSON):
      NAME-direct  S3 -> SQS event notification
      NAME-sns     S3 -> SNS topic -> SQS (raw message delivery off: SNS envelopes)
      NAME-eb      S3 -> EventBridge -> rule -> SQS ("Object Created" events)
      NAME-quiet   no notification (the test announces its objects itself)
  sqs_fixture.py put ENDPOINT           stdin: [{"bucket","key","file"}]; prints the ETags
  sqs_fixture.py send ENDPOINT URL      stdin: a JSON list of message bodies
  sqs_fixture.py depth ENDPOINT URL     prints {"visible": n, "in_flight": n}
  sqs_fixture.py receive ENDPOINT URL N receives every message N times, leaving it visible
                                        (as consumers that crashed would have)
"""
import json
import sys

import boto3

REGION = "us-east-1"


def client(kind, endpoint):
    return boto3.client(kind, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def setup(endpoint, name):
    sqs, s3 = client("sqs", endpoint), client("s3", endpoint)
    sns, events = client("sns", endpoint), client("events", endpoint)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    buckets = {kind: f"{name}-{kind}" for kind in ["direct", "sns", "eb", "quiet"]}
    for bucket in buckets.values():
        s3.create_bucket(Bucket=bucket)
    created = ["s3:ObjectCreated:*"]
    s3.put_bucket_notification_configuration(
        Bucket=buckets["direct"],
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": created}]})
    topic = sns.create_topic(Name=f"{name}-topic")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                  Attributes={"RawMessageDelivery": "false"})
    s3.put_bucket_notification_configuration(
        Bucket=buckets["sns"],
        NotificationConfiguration={"TopicConfigurations": [{"TopicArn": topic, "Events": created}]})
    events.put_rule(Name=f"{name}-created", EventPattern=json.dumps({
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [buckets["eb"]]}}}))
    events.put_targets(Rule=f"{name}-created", Targets=[{"Id": "queue", "Arn": arn}])
    s3.put_bucket_notification_configuration(
        Bucket=buckets["eb"],
        NotificationConfiguration={"EventBridgeConfiguration": {}})
    print(json.dumps({"queue_url": url, "buckets": buckets}))


def put(endpoint):
    s3 = client("s3", endpoint)
    out = []
    for o in json.load(sys.stdin):
        with open(o["file"], "rb") as f:
            answer = s3.put_object(Bucket=o["bucket"], Key=o["key"], Body=f.read())
        out.append({"bucket": o["bucket"], "key": o["key"], "etag": answer["ETag"].strip('"')})
    print(json.dumps(out))


def send(endpoint, url):
    sqs = client("sqs", endpoint)
    for body in json.load(sys.stdin):
        sqs.send_message(QueueUrl=url, MessageBody=body)


def depth(endpoint, url):
    attributes = client("sqs", endpoint).get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                      "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    print(json.dumps({"visible": int(attributes["ApproximateNumberOfMessages"]),
                      "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"])}))


def receive(endpoint, url, times):
    sqs = client("sqs", endpoint)
    for _ in range(times):
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)


if __name__ == "__main__":
    command, endpoint = sys.argv[1], sys.argv[2]
    {"setup": lambda: setup(endpoint, sys.argv[3]), "put": lambda: put(endpoint),
     "send": lambda: send(endpoint, sys.argv[3]), "depth": lambda: depth(endpoint, sys.argv[3]),
     "receive": lambda: receive(endpoint, sys.argv[3], int(sys.argv[4]))}[command]()
