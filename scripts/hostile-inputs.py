#!/usr/bin/env python3
"""Peak memory of flowlog on hostile inputs (issue 15, item 5): each case is generated in a
scratch directory, run through the release binary, and reported with its peak RSS (from
wait4, for that process alone), CPU time and what was dead-lettered.

    cargo build --release && python3 scripts/hostile-inputs.py [--keep DIR]

Needs about 4 GB of free disk for the inputs (generated once per scratch directory).
The gzip'd Parquet case needs pyarrow (`pip install pyarrow`); it is skipped without it.
"""
import argparse
import base64
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = b"2 123456789010 eni-1235b8ca123456789 10.0.0.1 10.0.0.2 443 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n"
GIB = 1 << 30


def gzip_repeated(piece: bytes, total: int) -> bytes:
    """gzip of `piece` repeated up to `total` bytes, compressed as it is produced."""
    out = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = piece * ((1 << 20) // len(piece))
    parts, done = [], 0
    while done < total:
        take = chunk[: total - done]
        parts.append(out.compress(take))
        done += len(take)
    parts.append(out.flush())
    return b"".join(parts)


def write_repeated(path, head: bytes, piece: bytes, total: int, tail: bytes):
    chunk = piece * ((1 << 20) // len(piece))
    with open(path, "wb") as f:
        f.write(head)
        done = 0
        while done < total:
            take = chunk[: total - done]
            f.write(take)
            done += len(take)
        f.write(tail)


def cases(scratch):
    """(name, input description, command, stdin path or None, before-figure)"""
    made = []

    def path(name):
        return os.path.join(scratch, name)

    # 1-2. Lambda `awslogs` events whose gzip holds 1 GiB (spaces; tokens without newlines).
    for label, piece in [("spaces", b" "), ("tokens", b"2 1 eni-1 ")]:
        p = path(f"lambda-{label}.json")
        if not os.path.exists(p):
            data = base64.b64encode(gzip_repeated(piece, GIB)).decode()
            with open(p, "w") as f:
                f.write(json.dumps({"awslogs": {"data": data}}) + "\n")
                f.write(json.dumps({"message": GOOD.decode().strip()}) + "\n")
        made.append((f"Lambda event, gzip of 1 GiB of {label}", p, None))
    # 3. A Firehose request whose one record holds the same.
    p = path("firehose-tokens.json")
    if not os.path.exists(p):
        data = base64.b64encode(gzip_repeated(b"2 1 eni-1 ", GIB)).decode()
        with open(p, "w") as f:
            f.write(json.dumps({"requestId": "r", "records": [{"data": data}]}) + "\n")
    made.append(("Firehose record, gzip of 1 GiB of tokens", p, None))
    # 4-5. A 286 MB line without a newline in a plain file: mapped, then through a pipe.
    p = path("long-line.log")
    if not os.path.exists(p):
        write_repeated(p, GOOD, b"2 1 eni-1 ", 286_000_000, b"\n" + GOOD)
    made.append(("286 MB line, plain file (mapped)", p, None))
    made.append(("286 MB line, plain text on stdin", "-", p))
    # 6. 2 GiB of zeros without a newline, gzip'd, on stdin (the line skipped in a stream).
    p = path("zeros.gz")
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(gzip_repeated(b"0", 2 * GIB))
    made.append(("gzip of a 2 GiB line of zeros, stdin", "-", p))
    # 7. Concatenated (pretty-printed) CloudWatch payload with a 1 GiB event list.
    p = path("concatenated.json")
    if not os.path.exists(p):
        event = json.dumps({"id": "1", "timestamp": 1, "message": GOOD.decode().strip()}).encode() + b",\n"
        write_repeated(p, b'{\n "messageType": "DATA_MESSAGE",\n "logEvents": [\n', event, GIB, b"{}]}\n")
    made.append(("concatenated JSON, 1 GiB logEvents list", p, None))
    # 8. gzip'd Parquet on stdin (spilled to a temporary file, not memory).
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = path("flows.parquet.gz")
        if not os.path.exists(p):
            rows = 4_000_000
            table = pa.table(
                {
                    "version": pa.array([2] * rows, pa.int32()),
                    "srcaddr": pa.array([f"10.0.{i % 256}.{i % 200}" for i in range(rows)]),
                    "dstport": pa.array([i % 65536 for i in range(rows)], pa.int32()),
                    "bytes": pa.array(list(range(rows)), pa.int64()),
                }
            )
            raw = path("flows.parquet")
            pq.write_table(table, raw, row_group_size=100_000)
            with open(raw, "rb") as src, gzip.open(p, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst)
            os.remove(raw)
        made.append((f"gzip'd Parquet ({os.path.getsize(p) >> 20} MB gz) on stdin", "-", p))
    except ImportError:
        print("(pyarrow not installed: the gzip'd Parquet case is skipped)", file=sys.stderr)
    return made


def run(binary, arg, stdin_path, dead_letter):
    """Exit code, peak RSS (KiB), CPU seconds and standard error of one transform. GNU time
    measures it: the RSS of a child of this (large) Python process would count pages shared
    with it before exec."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    report = os.path.join(os.path.dirname(dead_letter), "time.txt")
    args = ["/usr/bin/time", "-o", report, "-f", "%M %U %S",
            binary, "transform", "--quiet", "--dead-letter", dead_letter, arg]
    proc = subprocess.run(args, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with open(report) as f:
        last = f.read().strip().splitlines()[-1]
    rss, user, system = last.split()
    err = proc.stderr.decode(errors="replace").strip()
    return proc.returncode, int(rss), float(user) + float(system), err


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", help="scratch directory to reuse (inputs generated once)")
    parser.add_argument("--binary", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "flowlog"))
    opts = parser.parse_args()
    scratch = opts.keep or tempfile.mkdtemp(prefix="flowlog-hostile-")
    os.makedirs(scratch, exist_ok=True)
    print(f"| case | input size | peak RSS | CPU | dead letters (reason, raw kept / raw_length) | exit |")
    print(f"|---|---|---|---|---|---|")
    for name, arg, stdin_path in cases(scratch):
        dead = os.path.join(scratch, "dead.ndjson")
        if os.path.exists(dead):
            os.remove(dead)
        code, rss, cpu, err = run(opts.binary, arg, stdin_path, dead)
        letters = []
        if os.path.exists(dead):
            with open(dead) as f:
                letters = [json.loads(line) for line in f]
        size = os.path.getsize(stdin_path or arg)
        summary = "; ".join(
            f"{l['reason'][:70]} ({len(l['raw'])} B / {l.get('raw_length', len(l['raw']))})"
            for l in letters[:2]
        ) + (f"; +{len(letters) - 2} more" if len(letters) > 2 else "")
        if code != 0:
            summary += f" ERROR: {err[:120]}"
        print(f"| {name} | {size / 1e6:.1f} MB | {rss / 1024:.0f} MB | {cpu:.2f} s | {summary} | {code} |")
        sys.stdout.flush()
    if not opts.keep:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
