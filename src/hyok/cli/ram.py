"""``hyok ram`` and ``hyok sts``: RAM identities and STS credentials, through the official SDK.

The commands connect as the ``hyok kms`` API commands do (``hyok-up.json``,
``--endpoint``, ``--ca-cert`` and the ``ALIBABA_CLOUD_ACCESS_KEY_*``
variables) and send RAM (2015-05-01) and STS (2015-04-01) actions to the
KMS server, which serves both APIs. RAM actions need the account's root
AccessKey for now.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any, Final

import click

from hyok.cli._common import OutputFormat, print_json
from hyok.cli._kms_api import (
    ConnectionOptions,
    KmsClient,
    api_options,
    print_fields,
    resolve_target,
)
from hyok.cli._passwords import password_file_option, read_new_password
from hyok.kms.sdk_call import rpc_params

__all__ = ["ram", "sts"]

RAM_VERSION: Final = "2015-05-01"
STS_VERSION: Final = "2015-04-01"
_LIST_PAGE_SIZE: Final = 1_000


class _IdentityClient(KmsClient):
    """The SDK client of :class:`KmsClient`, sending actions of another API version."""

    def call_version(self, action: str, version: str, query: Mapping[str, str]) -> dict[str, Any]:
        """Call ``action`` of API ``version`` with the SDK's generic call and return the body."""
        from alibabacloud_tea_openapi.utils_models import (  # type: ignore[import-untyped]
            OpenApiRequest,
        )

        with self._translate_errors():
            result = self.sdk.call_api(
                rpc_params(action, version),
                OpenApiRequest(query={k: v for k, v in query.items() if v is not None}),
                self._runtime(None),
            )
        body: dict[str, Any] = result.get("body") or {}
        return body


def _call(
    connection: ConnectionOptions, action: str, query: Mapping[str, Any], version: str = RAM_VERSION
) -> dict[str, Any]:
    client = _IdentityClient(resolve_target(connection))
    text = {name: str(value) for name, value in query.items() if value is not None}
    return client.call_version(action, version, text)


def _show(output: OutputFormat, body: dict[str, Any], record: str | None = None) -> None:
    if output is OutputFormat.JSON:
        print_json(body)
        return
    shown = body.get(record) if record else {k: v for k, v in body.items() if k != "RequestId"}
    print_fields(shown or {})


def _done(output: OutputFormat, body: dict[str, Any], message: str) -> None:
    if output is OutputFormat.JSON:
        print_json(body)
    else:
        click.echo(message)


@click.group()
def ram() -> None:
    """Manage RAM users, their AccessKeys and console passwords, roles and custom policies."""


@ram.group()
def user() -> None:
    """RAM users of the account."""


@user.command("create")
@click.argument("name")
@click.option("--display-name", default=None, help="Display name (up to 128 characters).")
@click.option("--comments", default=None, help="Comments (up to 128 characters).")
@api_options
def user_create(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    name: str,
    display_name: str | None,
    comments: str | None,
) -> None:
    """Create the RAM user NAME."""
    query = {"UserName": name, "DisplayName": display_name, "Comments": comments}
    _show(output, _call(connection, "CreateUser", query), "User")


@user.command("get")
@click.argument("name")
@api_options
def user_get(*, connection: ConnectionOptions, output: OutputFormat, name: str) -> None:
    """Show the RAM user NAME."""
    _show(output, _call(connection, "GetUser", {"UserName": name}), "User")


@user.command("list")
@api_options
def user_list(*, connection: ConnectionOptions, output: OutputFormat) -> None:
    """List every RAM user of the account, following the pages."""
    users: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        query = {"MaxItems": _LIST_PAGE_SIZE, "Marker": marker}
        body = _call(connection, "ListUsers", query)
        users.extend((body.get("Users") or {}).get("User") or [])
        marker = body.get("Marker")
        if not body.get("IsTruncated") or not marker:
            break
    if output is OutputFormat.JSON:
        print_json({"Users": {"User": users}})
        return
    click.echo(f"RAM users: {len(users)}")
    for item in users:
        click.echo(f"{item.get('UserName')}\t{item.get('UserId')}\t{item.get('CreateDate')}")


@user.command("delete")
@click.argument("name")
@api_options
def user_delete(*, connection: ConnectionOptions, output: OutputFormat, name: str) -> None:
    """Delete the RAM user NAME, which must have no AccessKeys, policies or login profile."""
    body = _call(connection, "DeleteUser", {"UserName": name})
    _done(output, body, f"Deleted RAM user {name}.")


@ram.group("access-key")
def access_key() -> None:
    """AccessKeys of RAM users (at most two per user)."""


@access_key.command("create")
@click.option("--user", "user_name", required=True, help="The RAM user that owns the AccessKey.")
@api_options
def access_key_create(
    *, connection: ConnectionOptions, output: OutputFormat, user_name: str
) -> None:
    """Create an AccessKey for a RAM user and print its secret, which is shown only once."""
    _show(output, _call(connection, "CreateAccessKey", {"UserName": user_name}), "AccessKey")


