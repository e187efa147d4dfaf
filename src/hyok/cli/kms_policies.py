"""``hyok kms`` key policy commands, and the role options that build a policy.

A key policy comes from a JSON file (``--policy-file``) or from three role
lists (``--administrator``, ``--user``, ``--cross-account-user``, each
repeatable), which :func:`hyok.kms.domain.key_policy.build_role_policy`
turns into a document. Administrators and users belong to the key's
account, and cross-account users to other accounts.

``set-key-policy`` and ``get-key-policy`` call SetKeyPolicy and
GetKeyPolicy through the SDK's typed methods.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hyok.cli._common import CliError, OutputFormat, print_json
from hyok.cli._kms_api import (
    ConnectionOptions,
    KmsClient,
    api_options,
    print_fields,
    resolve_target,
)
from hyok.cli.ram import STS_VERSION, _IdentityClient
from hyok.kms.domain.key_policy import KeyPolicyRoles, build_role_policy, roles_from_policy
from hyok.kms.domain.policy_document import parse_policy
from hyok.kms.domain.policy_errors import PolicyDocumentError, PolicyKind
from hyok.kms.domain.policy_principals import parse_principal

__all__ = [
    "RoleLists",
    "get_key_policy",
    "read_policy_file",
    "role_options",
    "role_policy",
    "set_key_policy",
]

_F = TypeVar("_F", bound=Callable[..., Any])

RoleLists = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]
"""Administrators, users and cross-account users, as given on the command line."""


def role_options(function: _F) -> _F:
    """Add ``--administrator``, ``--user`` and ``--cross-account-user``, each repeatable."""
    options = (
        click.option(
            "--cross-account-user",
            "cross_account_users",
            multiple=True,
            metavar="ARN",
            help=(
                "RAM user or role of another account that may use the key "
                "(acs:ram::<account>:user/<name> or :role/<name>). Its own account must grant "
                "it too. Repeat for several."
            ),
        ),
        click.option(
            "--user",
            "users",
            multiple=True,
            metavar="ARN",
            help="RAM user or role of the key's account that may use the key. Repeat for several.",
        ),
        click.option(
            "--administrator",
            "administrators",
            multiple=True,
            metavar="ARN",
            help=(
                "RAM user or role of the key's account that may manage the key, without "
                "cryptographic operations. Repeat for several."
            ),
        ),
    )
    for option in options:
        function = option(function)
    return function


def read_policy_file(path: Path) -> str:
    """Return the text of a key policy file, checked to be UTF-8 JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise click.BadParameter(
            f"the file {path} does not exist", param_hint="--policy-file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise click.BadParameter(
            f"cannot read the file {path}: {reason}", param_hint="--policy-file"
        ) from None
    try:
        json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"the file {path} is not valid JSON: {exc}", param_hint="--policy-file"
        ) from None
    return text


def _caller_account(client: KmsClient) -> str:
    """Return the account of the AccessKey, from STS GetCallerIdentity on the KMS endpoint."""
    identity = _IdentityClient(client.target).call_version("GetCallerIdentity", STS_VERSION, {})
    account = identity.get("AccountId")
    if not isinstance(account, str) or not account:
        raise CliError("the KMS returned no AccountId for GetCallerIdentity; check the endpoint")
    return account


def _key_account(roles: KeyPolicyRoles) -> str | None:
    """Return the account of the first administrator or user, which is the key's account."""
    for arn in roles.administrators + roles.users:
        try:
            return parse_principal(arn, code="InvalidParameter", path="--administrator").account_id
        except PolicyDocumentError as exc:
            raise click.BadParameter(exc.message, param_hint="--administrator/--user") from None
    return None


def role_policy(
    client: KmsClient, lists: RoleLists, key_account: Callable[[], str] | None = None
) -> str | None:
    """Build the policy of the role lists, or return None when all three are empty.

    The key's account comes from ``key_account`` when given, else from the
    administrators and users, else from the caller's identity.
    """
    roles = KeyPolicyRoles(*lists)
    if roles.empty:
        return None
    if key_account is not None:
        account = key_account()
    else:
        account = _key_account(roles) or _caller_account(client)
    try:
        return build_role_policy(account, roles)
    except PolicyDocumentError as exc:
        raise click.BadParameter(
            exc.message.replace("cross_account_users[", "--cross-account-user[")
            .replace("administrators[", "--administrator[")
            .replace("users[", "--user["),
            param_hint="--administrator/--user/--cross-account-user",
        ) from None


