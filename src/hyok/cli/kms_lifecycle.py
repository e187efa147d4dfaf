"""``hyok kms`` commands for a key's state, deletion, tags and associations.

Disabling a key and scheduling its deletion stop every application that
uses it. Before either, the command shows who used the key in the last 30
days (ListKeyAssociations) and asks for confirmation on standard error,
unless ``--yes`` is given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import click

from hyok.cli._common import CliError, OutputFormat, print_json, print_table
from hyok.cli._kms_api import ConnectionOptions, KmsClient, api_options, resolve_target

__all__ = ["COMMANDS"]


def _done(output: OutputFormat, body: dict[str, object], message: str) -> None:
    if output is OutputFormat.JSON:
        print_json(body)
    else:
        click.echo(message)


def _client(connection: ConnectionOptions) -> KmsClient:
    return KmsClient(resolve_target(connection))


_RECENT_DAYS = 30


def _confirm_with_usage(client: KmsClient, key_id: str, yes: bool, question: str) -> None:
    """Show who used the key in the last 30 days, then ask ``question``, unless ``yes``."""
    if yes:
        return
    try:
        body = client.call("ListKeyAssociations", {"KeyId": key_id, "Days": str(_RECENT_DAYS)})
    except CliError as exc:
        click.echo(f"Cannot tell who uses key {key_id}: {exc.format_message()}", err=True)
    else:
        principals = (body.get("Principals") or {}).get("Principal") or []
        resources = (body.get("Resources") or {}).get("Resource") or []
        if not principals and not resources:
            click.echo(
                f"Key {key_id} has no recorded use in the last {_RECENT_DAYS} days and no "
                "registered resource (older uses are not shown).",
                err=True,
            )
        else:
            click.echo(f"Key {key_id} was used in the last {_RECENT_DAYS} days by:", err=True)
            for row in principals:
                via = f" via {row['ViaService']}" if row.get("ViaService") else ""
                click.echo(
                    f"  {row['Principal']}{via}: {row['UseCount']} use(s), last {row['LastUsed']}",
                    err=True,
                )
            for row in resources:
                click.echo(f"  resource {row['Service']}:{row['ResourceId']}", err=True)
    if not click.confirm(question, default=False, err=True):
        raise click.Abort


@click.command("enable-key")
@click.argument("key_id", metavar="KEY")
@api_options
def enable_key(*, connection: ConnectionOptions, output: OutputFormat, key_id: str) -> None:
    """Enable a key (ID, ARN or alias/NAME), so that it encrypts and decrypts again."""
    body = _client(connection).call("EnableKey", {"KeyId": key_id})
    _done(output, body, f"Key {key_id} is Enabled.")


@click.command("disable-key")
@click.argument("key_id", metavar="KEY")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@api_options
def disable_key(
    *, connection: ConnectionOptions, output: OutputFormat, key_id: str, yes: bool
) -> None:
    """Disable a key: every cryptographic call with it fails until it is enabled."""
    client = _client(connection)
    _confirm_with_usage(
        client, key_id, yes, f"Disable key {key_id}? Calls with it fail until it is enabled again"
    )
    body = client.call("DisableKey", {"KeyId": key_id})
    _done(output, body, f"Key {key_id} is Disabled.")


@click.command("update-key-description")
@click.argument("key_id", metavar="KEY")
@click.argument("description")
@api_options
def update_key_description(
    *, connection: ConnectionOptions, output: OutputFormat, key_id: str, description: str
) -> None:
    """Replace a key's description ('' clears it)."""
    body = _client(connection).call(
        "UpdateKeyDescription", {"KeyId": key_id, "Description": description}
    )
    _done(output, body, f"The description of key {key_id} is replaced.")


@click.command("set-deletion-protection")
@click.argument("key_id", metavar="KEY")
@click.option("--enable/--disable", "enable", required=True, help="Turn the protection on or off.")
@click.option("--description", default=None, help="Why the key is protected (with --enable).")
@api_options
def set_deletion_protection(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    key_id: str,
    enable: bool,
    description: str | None,
) -> None:
    """Turn a key's deletion protection on or off; protected keys cannot be scheduled."""
    if description is not None and not enable:
        raise click.BadParameter("goes only with --enable", param_hint="--description")
    client = _client(connection)
    metadata = client.call("DescribeKey", {"KeyId": key_id}).get("KeyMetadata") or {}
    arn = metadata.get("Arn") if isinstance(metadata, dict) else None
    if not isinstance(arn, str):
        raise CliError(f"the KMS did not return the ARN of key {key_id}")
    query = {"ProtectedResourceArn": arn, "EnableDeletionProtection": str(enable).lower()}
    if description is not None:
        query["DeletionProtectionDescription"] = description
    body = client.call("SetDeletionProtection", query)
    state = "on" if enable else "off"
    _done(output, body, f"Deletion protection of key {key_id} is {state}.")


