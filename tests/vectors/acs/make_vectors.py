"""Write sdk.json: requests signed by the official Alibaba Cloud SDKs, captured on loopback.

Run from the repository root with the SDKs installed in the virtualenv:

    .venv/bin/pip install alibabacloud-kms20160120 aliyun-python-sdk-core aliyun-python-sdk-kms
    .venv/bin/python -m tests.vectors.acs.make_vectors

Every call goes to a capture server on 127.0.0.1. The file pins what the SDK
versions it records sent, so the tests keep an independent reference even
where the SDKs are not installed or change. Rerun it only to add cases.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

from tests.vectors.acs import sdk_capture
from tests.vectors.acs.sdk_capture import CASES, Captured, Case

OUTPUT = Path(__file__).with_name("sdk.json")
PACKAGES = (
    "alibabacloud-kms20160120",
    "alibabacloud-tea-openapi",
    "darabonba-core",
    "aliyun-python-sdk-core",
    "aliyun-python-sdk-kms",
)


def _vector(name: str, scheme: str, client: str, case: Case, captured: Captured) -> dict[str, Any]:
    return {
        "name": name,
        "scheme": scheme,
        "client": client,
        "access_key_id": sdk_capture.ACCESS_KEY_ID,
        "secret": sdk_capture.SECRET,
        "security_token": case.security_token,
        "action": case.action,
        "parameters": case.parameters,
        "method": captured.method,
        "path": captured.path,
        "query": captured.query.decode("ascii"),
        # Header values are ISO-8859-1 bytes on the wire; JSON keeps them as text.
        "headers": [
            [name.decode("latin-1"), value.decode("latin-1")] for name, value in captured.headers
        ],
        "body": captured.body.decode("ascii"),
    }


def main() -> None:
    vectors = []
    with sdk_capture.capture_server() as server:
        for case in CASES:
            captured = sdk_capture.call_current_sdk(server, case)
            vectors.append(
                _vector(f"acs3-{case.name}", "ACS3-HMAC-SHA256", "current", case, captured)
            )
        for case in CASES:
            captured = sdk_capture.call_current_sdk(server, case, signature_algorithm="v2")
            vectors.append(
                _vector(f"v1-post-{case.name}", "HMAC-SHA1", "current-v2", case, captured)
            )
        for case in CASES:
            if case.legacy:
                captured = sdk_capture.call_legacy_sdk(server, case)
                name = f"v1-legacy-{case.legacy_method.lower()}-{case.name}"
                vectors.append(_vector(name, "HMAC-SHA1", "legacy", case, captured))

    generator = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in PACKAGES)
    document = {"generator": generator, "vectors": vectors}
    OUTPUT.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(vectors)} vectors to {OUTPUT} with {generator}")


if __name__ == "__main__":
    main()
