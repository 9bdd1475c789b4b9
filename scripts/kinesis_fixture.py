#!/usr/bin/env python3
"""Kinesis streams and lease tables in moto server for tests/kinesis.rs, through boto3.

usage:
  kinesis_fixture.py put ENDPOINT STREAM SHARDS RECORDS LINES [FIRST]
      Creates STREAM with SHARDS shards unless it exists, then puts records FIRST..
      FIRST+RECORDS as a CloudWatch Logs subscription puts them: gzip'd JSON, a
      DATA_MESSAGE of LINES flow-log lines each (a CONTROL_MESSAGE first when FIRST is 0).
      Record r goes to shard r % SHARDS (by an explicit hash key in that shard's range).
      Line j of record r, numbered i = r * LINES + j, is unique by its packets (i) and names its shard in its
      interface id (eni-<shard, 17 hex digits>), so a test can tell what arrived twice
      and from which shard. Prints JSON: {"lines": ...}.
  kinesis_fixture.py put-file ENDPOINT STREAM SHARDS FILE LINES
      Creates STREAM with SHARDS shards, then puts FILE's lines (flow-log lines, no header)
      LINES at a time as subscription records, spread over the shards. Prints JSON:
      {"lines": ..., "records": ..., "bytes": ...} (bytes: the records' gzip'd size).
  kinesis_fixture.py leases ENDPOINT TABLE
      The lease table's items: [{"key", "owner", "checkpoint"}], sorted by key.

moto's sequence numbers are small integers and its GetRecords never names child shards;
nothing here leans on either.
"""
import gzip
import json
import sys
import time

import boto3

REGION = "us-east-1"
ACCOUNT = "123456789012"


def client(kind, endpoint):
    return boto3.client(kind, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def line(i, shard):
    return (f"2 {ACCOUNT} eni-{shard:017x} 10.0.{i // 250 % 250}.{i % 250 + 1} 10.1.0.1 "
            f"{1024 + i % 60000} 443 6 {i} 840 1785542400 1785542460 ACCEPT OK")


def payload(events, stream):
    return gzip.compress(json.dumps({
        "messageType": "DATA_MESSAGE", "owner": ACCOUNT, "logGroup": "vpc-flow-logs",
        "logStream": stream, "subscriptionFilters": ["to-kinesis"], "logEvents": events,
    }).encode(), compresslevel=1)


def control():
    return gzip.compress(json.dumps({
        "messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "",
        "logStream": "", "subscriptionFilters": [], "logEvents": [{
            "id": "", "timestamp": int(time.time() * 1000),
            "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}],
    }).encode())


def stream_of(endpoint, stream, shards):
    kinesis = client("kinesis", endpoint)
    try:
        kinesis.describe_stream_summary(StreamName=stream)
    except kinesis.exceptions.ResourceNotFoundException:
        kinesis.create_stream(StreamName=stream, ShardCount=shards)
        kinesis.get_waiter("stream_exists").wait(
            StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    return kinesis


def put_file(endpoint, stream, shards, path, lines):
    kinesis = stream_of(endpoint, stream, shards)
    step = 2 ** 128 // shards
    batch, events, records, size, total = [], [], 0, 0, 0

    def record():
        nonlocal records, size
        shard = records % shards
        data = payload(events, f"stream-{records % 64}")
        size += len(data)
        batch.append({"Data": data, "PartitionKey": f"key-{records % 64}",
                      "ExplicitHashKey": str(shard * step + step // 2)})
        records += 1

    with open(path) as f:
        for text in f:
            events.append({"id": str(total), "timestamp": 1785542460000,
                           "message": text.rstrip("\n")})
            total += 1
            if len(events) == lines:
                record()
                events = []
            if len(batch) == 500:
                send(kinesis, stream, batch)
                batch = []
    if events:
        record()
    if batch:
        send(kinesis, stream, batch)
    print(json.dumps({"lines": total, "records": records, "bytes": size}))


def put(endpoint, stream, shards, records, lines, first):
    kinesis = stream_of(endpoint, stream, shards)
    step = 2 ** 128 // shards
    batch = []
    if first == 0:
        batch.append({"Data": control(), "PartitionKey": "control"})
    for r in range(first, first + records):
        shard = r % shards
        events = [{"id": str(r * lines + j), "timestamp": 1785542460000,
                   "message": line(r * lines + j, shard)} for j in range(lines)]
        batch.append({"Data": payload(events, f"eni-{shard:017x}-all"),
                      "PartitionKey": f"eni-{shard}",
                      "ExplicitHashKey": str(shard * step + step // 2)})
        if len(batch) == 500:
            send(kinesis, stream, batch)
            batch = []
    if batch:
        send(kinesis, stream, batch)
    print(json.dumps({"lines": records * lines}))


def send(kinesis, stream, batch):
    answer = kinesis.put_records(StreamName=stream, Records=batch)
    if answer.get("FailedRecordCount"):
        sys.exit(f"put_records: {answer['FailedRecordCount']} records failed")


def leases(endpoint, table):
    dynamodb = client("dynamodb", endpoint)
    items = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    print(json.dumps(sorted(({
        "key": item["leaseKey"]["S"],
        "owner": item.get("leaseOwner", {}).get("S"),
        "checkpoint": item.get("checkpoint", {}).get("S"),
    } for item in items), key=lambda lease: lease["key"])))


def main():
    command, endpoint = sys.argv[1], sys.argv[2]
    if command == "put":
        stream, shards, records, lines = sys.argv[3], *map(int, sys.argv[4:7])
        first = int(sys.argv[7]) if len(sys.argv) > 7 else 0
        put(endpoint, stream, shards, records, lines, first)
    elif command == "put-file":
        put_file(endpoint, sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
    elif command == "leases":
        leases(endpoint, sys.argv[3])
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
