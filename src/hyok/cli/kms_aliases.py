"""``hyok kms alias``: create, update, delete and list the aliases of keys.

An alias is ``alias/<name>`` and points to one key of the account; use it
wherever a command takes a key (``--key-id alias/payments``). Every command
calls the KMS through the SDK's typed methods (CreateAlias, UpdateAlias,
DeleteAlias, ListAliases and ListAliasesByKeyId).
"""

from __future__ import annotations

from typing import Any

import click

from hyok.cli._common import OutputFormat, print_json, print_table
from hyok.cli._kms_api import (
    ConnectionOptions,
    KmsClient,
    Paging,
    api_options,
    page_title,
    paging_options,
    resolve_target,
)

__all__ = ["alias"]


@click.group()
def alias() -> None:
    """Name keys with aliases (alias/NAME), usable wherever a key ID is.

    A name is alias/ followed by letters, digits, '_', '-' and '/', at most
    255 characters in all, and must not start with alias/acs.
    """


def _change(
    connection: ConnectionOptions, output: OutputFormat, method: str, request: Any, message: str
) -> None:
    """Call the typed SDK method ``method``; print the JSON response, or ``message`` as text."""
    client = KmsClient(resolve_target(connection))
    body = client.invoke(getattr(client.sdk, method), request)
    if output is OutputFormat.JSON:
        print_json(body)
        return
    click.echo(message)


@alias.command()
@click.argument("alias_name", metavar="ALIAS")
@click.argument("key_id", metavar="KEY")
@api_options
def create(
    *, connection: ConnectionOptions, output: OutputFormat, alias_name: str, key_id: str
) -> None:
    """Create the alias ALIAS (alias/NAME) for KEY (a key ID, ARN or another alias)."""
    from alibabacloud_kms20160120 import models  # type: ignore[import-untyped]

    request = models.CreateAliasRequest(alias_name=alias_name, key_id=key_id)
    message = f"Created alias {alias_name} for key {key_id}."
    _change(connection, output, "create_alias_with_options", request, message)


@alias.command()
@click.argument("alias_name", metavar="ALIAS")
@click.argument("key_id", metavar="KEY")
@api_options
def update(
    *, connection: ConnectionOptions, output: OutputFormat, alias_name: str, key_id: str
) -> None:
    """Point the alias ALIAS to another key, KEY. Calls through the alias use KEY at once."""
    from alibabacloud_kms20160120 import models

    request = models.UpdateAliasRequest(alias_name=alias_name, key_id=key_id)
    message = f"Alias {alias_name} now points to key {key_id}."
    _change(connection, output, "update_alias_with_options", request, message)


@alias.command()
@click.argument("alias_name", metavar="ALIAS")
@api_options
def delete(*, connection: ConnectionOptions, output: OutputFormat, alias_name: str) -> None:
    """Delete the alias ALIAS. The key it points to is not changed."""
    from alibabacloud_kms20160120 import models

    request = models.DeleteAliasRequest(alias_name=alias_name)
    _change(
        connection, output, "delete_alias_with_options", request, f"Deleted alias {alias_name}."
    )


@alias.command("list")
@click.option(
    "--key-id",
    metavar="KEY",
    default=None,
    help="List only the aliases of this key (key ID, ARN or alias/NAME).",
)
@paging_options("aliases", default_size=10)
@api_options
def list_aliases(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    key_id: str | None,
    paging: Paging,
) -> None:
    """List the aliases of the account in this region, or of one key, with their keys.

    JSON output is the ListAliases (or ListAliasesByKeyId) response. With
    --all, it contains every alias under Aliases.Alias, and TotalCount.
    """
    from alibabacloud_kms20160120 import models

    client = KmsClient(resolve_target(connection))

    def fetch(number: int | None, size: int | None) -> dict[str, Any]:
        if key_id is None:
            return client.invoke(
                client.sdk.list_aliases_with_options,
                models.ListAliasesRequest(page_number=number, page_size=size),
            )
        return client.invoke(
            client.sdk.list_aliases_by_key_id_with_options,
            models.ListAliasesByKeyIdRequest(key_id=key_id, page_number=number, page_size=size),
        )

    body, found = paging.fetch(fetch, "Aliases", "Alias")

    if output is OutputFormat.JSON:
        print_json(body)
        return
    if not found:
        subject = "the account" if key_id is None else f"key {key_id}"
        click.echo(f"No aliases found for {subject}. Create one with 'hyok kms alias create'.")
        return
    rows = [
        [str(item.get("AliasName", "")), str(item.get("KeyId", "")), str(item.get("AliasArn", ""))]
        for item in found
    ]
    print_table(page_title("Aliases", body, len(found)), ("Alias", "Key ID", "ARN"), rows)
