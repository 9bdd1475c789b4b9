"""Signs requests with botocore (the AWS SDK for Python, which moto brings into the test
venv) and sends them to the Elasticsearch test receiver running as Amazon OpenSearch
Service: botocore's signatures must be accepted and altered ones refused, which keeps the
receiver's SigV4 verifier honest. Run by tests/elasticsearch.rs with the receiver's URL
and key; prints one line per step and exits non-zero on the first surprise."""

import gzip
import hashlib
import json
import sys
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

url, access_key, secret, token, region = sys.argv[1:6]


def send(method, path, body=b"", headers=None, credentials=None, tamper=None):
    request = AWSRequest(method=method, url=url + path, data=body, headers=headers or {})
    SigV4Auth(credentials or Credentials(access_key, secret, token), "es", region).add_auth(request)
    prepared = request.prepare()
    if tamper:
        tamper(prepared)
    http_request = urllib.request.Request(
        prepared.url, data=prepared.body or None, method=method, headers=dict(prepared.headers)
    )
    try:
        with urllib.request.urlopen(http_request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


status, info = send("GET", "/")
assert status == 200 and info["version"]["distribution"] == "opensearch", (status, info)
print("signed GET /: 200")

# A gzip'd bulk body with a query string that needs encoding, the payload hash sent as
# a header (as OpenSearch Serverless requires) and signed.
lines = [
    {"create": {"_index": "logs-aws.vpcflow-botocore", "_id": "a"}},
    {"@timestamp": "2024-05-01T12:00:00Z", "source": {"ip": "10.0.0.1", "port": 443}},
]
body = gzip.compress("".join(json.dumps(l) + "\n" for l in lines).encode())


headers = {
    "Content-Type": "application/x-ndjson",
    "Content-Encoding": "gzip",
    "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest(),
}
# botocore signs the query as it is in the URL (its callers encode it first, as
# opensearch-py does); AWS decodes and re-encodes it, so `,` and `*` go encoded here.
query = "filter_path=errors%2Citems.%2A.status"
status, answer = send("POST", "/_bulk?" + query, body, headers)
assert status == 200 and answer == {"errors": False, "items": [{"create": {"status": 201}}]}, answer
print("signed gzip bulk with a query: 200, 1 created")


def other_path(prepared):
    prepared.url = prepared.url.replace("/_bulk", "/_bulk/")


for name, kwargs in [
    ("wrong secret", {"credentials": Credentials(access_key, "nope", token)}),
    ("no session token", {"credentials": Credentials(access_key, secret)}),
    ("path changed after signing", {"tamper": other_path}),
]:
    status, answer = send("POST", "/_bulk?filter_path=errors", body, headers, **kwargs)
    assert status == 403 and "message" in answer, (name, status, answer)
    print(f"{name}: 403")
