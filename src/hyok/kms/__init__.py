"""The KMS service: key metadata, policies and accounts; cryptography is relayed to XKI proxies."""

from typing import Final

__all__ = ["API_VERSION"]

API_VERSION: Final = "2016-01-20"
"""The version of the Alibaba Cloud KMS OpenAPI that the KMS serves."""
