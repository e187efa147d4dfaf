"""The KMS actions, one module per group, and :func:`build_handlers` that registers them all.

- ``_services``: :class:`Services`, the store, proxy clients, region and clock.
- ``keys``: CreateKey, DescribeKey, ListKeys, DescribeKeyVersion, ListKeyVersions.
- ``crypto``: Encrypt, Decrypt, GenerateDataKey and the other cryptographic actions.
- ``instances``: the external key management instance actions (partly hyok extensions).
- ``lifecycle``: UpdateKeyDescription, SetDeletionProtection, ScheduleKeyDeletion and
  CancelKeyDeletion.
- ``aliases``: CreateAlias, UpdateAlias, DeleteAlias, ListAliases and ListAliasesByKeyId.
- ``associations``: who uses a key, and resources registered with it (hyok extensions).
- ``tags``: TagResource, UntagResource, ListResourceTags and their batch forms.
- ``unsupported``: actions that external keys do not support, with a clear refusal.
"""

from __future__ import annotations

from hyok.kms.api.actions._services import Services
from hyok.kms.api.actions.aliases import alias_handlers
from hyok.kms.api.actions.associations import association_handlers
from hyok.kms.api.actions.crypto import crypto_handlers
from hyok.kms.api.actions.instances import instance_handlers
from hyok.kms.api.actions.keys import key_handlers
from hyok.kms.api.actions.lifecycle import lifecycle_handlers
from hyok.kms.api.actions.tags import tag_handlers
from hyok.kms.api.actions.unsupported import unsupported_handlers
from hyok.kms.api.app import Handler

__all__ = ["Services", "build_handlers"]


def build_handlers(services: Services) -> dict[str, Handler]:
    """Return every action handler, by action name, bound to ``services``."""
    handlers: dict[str, Handler] = {}
    handlers.update(key_handlers(services))
    handlers.update(crypto_handlers(services))
    handlers.update(instance_handlers(services))
    handlers.update(lifecycle_handlers(services))
    handlers.update(alias_handlers(services))
    handlers.update(tag_handlers(services))
    handlers.update(association_handlers(services))
    handlers.update(unsupported_handlers(services))
    return handlers