@click.command("schedule-key-deletion")
@click.argument("key_id", metavar="KEY")
@click.option(
    "--pending-window-days",
    type=click.IntRange(7, 366),
    required=True,
    help="Days until the key's metadata is deleted (7 to 366); cancel before then to keep it.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@api_options
def schedule_key_deletion(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    key_id: str,
    pending_window_days: int,
    yes: bool,
) -> None:
    """Schedule a key's deletion. The key in your key manager is never deleted by this."""
    client = _client(connection)
    _confirm_with_usage(
        client,
        key_id,
        yes,
        f"Schedule key {key_id} for deletion in {pending_window_days} days? It stops working "
        "now, and its ciphertexts become undecryptable once it is deleted",
    )
    body = client.call(
        "ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": str(pending_window_days)}
    )
    _done(
        output,
        body,
        f"Key {key_id} is pending deletion; 'hyok kms cancel-key-deletion {key_id}' keeps it.",
    )


@click.command("cancel-key-deletion")
@click.argument("key_id", metavar="KEY")
@api_options
def cancel_key_deletion(
    *, connection: ConnectionOptions, output: OutputFormat, key_id: str
) -> None:
    """Cancel a scheduled deletion; the key becomes Enabled."""
    body = _client(connection).call("CancelKeyDeletion", {"KeyId": key_id})
    _done(output, body, f"The deletion of key {key_id} is cancelled; the key is Enabled.")


def _tags(values: Sequence[str]) -> str:
    tags = []
    for value in values:
        name, separator, text = value.partition("=")
        if not separator or not name:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--tag")
        tags.append({"TagKey": name, "TagValue": text})
    return json.dumps(tags)


@click.command("tag-key")
@click.argument("key_id", metavar="KEY")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    required=True,
    metavar="KEY=VALUE",
    help="Tag to add or replace; repeat for several (up to 20).",
)
@api_options
def tag_key(
    *, connection: ConnectionOptions, output: OutputFormat, key_id: str, tags: Sequence[str]
) -> None:
    """Add tags to a key, replacing the values of tag keys it already has."""
    body = _client(connection).call("TagResource", {"KeyId": key_id, "Tags": _tags(tags)})
    _done(output, body, f"Key {key_id} is tagged.")


@click.command("untag-key")
@click.argument("key_id", metavar="KEY")
@click.option(
    "--tag-key",
    "tag_keys",
    multiple=True,
    required=True,
    metavar="KEY",
    help="Tag key to remove; repeat for several.",
)
@api_options
def untag_key(
    *, connection: ConnectionOptions, output: OutputFormat, key_id: str, tag_keys: Sequence[str]
) -> None:
    """Remove tags from a key."""
    body = _client(connection).call(
        "UntagResource", {"KeyId": key_id, "TagKeys": json.dumps(list(tag_keys))}
    )
    _done(output, body, f"The tags are removed from key {key_id}.")


@click.command("list-key-tags")
@click.argument("key_id", metavar="KEY")
@api_options
def list_key_tags(*, connection: ConnectionOptions, output: OutputFormat, key_id: str) -> None:
    """List the tags of a key."""
    body = _client(connection).call("ListResourceTags", {"KeyId": key_id})
    if output is OutputFormat.JSON:
        print_json(body)
        return
    tags = ((body.get("Tags") or {}).get("Tag")) or []
    print_table(None, ["TagKey", "TagValue"], [[t["TagKey"], t["TagValue"]] for t in tags])


@click.command("list-key-associations")
@click.argument("key_id", metavar="KEY")
@click.option("--days", type=click.IntRange(1, 3650), default=None, help="Only uses this recent.")
@api_options
def list_key_associations(
    *, connection: ConnectionOptions, output: OutputFormat, key_id: str, days: int | None
) -> None:
    """Show who used a key for cryptography, and the resources registered with it."""
    query = {"KeyId": key_id} if days is None else {"KeyId": key_id, "Days": str(days)}
    body = _client(connection).call("ListKeyAssociations", query)
    if output is OutputFormat.JSON:
        print_json(body)
        return
    principals = (body.get("Principals") or {}).get("Principal") or []
    print_table(
        "Principals",
        ["Principal", "ViaService", "Uses", "FirstUsed", "LastUsed"],
        [
            [p["Principal"], p["ViaService"], str(p["UseCount"]), p["FirstUsed"], p["LastUsed"]]
            for p in principals
        ],
    )
    resources = (body.get("Resources") or {}).get("Resource") or []
    print_table(
        "Resources",
        ["Service", "ResourceId", "RegisteredBy", "RegisteredAt"],
        [[r["Service"], r["ResourceId"], r["RegisteredBy"], r["RegisteredAt"]] for r in resources],
    )


COMMANDS: tuple[click.Command, ...] = (
    enable_key,
    disable_key,
    update_key_description,
    set_deletion_protection,
    schedule_key_deletion,
    cancel_key_deletion,
    tag_key,
    untag_key,
    list_key_tags,
    list_key_associations,
)
"""The commands of this module, for ``hyok kms``."""
