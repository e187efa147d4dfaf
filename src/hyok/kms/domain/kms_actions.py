"""The authorisation table: for each KMS API action, the ``kms:`` actions it needs and on what.

Pure code, no I/O. Every action the KMS serves (Alibaba Cloud KMS actions,
the actions it refuses for external keys, and hyok's instance extensions) has
a row. A row lists the permissions to check, each a ``kms:`` action and the
kind of resource it is checked on. The caller must pass every check:

- ``ReEncrypt`` needs ``kms:ReEncryptFrom`` on the source key and
  ``kms:ReEncryptTo`` on the destination key (``kms:ReEncrypt*`` grants both).
- ``CreateAlias``, ``UpdateAlias`` and ``DeleteAlias`` need their action on
  the alias and on the key the alias points to (for UpdateAlias, the new key).
- ``DescribeRegions`` needs no permission.

Aliases in a ``KeyId`` resolve to their key before the check, so a call
through an alias needs permission on the key, not on the alias. The ``kms:``
name of every action is ``kms:<API action>``, except for ReEncrypt.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from hyok.kms.domain._checks import check_account_id, check_region, shown
from hyok.kms.domain.ids import instance_arn, key_arn

__all__ = [
    "KMS_ACTIONS",
    "ActionAuthorization",
    "Permission",
    "ResourceKind",
    "authorization_for",
    "resource_arn",
]


@enum.unique
class ResourceKind(enum.StrEnum):
    """The kind of resource a permission is checked on."""

    KEY = "key"
    """One key: ``acs:kms:<region>:<account>:key/<key ID>``. The key policy applies too."""
    ALIAS = "alias"
    """One alias: ``acs:kms:<region>:<account>:alias/<alias name without alias/>``."""
    INSTANCE = "instance"
    """One external key management instance: ``acs:kms:<region>:<account>:keystore/<ID>``."""
    ANY = "*"
    """No single resource (listing, creating): ``acs:kms:<region>:<account>:*``."""


@dataclass(frozen=True)
class Permission:
    """One check: the ``kms:`` action the caller needs on a resource of ``resource`` kind."""

    action: str
    resource: ResourceKind


@dataclass(frozen=True)
class ActionAuthorization:
    """The checks of one API action, in the order the service runs them.

    ``permissions`` is empty for an action that needs no authorisation.
    """

    api_action: str
    permissions: tuple[Permission, ...]


def _on(resource: ResourceKind, *api_actions: str) -> dict[str, ActionAuthorization]:
    return {
        name: ActionAuthorization(name, (Permission(f"kms:{name}", resource),))
        for name in api_actions
    }


def _alias_action(name: str) -> ActionAuthorization:
    return ActionAuthorization(
        name,
        (
            Permission(f"kms:{name}", ResourceKind.ALIAS),
            Permission(f"kms:{name}", ResourceKind.KEY),
        ),
    )


_KEY_MANAGEMENT: Final = (
    "DescribeKey",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "SetDeletionProtection",
    "UpdateKeyDescription",
    "ListAliasesByKeyId",
    "TagResource",
    "UntagResource",
    "ListResourceTags",
    "TagResources",
    "UntagResources",
    "ListTagResources",
    "SetKeyPolicy",
    "GetKeyPolicy",
    "DescribeKeyVersion",
    "ListKeyVersions",
    "CreateKeyVersion",
    "UpdateRotationPolicy",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "DeleteKeyMaterial",
)
_CRYPTOGRAPHIC: Final = (
    "Encrypt",
    "Decrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateAndExportDataKey",
    "ExportDataKey",
    "AsymmetricEncrypt",
    "AsymmetricDecrypt",
    "AsymmetricSign",
    "AsymmetricVerify",
    "GetPublicKey",
    "GenerateMac",
    "VerifyMac",
)
_ACCOUNT_WIDE: Final = (
    "CreateKey",
    "ListKeys",
    "ListAliases",
    "DescribeAccountKmsStatus",
    "ListKmsInstances",
    "CreateKmsInstance",
)
_INSTANCE: Final = (
    "GetKmsInstance",
    "ConnectKmsInstance",
    "DisconnectKmsInstance",
    "UpdateXkiProxyConfiguration",
    "GetKmsInstanceQuotaInfos",
    "ShareKmsInstance",
    "UnshareKmsInstance",
    "ListKmsInstanceShares",
    "UpdateKmsInstanceShareQuota",
)

KMS_ACTIONS: Final[Mapping[str, ActionAuthorization]] = MappingProxyType(
    {
        **_on(ResourceKind.KEY, *_KEY_MANAGEMENT),
        **_on(ResourceKind.KEY, *_CRYPTOGRAPHIC),
        "ReEncrypt": ActionAuthorization(
            "ReEncrypt",
            (
                Permission("kms:ReEncryptFrom", ResourceKind.KEY),
                Permission("kms:ReEncryptTo", ResourceKind.KEY),
            ),
        ),
        **{name: _alias_action(name) for name in ("CreateAlias", "UpdateAlias", "DeleteAlias")},
        **_on(ResourceKind.ANY, *_ACCOUNT_WIDE),
        **_on(ResourceKind.INSTANCE, *_INSTANCE),
        # hyok extensions: the key's associations.
        **_on(
            ResourceKind.KEY,
            "RegisterKeyAssociation",
            "RemoveKeyAssociation",
            "ListKeyAssociations",
        ),
        "DescribeRegions": ActionAuthorization("DescribeRegions", ()),
    }
)
"""Every API action the KMS serves, by its wire name."""


def authorization_for(api_action: str) -> ActionAuthorization:
    """Return the checks of an API action.

    Raises LookupError for an action without a row: the service must not run
    an action it cannot authorise.
    """
    try:
        return KMS_ACTIONS[api_action]
    except KeyError:
        raise LookupError(
            f"the action {shown(api_action)} has no row in the authorisation table: add one "
            "to hyok.kms.domain.kms_actions before serving it"
        ) from None


def resource_arn(
    kind: ResourceKind, *, region: str, account_id: str, resource_id: str | None = None
) -> str:
    """Build the ARN that identity policies are matched against for a resource of ``kind``.

    ``resource_id`` is the key ID, the alias name (with or without ``alias/``)
    or the instance ID, and None for :attr:`ResourceKind.ANY`.
    """
    if kind is ResourceKind.ANY:
        if resource_id is not None:
            raise ValueError("a resource of kind '*' has no resource ID")
        check_region(region)
        check_account_id("account_id", account_id)
        return f"acs:kms:{region}:{account_id}:*"
    if resource_id is None:
        raise ValueError(f"a resource of kind {kind.value!r} needs its resource ID")
    match kind:
        case ResourceKind.KEY:
            return key_arn(region, account_id, resource_id)
        case ResourceKind.INSTANCE:
            return instance_arn(region, account_id, resource_id)
    check_region(region)
    check_account_id("account_id", account_id)
    name = resource_id.removeprefix("alias/")
    if not name:
        raise ValueError("the alias name is empty")
    return f"acs:kms:{region}:{account_id}:alias/{name}"
