#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs into CORPORA/<target>/ (scripts/fuzz.sh calls it).

Seeds come from real inputs: ../shared/fixtures (flow logs of every version, CloudWatch,
Firehose and Lambda envelopes, gzip), the configuration blocks of the README and docs/, and the HEC answers
protocols.md lists. Names are content hashes, so seeding again adds nothing twice.
"""
import base64
import gzip
import hashlib
import json
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "..", "shared", "fixtures")
MAX = 65536  # scripts/fuzz.sh's -max_len


def put(corpora, target, data: bytes):
    if len(data) > MAX:
        return
    directory = os.path.join(corpora, target)
    os.makedirs(directory, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)


def fixture_files():
    for folder, _, files in os.walk(FIXTURES):
        for name in sorted(files):
            if name.endswith((".log", ".json", ".csv", ".gz")):
                yield os.path.join(folder, name)
    yield os.path.join(ROOT, "examples", "s3-vpc-flow-v5.log.gz")


def main():
    corpora = sys.argv[1]
    for path in fixture_files():
        with open(path, "rb") as f:
            data = f.read()
        # decode: a settings byte, then the input as it is and gzip'd; Lambda-wrapped too.
        for knobs in (0x00, 0x35, 0xF0):
            put(corpora, "decode", bytes([knobs]) + data)
        put(corpora, "decode", b"\x12" + gzip.compress(data))
        if data.lstrip().startswith(b"{") and b"logEvents" in data:
            wrapped = json.dumps({"awslogs": {"data": base64.b64encode(gzip.compress(data)).decode()}})
            put(corpora, "decode", b"\x00" + wrapped.encode())
        # firehose_request: "Content-Encoding values (;-separated) NL body", each Firehose
        # request fixture as sent and gzip'd.
        if "firehose-http-request" in path:
            put(corpora, "firehose_request", b"\n" + data)
            put(corpora, "firehose_request", b"gzip\n" + gzip.compress(data))
            put(corpora, "firehose_request", b"identity;gzip\n" + gzip.compress(data))
            put(corpora, "firehose_request", b"br\n" + data)
        # s3_notification: the notification bodies, bare and in an SNS envelope.
        if "s3-notifications" in path:
            put(corpora, "s3_notification", data)
            sns = {"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": data.decode()}
            put(corpora, "s3_notification", json.dumps(sns).encode())
        # format: a format spec (or header line) then lines to decode under it.
        if path.endswith(".log"):
            lines = data.split(b"\n")
            put(corpora, "format", data)
            put(corpora, "format", b"${version} ${account-id} ${interface-id}\n" + b"\n".join(lines[1:4]))
    # config: every TOML block of the docs, and the configurations the end-to-end tests write.
    docs = ["README.md", "ARCHITECTURE.md"] + sorted(
        os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md"))
    for doc in docs:
        with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
            for block in re.findall(r"```toml\n(.*?)```", f.read(), re.S):
                put(corpora, "config", block.encode())
    tests = os.path.join(ROOT, "tests")
    for name in sorted(os.listdir(tests)):
        if name.endswith(".rs"):
            with open(os.path.join(tests, name), encoding="utf-8") as f:
                for text in re.findall(r'r#"(.*?)"#', f.read(), re.S):
                    if "[sources." in text or "[sinks." in text:
                        put(corpora, "config", text.encode())
    # hec_answer: status (little-endian, minus 100), events, acking flag, then
    # "Retry-After value NUL body" or just the body.
    answers = [
        (200, b'{"text":"Success","code":0}'),
        (200, b'{"text":"Success","code":0,"ackId":7}'),
        (200, b'{"text":"Success","code":24}'),
        (400, b'{"text":"Invalid data format","code":6,"invalid-event-number":3}'),
        (400, b'{"text":"Data channel is missing","code":10}'),
        (401, b'{"text":"Invalid authorization","code":3}'),
        (413, b"Content-Length of 1048577 too large (maximum is 1000000)"),
        (429, b"10\x00" + b'{"text":"Server is busy","code":9}'),
        (503, b"Sun, 06 Nov 1994 08:49:37 GMT\x00" + b'{"text":"Server is busy","code":9}'),
        (200, b'{"acks":{"0":true,"1":false,"2":true}}'),
    ]
    for status, body in answers:
        put(corpora, "hec_answer", struct.pack("<H", status - 100) + bytes([8, 1]) + body)
    # es_answer: status (little-endian, minus 100), documents, then
    # "Retry-After value NUL body" or just the body.
    bulk = [
        (200, 2, b'{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}}]}'),
        (200, 3, b'{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":409,'
                 b'"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},'
                 b'{"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"full"}}}]}'),
        (200, 1, b'{"errors":true,"items":[{"index":{"status":400,"error":{"type":"document_parsing_exception",'
                 b'"reason":"[1:9] failed to parse field [source.port]"}}}]}'),
        (401, 1, b'{"error":{"type":"security_exception","reason":"missing authentication credentials"},"status":401}'),
        (413, 4, b""),
        (429, 4, b"1\x00" + b'{"error":{"type":"es_rejected_execution_exception","reason":"rejected"},"status":429}'),
        (503, 4, b"<html>bad gateway</html>"),
    ]
    for status, documents, body in bulk:
        put(corpora, "es_answer", struct.pack("<H", status - 100) + bytes([documents]) + body)
    # otlp_answer: status (little-endian, minus 100), the transport (0 gRPC, 1 HTTP/protobuf,
    # 2 HTTP/JSON), the number of records sent, then "Retry-After value NUL body" or just the body; for gRPC the body
    # is "grpc-status NUL grpc-message NUL grpc-status-details-bin NUL message".
    retry_info = (  # google.rpc.Status{code 8, details [Any{RetryInfo{retry_delay 1.5 s}}]}
        b"CAgSBGZ1bGwaNgoodHlwZS5nb29nbGVhcGlzLmNvbS9nb29nbGUucnBjLlJldHJ5SW5mbxIKCggIARCAyrXuAQ=="
    )
    otlp = [
        (200, 0, b"0\x00\x00\x00" + b"\x00\x00\x00\x00\x00"),
        (200, 0, b"0\x00\x00\x00" + b"\x00\x00\x00\x00\x08\x12\x06\x08\x02\x12\x02no"),
        (200, 0, b"8\x00resource%20exhausted\x00" + retry_info + b"\x00"),
        (200, 0, b"11\x00Error, decoded message length too large\x00\x00"),
        (200, 0, b"16\x00bad key\x00\x00"),
        (503, 0, b""),
        (200, 1, b"\x12\x06\x08\x03\x12\x02no"),
        (200, 2, b'{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"dropped"}}'),
        (200, 2, b'{"partialSuccess":{"rejectedLogRecords":5,"errorMessage":"dropped"}}'),
        (200, 2, b'{"partialSuccess":{"rejectedLogRecords":"999999"}}'),
        (400, 2, b'{"code":3,"message":"unmarshal"}'),
        (429, 1, b"2\x00"),
        (413, 1, b""),
    ]
    for status, transport, body in otlp:
        if transport == 0:
            body = b"\x00" + body  # no Retry-After: the trailers follow
        put(corpora, "otlp_answer", struct.pack("<H", status - 100) + bytes([transport, 10]) + body)


if __name__ == "__main__":
    main()
