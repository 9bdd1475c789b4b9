#!/usr/bin/env python3
"""DuckDB, the peer of `flowlog query`, over the same flow-log files.

usage:
  duckdb_peer.py answer DIR SQL...    one JSON line per statement: its rows, as objects
  duckdb_peer.py cpu FILE SQL         CPU seconds (user+sys, every thread) of one statement,
                                      and its row count, as JSON
  duckdb_peer.py parquet TEXT OUT     TEXT (flow-log lines) as Parquet the way AWS writes it

DuckDB reads each file with its own readers: text (plain or gzip) with read_csv (space
separated, `-` as null, a header line when the file has one, AWS's names with `_`), and
Parquet with read_parquet. The view `flows` unites them by name, with `start` and `end` as
timestamps, as flowlog's table has them.
"""
import gzip
import json
import os
import resource
import sys

import duckdb

V2 = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets "
      "bytes start end action log-status").split()
INT32 = {"version", "srcport", "dstport", "protocol", "tcp_flags", "traffic_path"}
INT64 = {"packets", "bytes", "start", "end"}


def duck_type(column):
    if column in INT32:
        return "INTEGER"
    if column in INT64:
        return "BIGINT"
    return "VARCHAR"


def first_line(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return f.readline()


def source(path):
    """A DuckDB table expression reading one file."""
    quoted = "'" + path.replace("'", "''") + "'"
    if path.endswith(".parquet"):
        return f"read_parquet({quoted})"
    line = first_line(path)
    header = line[:1].isalpha()
    names = line.split() if header else V2
    columns = [n.replace("-", "_") for n in names]
    spec = ", ".join(f"'{c}': '{duck_type(c)}'" for c in columns)
    return (f"read_csv({quoted}, delim=' ', header={str(header).lower()}, "
            f"columns={{{spec}}}, nullstr='-', auto_detect=false)")


def connect(paths):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    parts = [f"SELECT * FROM {source(p)}" for p in paths]
    union = " UNION ALL BY NAME ".join(parts)
    con.execute(
        f"CREATE VIEW raw AS {union};"
        "CREATE VIEW flows AS SELECT * REPLACE (to_timestamp(start) AS start, "
        "to_timestamp(\"end\") AS \"end\") FROM raw")
    return con


def files(root):
    if os.path.isfile(root):
        return [root]
    out = []
    for top, _, names in os.walk(root):
        out.extend(os.path.join(top, n) for n in sorted(names))
    return sorted(out)


def rows(con, sql):
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [{k: v for k, v in zip(names, row) if v is not None} for row in cursor.fetchall()]


def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def to_parquet(text, out):
    import pyarrow as pa
    import pyarrow.parquet as pq
    columns = {c.replace("-", "_"): [] for c in V2}
    opener = gzip.open if text.endswith(".gz") else open
    with opener(text, "rt") as f:
        for line in f:
            values = line.split()
            if len(values) != len(V2):
                continue
            for c, v in zip(columns, values):
                columns[c].append(None if v == "-" else v)
    arrays = {}
    for c, values in columns.items():
        if c in INT32:
            arrays[c] = pa.array([None if v is None else int(v) for v in values], pa.int32())
        elif c in INT64:
            arrays[c] = pa.array([None if v is None else int(v) for v in values], pa.int64())
        else:
            arrays[c] = pa.array(values, pa.string())
    pq.write_table(pa.table(arrays), out, compression="gzip")


def main():
    mode, *args = sys.argv[1:]
    if mode == "answer":
        root, *statements = args
        con = connect(files(root))
        for sql in statements:
            print(json.dumps(rows(con, sql), default=str))
    elif mode == "cpu":
        path, sql = args
        con = connect([path])
        before = cpu()
        n = len(con.execute(sql).fetchall())
        print(json.dumps({"cpu": cpu() - before, "rows": n}))
    elif mode == "parquet":
        to_parquet(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