@click.command("set-key-policy")
@click.argument("key_id", metavar="KEY")
@click.option(
    "--policy-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="JSON file with the whole key policy.",
)
@role_options
@api_options
def set_key_policy(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    key_id: str,
    policy_file: Path | None,
    administrators: tuple[str, ...],
    users: tuple[str, ...],
    cross_account_users: tuple[str, ...],
) -> None:
    """Replace the policy of a key, from a file or from role lists.

    Give --policy-file, or at least one --administrator, --user or
    --cross-account-user. Role lists replace the whole policy.
    """
    from alibabacloud_kms20160120 import models  # type: ignore[import-untyped]

    lists = (administrators, users, cross_account_users)
    if policy_file is not None and any(lists):
        raise click.UsageError(
            "give either --policy-file or role options (--administrator, --user, "
            "--cross-account-user), not both"
        )
    client = KmsClient(resolve_target(connection))

    def key_account() -> str:
        return _owner_account(client, key_id)

    policy = (
        read_policy_file(policy_file)
        if policy_file is not None
        else role_policy(client, lists, key_account)
    )
    if policy is None:
        raise click.UsageError(
            "no policy given: pass --policy-file FILE, or --administrator, --user or "
            "--cross-account-user ARNs"
        )
    body = client.invoke(
        client.sdk.set_key_policy_with_options,
        models.SetKeyPolicyRequest(key_id=key_id, policy=policy, policy_name="default"),
    )
    if output is OutputFormat.JSON:
        print_json(body)
        return
    click.echo(f"Replaced the policy of key {key_id}.")


@click.command("get-key-policy")
@click.argument("key_id", metavar="KEY")
@api_options
def get_key_policy(*, connection: ConnectionOptions, output: OutputFormat, key_id: str) -> None:
    """Show the policy of a key, and its role lists when it has the shape of role lists."""
    from alibabacloud_kms20160120 import models

    client = KmsClient(resolve_target(connection))
    body = client.invoke(
        client.sdk.get_key_policy_with_options,
        models.GetKeyPolicyRequest(key_id=key_id, policy_name="default"),
    )
    if output is OutputFormat.JSON:
        print_json(body)
        return
    text = str(body.get("Policy", ""))
    click.echo(_pretty(text))
    roles = _roles(client, key_id, text)
    if roles is not None:
        print_fields(
            {
                "Administrators": ", ".join(roles.administrators) or "-",
                "Users": ", ".join(roles.users) or "-",
                "CrossAccountUsers": ", ".join(roles.cross_account_users) or "-",
            }
        )


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


def _owner_account(client: KmsClient, key_id: str) -> str:
    """The account that owns the key: from its ARN, else from DescribeKey.

    A key ARN needs no call, so an owner whose key policy denies even
    DescribeKey can still repair the policy by ARN.
    """
    from alibabacloud_kms20160120 import models

    if key_id.startswith("acs:kms:"):
        from hyok.common.errors import ValidationError
        from hyok.kms.domain import parse_key_arn

        try:
            return parse_key_arn(key_id).account_id
        except ValidationError as exc:
            raise CliError(f"{key_id} is not a key ARN: {exc.message}") from None
    try:
        body = client.invoke(
            client.sdk.describe_key_with_options, models.DescribeKeyRequest(key_id=key_id)
        )
    except CliError as exc:
        raise CliError(
            f"{exc.format_message()}. The role options need the key's account: pass the key ARN "
            "(acs:kms:<region>:<account>:key/<id>) instead, or give the whole policy with "
            "--policy-file"
        ) from None
    return str((body.get("KeyMetadata") or {}).get("Creator", ""))


def _roles(client: KmsClient, key_id: str, text: str) -> KeyPolicyRoles | None:
    """The role lists of a policy, or None when it has another shape or the key is unreadable."""
    try:
        document = parse_policy(text, PolicyKind.KEY)
        account = _owner_account(client, key_id)
    except (PolicyDocumentError, CliError):
        return None
    return roles_from_policy(document, account)
