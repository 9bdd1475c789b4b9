"""Reads Security Lake objects as another tool would (pyarrow), for tests/security_lake.rs.

    security_lake_read.py file FILE...            Parquet files
    security_lake_read.py dir DIR                 every *.parquet under DIR
    security_lake_read.py s3 ENDPOINT BUCKET      every object in a (moto) bucket

Prints one JSON line per object: its key (relative to DIR or the bucket), row groups,
compression codecs, column names, and its rows turned back into OCSF JSON: timestamps as
RFC 3339 with milliseconds, maps as objects, nulls and empty objects left out (as
flowlog's JSON encoder writes events); for files, also what DuckDB counts in them. For a
bucket, first a line counting the multipart
uploads left incomplete. Credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY when set,
else moto's `testing`.
"""

import datetime
import io
import json
import os
import sys

import pyarrow.parquet as pq


def clean(value):
    if isinstance(value, dict):
        cleaned = {k: clean(v) for k, v in value.items()}
        cleaned = {k: v for k, v in cleaned.items() if v is not None}
        return cleaned or None
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, datetime.datetime):
        value = value.astimezone(datetime.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value


def duckdb_summary(path):
    """What DuckDB, another reader, finds in the file: rows, and the sum of traffic.bytes
    (a nested column)."""
    import duckdb

    (rows, total), = duckdb.execute(
        "SELECT count(*), sum(traffic.bytes) FROM read_parquet(?)", [path]
    ).fetchall()
    return {"rows": int(rows), "bytes": None if total is None else int(total)}


def describe(key, data, path=None):
    parquet = pq.ParquetFile(io.BytesIO(data))
    meta = parquet.metadata
    codecs = sorted(
        {
            meta.row_group(g).column(c).compression
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
        }
    )
    table = parquet.read()
    rows = [clean(r) for r in table.to_pylist(maps_as_pydicts="strict")]
    described = {
        "key": key,
        "row_groups": meta.num_row_groups,
        "codecs": codecs,
        "columns": table.schema.names,
        "events": rows,
    }
    if path is not None:
        described["duckdb"] = duckdb_summary(path)
    return described


def main():
    mode = sys.argv[1]
    objects = []
    if mode == "file":
        for path in sys.argv[2:]:
            with open(path, "rb") as f:
                objects.append((path, f.read(), path))
    elif mode == "dir":
        root = sys.argv[2]
        for top, _, files in os.walk(root):
            for name in files:
                if name.endswith(".parquet"):
                    path = os.path.join(top, name)
                    with open(path, "rb") as f:
                        objects.append((os.path.relpath(path, root), f.read(), path))
    elif mode == "s3":
        import boto3

        endpoint, bucket = sys.argv[2:4]
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        )
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                objects.append((item["Key"], body, None))
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        print(json.dumps({"incomplete_uploads": len(uploads)}))
    for key, data, path in sorted(objects, key=lambda o: o[0]):
        print(json.dumps(describe(key, data, path)))


main()
