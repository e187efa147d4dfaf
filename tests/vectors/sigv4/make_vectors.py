"""Write botocore.json: SigV4 signatures computed by botocore for fixed inputs.

Run with the project's virtualenv from the repository root:

    .venv/bin/python tests/vectors/sigv4/make_vectors.py

The file pins what botocore computed when it was generated, so the tests keep
an independent reference even if the installed botocore changes. Rerun it
only to add cases, and record the botocore version it prints.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any
from unittest import mock

import botocore
import botocore.auth
import botocore.awsrequest
import botocore.credentials

# An example key pair in the format of AWS access keys, with '/' and '+' in the secret.
ACCESS_KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
XKS = {"region": "cn-hangzhou", "service": "kms-xks-proxy"}
JSON = [("Content-Type", "application/json")]

# sign_compatible: the signed headers are those hyok's sign() chooses, so its
# Authorization must equal botocore's.
CASES: list[dict[str, Any]] = [
    {
        "name": "get-root-path",
        "method": "GET",
        "url": "https://example.amazonaws.com/",
        "headers": [],
        "body": "",
        "region": "us-east-1",
        "service": "service",
        "time": "2015-08-30T12:36:00",
        "sign_compatible": True,
    },
    {
        "name": "xks-encrypt-prefix-dotted-key-id",
        "method": "POST",
        "url": "https://xks.example.com/team-a/xks_proxy/kms/xks/v1/keys/key.v1-prod_2/encrypt",
        "headers": JSON,
        "body": '{"requestMetadata":{"awsPrincipalArn":"arn:aws:iam::123456789012:user/Alice",'
        '"kmsOperation":"Encrypt","kmsRequestId":"4112f4d6-db54-4af4-ae30-c55a22a8dfae"},'
        '"plaintext":"SGVsbG8gV29ybGQh","encryptionAlgorithm":"AES_GCM"}',
        **XKS,
        "time": "2024-01-31T23:59:30",
        "sign_compatible": True,
    },
    {
        "name": "xks-metadata-non-default-port",
        "method": "POST",
        "url": "http://127.0.0.1:8443/kms/xks/v1/keys/k1/metadata",
        "headers": JSON,
        "body": '{"requestMetadata":{"kmsOperation":"DescribeKey"}}',
        **XKS,
        "time": "2024-02-01T00:00:05",
        "sign_compatible": True,
    },
    {
        "name": "path-percent-encoded-and-tilde",
        "method": "POST",
        "url": "https://xks.example.com/p/a%20b/~c/%C3%A9",
        "headers": JSON,
        "body": "{}",
        **XKS,
        "time": "2024-01-31T12:00:00",
        "sign_compatible": True,
    },
    {
        "name": "path-dot-segments-and-empty-segments",
        "method": "GET",
        "url": "https://xks.example.com/a/./b/../c//d/",
        "headers": [],
        "body": "",
        **XKS,
        "time": "2024-01-31T12:00:00",
        "sign_compatible": True,
    },
    {
        "name": "query-unsorted-repeated-and-encoded",
        "method": "GET",
        "url": "https://xks.example.com/kms/xks/v1/health?b=2&a=%2F&a=1&c&d=x%20y",
        "headers": [],
        "body": "",
        **XKS,
        "time": "2024-01-31T12:00:00",
        "sign_compatible": True,
    },
    {
        "name": "headers-whitespace-and-repeated",
        "method": "POST",
        "url": "https://xks.example.com/kms/xks/v1/keys/k1/decrypt",
        "headers": [
            ("Content-Type", "  application/json  "),
            ("X-Custom", "a   b\t c"),
            ("X-Custom", " second "),
            (
                "X-Amz-Content-SHA256",
                "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            ),
        ],
        "body": "{}",
        **XKS,
        "time": "2024-01-31T12:00:00",
        "sign_compatible": False,
    },
    {
        "name": "empty-post-body",
        "method": "POST",
        "url": "https://xks.example.com/kms/xks/v1/health",
        "headers": JSON,
        "body": "",
        **XKS,
        "time": "2024-01-31T12:00:00",
        "sign_compatible": True,
    },
]


def _sign(case: dict[str, Any]) -> dict[str, Any]:
    request = botocore.awsrequest.AWSRequest(
        method=case["method"], url=case["url"], data=case["body"].encode("utf-8")
    )
    for name, value in case["headers"]:
        request.headers[name] = value
    when = datetime.datetime.fromisoformat(case["time"])
    signer = botocore.auth.SigV4Auth(
        botocore.credentials.Credentials(ACCESS_KEY_ID, SECRET), case["service"], case["region"]
    )
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        signer.add_auth(request)
    prepared = request.prepare()
    # An HTTP client sends the Host value that botocore signed. The headers are
    # read before prepare(), which keeps only the last of repeated headers.
    host = botocore.auth._host_from_url(prepared.url)
    headers = [["Host", host], *([name, value] for name, value in request.headers.items())]
    return {
        **{key: value for key, value in case.items() if key != "headers"},
        "url": prepared.url,
        "headers": headers,
        "access_key_id": ACCESS_KEY_ID,
        "secret": SECRET,
        "authorization": request.headers["Authorization"],
    }


def main() -> None:
    vectors = {
        "generator": f"botocore {botocore.__version__} botocore.auth.SigV4Auth",
        "vectors": [_sign(case) for case in CASES],
    }
    path = Path(__file__).with_name("botocore.json")
    path.write_text(json.dumps(vectors, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(CASES)} vectors with {vectors['generator']} to {path}")


if __name__ == "__main__":
    main()