@access_key.command("list")
@click.option("--user", "user_name", required=True, help="The RAM user whose AccessKeys to list.")
@api_options
def access_key_list(*, connection: ConnectionOptions, output: OutputFormat, user_name: str) -> None:
    """List the AccessKeys of a RAM user (without secrets)."""
    body = _call(connection, "ListAccessKeys", {"UserName": user_name})
    if output is OutputFormat.JSON:
        print_json(body)
        return
    keys = (body.get("AccessKeys") or {}).get("AccessKey") or []
    click.echo(f"AccessKeys of {user_name}: {len(keys)}")
    for item in keys:
        click.echo(f"{item.get('AccessKeyId')}\t{item.get('Status')}\t{item.get('CreateDate')}")


@access_key.command("delete")
@click.option("--user", "user_name", required=True, help="The RAM user that owns the AccessKey.")
@click.argument("access_key_id")
@api_options
def access_key_delete(
    *, connection: ConnectionOptions, output: OutputFormat, user_name: str, access_key_id: str
) -> None:
    """Delete the AccessKey ACCESS_KEY_ID of a RAM user."""
    query = {"UserName": user_name, "UserAccessKeyId": access_key_id}
    body = _call(connection, "DeleteAccessKey", query)
    _done(output, body, f"Deleted AccessKey {access_key_id} of {user_name}.")


@ram.group("login-profile")
def login_profile() -> None:
    """Console passwords of RAM users (login profiles).

    The password is read from --password-file, a terminal prompt or standard
    input, never from an option value. The user signs in to the console as
    <user name>@<account ID>.
    """


@login_profile.command("create")
@click.argument("user_name", metavar="USER")
@password_file_option
@click.option(
    "--password-reset-required",
    is_flag=True,
    default=False,
    help="Mark that the user must change the password (PasswordResetRequired).",
)
@api_options
def login_profile_create(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    user_name: str,
    password_file: IO[str] | None,
    password_reset_required: bool,
) -> None:
    """Let the RAM user USER sign in to the console with a password."""
    password = read_new_password(password_file)
    query = {
        "UserName": user_name,
        "Password": password.reveal(),
        "PasswordResetRequired": str(password_reset_required).lower(),
    }
    _show(output, _call(connection, "CreateLoginProfile", query), "LoginProfile")


@login_profile.command("get")
@click.argument("user_name", metavar="USER")
@api_options
def login_profile_get(
    *, connection: ConnectionOptions, output: OutputFormat, user_name: str
) -> None:
    """Show the login profile of the RAM user USER (never the password)."""
    body = _call(connection, "GetLoginProfile", {"UserName": user_name})
    _show(output, body, "LoginProfile")


@login_profile.command("update")
@click.argument("user_name", metavar="USER")
@click.option(
    "--change-password",
    is_flag=True,
    default=False,
    help="Set a new password, read as for create. Implied by --password-file.",
)
@password_file_option
@click.option(
    "--password-reset-required/--no-password-reset-required",
    default=None,
    help="Set or clear PasswordResetRequired. Default: keep it.",
)
@api_options
def login_profile_update(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    user_name: str,
    change_password: bool,
    password_file: IO[str] | None,
    password_reset_required: bool | None,
) -> None:
    """Change the password or PasswordResetRequired of the RAM user USER."""
    if not change_password and password_file is None and password_reset_required is None:
        raise click.UsageError(
            "nothing to update: give --change-password, --password-file or "
            "--[no-]password-reset-required"
        )
    query: dict[str, str | None] = {"UserName": user_name}
    if change_password or password_file is not None:
        query["Password"] = read_new_password(password_file).reveal()
    if password_reset_required is not None:
        query["PasswordResetRequired"] = str(password_reset_required).lower()
    body = _call(connection, "UpdateLoginProfile", query)
    _done(output, body, f"Updated the login profile of {user_name}.")


@login_profile.command("delete")
@click.argument("user_name", metavar="USER")
@api_options
def login_profile_delete(
    *, connection: ConnectionOptions, output: OutputFormat, user_name: str
) -> None:
    """Stop the console sign-in of the RAM user USER; its AccessKeys keep working."""
    body = _call(connection, "DeleteLoginProfile", {"UserName": user_name})
    _done(output, body, f"Deleted the login profile of {user_name}.")


@ram.group()
def role() -> None:
    """RAM roles and their trust policies."""


@role.command("create")
@click.argument("name")
@click.option(
    "--trust-policy",
    "trust_policy",
    type=click.File("r"),
    required=True,
    help="File with the trust policy JSON (AssumeRolePolicyDocument); - reads standard input.",
)
@click.option("--description", default=None, help="Description (up to 1024 characters).")
@click.option(
    "--max-session-duration",
    type=click.IntRange(3_600, 43_200),
    default=None,
    help="Longest STS session of the role, in seconds (3600 to 43200; default 3600).",
)
@api_options
def role_create(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    name: str,
    trust_policy: IO[str],
    description: str | None,
    max_session_duration: int | None,
) -> None:
    """Create the RAM role NAME with a trust policy."""
    query = {
        "RoleName": name,
        "AssumeRolePolicyDocument": trust_policy.read(),
        "Description": description,
        "MaxSessionDuration": max_session_duration,
    }
    _show(output, _call(connection, "CreateRole", query), "Role")


