"""A master key of the AWS Encryption SDK with a fixed data key, for interoperability tests.

It plays the part of a keyring that unwraps hyok's encrypted data keys: its
provider ID is ``hyok-kms``, and it returns one known data key for every
encrypted data key it owns.
"""

from __future__ import annotations

from typing import Any

import attr
from aws_encryption_sdk.key_providers.base import (  # type: ignore[import-untyped]
    MasterKey,
    MasterKeyConfig,
)
from aws_encryption_sdk.structures import DataKey  # type: ignore[import-untyped]

from hyok.files.format import PROVIDER_ID

__all__ = ["FixedMasterKey"]


@attr.s(hash=True)
class _FixedConfig(MasterKeyConfig):  # type: ignore[misc]
    provider_id = PROVIDER_ID
    data_key: bytes = attr.ib(hash=True, default=b"")
    encrypted_data_key: bytes = attr.ib(hash=True, default=b"")


class FixedMasterKey(MasterKey):  # type: ignore[misc]
    """Returns ``data_key`` for encryption and decryption; ``key_id`` is the key info."""

    provider_id = PROVIDER_ID
    _config_class = _FixedConfig

    def _generate_data_key(self, algorithm: Any, encryption_context: Any) -> Any:
        return DataKey(
            key_provider=self.key_provider,
            data_key=self.config.data_key,
            encrypted_data_key=self.config.encrypted_data_key,
        )

    def _encrypt_data_key(self, data_key: Any, algorithm: Any, encryption_context: Any) -> Any:
        raise NotImplementedError("one master key per message in these tests")

    def _decrypt_data_key(
        self, encrypted_data_key: Any, algorithm: Any, encryption_context: Any
    ) -> Any:
        return DataKey(
            key_provider=self.key_provider,
            data_key=self.config.data_key,
            encrypted_data_key=encrypted_data_key.encrypted_data_key,
        )
