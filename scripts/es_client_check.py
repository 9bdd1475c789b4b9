"""Talks to the Elasticsearch test receiver through Elastic's own Python client
(elasticsearch 8.x from PyPI), which keeps the receiver honest: the client checks the
product header, speaks the compatibility media types and reads the answers as a real
cluster's. Run by tests/elasticsearch.rs with the receiver's URL; prints one line per
step and exits non-zero on the first surprise."""

import sys

from elasticsearch import ApiError, Elasticsearch, helpers

url = sys.argv[1]
es = Elasticsearch(url, api_key=("test-id", "test-key"), request_timeout=10)

info = es.info()
assert info["version"]["number"].startswith("8."), info
print("info:", info["version"]["number"])

doc = {"@timestamp": "2024-05-01T12:00:00Z", "source": {"ip": "10.0.0.1", "port": 443}}
created = es.index(index="client-check", id="1", document=doc)
assert created["result"] == "created", created
got = es.get(index="client-check", id="1")
assert got["found"] and got["_source"] == doc, got
print("index and get: ok")

# A second create of the same id is a conflict, as in a cluster.
try:
    es.create(index="client-check", id="1", document=doc)
    raise SystemExit("a second create of id 1 was accepted")
except ApiError as e:
    assert e.meta.status == 409, e
print("create conflict: 409")

# Bulk into a data stream: create works, index is refused per item, bad types too.
actions = [
    {"_op_type": "create", "_index": "logs-aws.vpcflow-client", "_id": "a", **doc},
    {"_op_type": "index", "_index": "logs-aws.vpcflow-client", "_id": "b", **doc},
    {"_op_type": "create", "_index": "logs-aws.vpcflow-client", "_id": "c",
     "@timestamp": "2024-05-01T12:00:00Z", "source": {"port": "not a port"}},
]
ok, errors = helpers.bulk(es, actions, raise_on_error=False)
statuses = sorted(next(iter(e.values()))["status"] for e in errors)
assert ok == 1 and statuses == [400, 400], (ok, errors)
print("bulk: 1 created, index refused on a data stream, a malformed port refused")

# Wrong credentials are a 401 the client reports as such.
try:
    Elasticsearch(url, api_key=("test-id", "nope")).info()
    raise SystemExit("a wrong API key was accepted")
except ApiError as e:
    assert e.meta.status == 401, e
print("wrong key: 401")