@role.command("get")
@click.argument("name")
@api_options
def role_get(*, connection: ConnectionOptions, output: OutputFormat, name: str) -> None:
    """Show the RAM role NAME."""
    _show(output, _call(connection, "GetRole", {"RoleName": name}), "Role")


@role.command("delete")
@click.argument("name")
@api_options
def role_delete(*, connection: ConnectionOptions, output: OutputFormat, name: str) -> None:
    """Delete the RAM role NAME, which must have no attached policies; its sessions end."""
    body = _call(connection, "DeleteRole", {"RoleName": name})
    _done(output, body, f"Deleted RAM role {name}.")


@ram.group()
def policy() -> None:
    """Custom identity policies and their attachments to users and roles."""


@policy.command("create")
@click.argument("name")
@click.option(
    "--document",
    type=click.File("r"),
    required=True,
    help="File with the policy JSON (up to 6144 characters); - reads standard input.",
)
@click.option("--description", default=None, help="Description (up to 1024 characters).")
@api_options
def policy_create(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    name: str,
    document: IO[str],
    description: str | None,
) -> None:
    """Create the custom policy NAME."""
    query = {"PolicyName": name, "PolicyDocument": document.read(), "Description": description}
    _show(output, _call(connection, "CreatePolicy", query), "Policy")


@policy.command("get")
@click.argument("name")
@api_options
def policy_get(*, connection: ConnectionOptions, output: OutputFormat, name: str) -> None:
    """Show the custom policy NAME with its document."""
    query = {"PolicyName": name, "PolicyType": "Custom"}
    _show(output, _call(connection, "GetPolicy", query), "Policy")


@policy.command("delete")
@click.argument("name")
@api_options
def policy_delete(*, connection: ConnectionOptions, output: OutputFormat, name: str) -> None:
    """Delete the custom policy NAME, which must be attached to no user or role."""
    body = _call(connection, "DeletePolicy", {"PolicyName": name})
    _done(output, body, f"Deleted policy {name}.")


def _target(user_name: str | None, role_name: str | None) -> tuple[str, str, str]:
    if (user_name is None) == (role_name is None):
        raise click.UsageError("give exactly one of --user and --role")
    if user_name is not None:
        return "User", "UserName", user_name
    assert role_name is not None
    return "Role", "RoleName", role_name


def _attachment_command(name: str, verb: str, action: str, preposition: str) -> None:
    """Register ``hyok ram policy attach`` or ``detach``, which differ only in their action."""

    @policy.command(name, help=f"{verb} the custom policy NAME {preposition} a user or a role.")
    @click.argument("policy_name", metavar="NAME")
    @click.option("--user", "user_name", default=None, help=f"{verb} {preposition} this RAM user.")
    @click.option("--role", "role_name", default=None, help=f"{verb} {preposition} this RAM role.")
    @api_options
    def command(
        *,
        connection: ConnectionOptions,
        output: OutputFormat,
        policy_name: str,
        user_name: str | None,
        role_name: str | None,
    ) -> None:
        kind, parameter, identity = _target(user_name, role_name)
        query = {"PolicyName": policy_name, "PolicyType": "Custom", parameter: identity}
        body = _call(connection, f"{action}{kind}", query)
        _done(
            output, body, f"{verb}ed policy {policy_name} {preposition} {kind.lower()} {identity}."
        )


_attachment_command("attach", "Attach", "AttachPolicyTo", "to")
_attachment_command("detach", "Detach", "DetachPolicyFrom", "from")


@policy.command("list-for-user")
@click.argument("user_name", metavar="USER")
@api_options
def policy_list_for_user(
    *, connection: ConnectionOptions, output: OutputFormat, user_name: str
) -> None:
    """List the policies attached to the RAM user USER."""
    body = _call(connection, "ListPoliciesForUser", {"UserName": user_name})
    if output is OutputFormat.JSON:
        print_json(body)
        return
    policies = (body.get("Policies") or {}).get("Policy") or []
    click.echo(f"Policies of {user_name}: {len(policies)}")
    for item in policies:
        click.echo(f"{item.get('PolicyName')}\t{item.get('PolicyType')}\t{item.get('AttachDate')}")


@click.group()
def sts() -> None:
    """Obtain temporary credentials (STS)."""


@sts.command("assume-role")
@click.argument("role_arn", metavar="ROLE_ARN")
@click.option("--session-name", required=True, help="Name of the session (2 to 64 characters).")
@click.option(
    "--duration-seconds",
    type=click.IntRange(900, 43_200),
    default=None,
    help="Lifetime of the credentials in seconds (900 to the role's maximum; default 3600).",
)
@api_options
def assume_role(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    role_arn: str,
    session_name: str,
    duration_seconds: int | None,
) -> None:
    """Assume the role ROLE_ARN as the signing RAM user and print the credentials."""
    query = {
        "RoleArn": role_arn,
        "RoleSessionName": session_name,
        "DurationSeconds": duration_seconds,
    }
    body = _call(connection, "AssumeRole", query, STS_VERSION)
    _show(output, body)
