"""``hyok kms`` commands that call the KMS API: keys, cryptography, instances and aliases.

Every command calls a running KMS through the official Alibaba Cloud SDK
(``alibabacloud_kms20160120``), signed with an AccessKey, so it behaves as an
application would. :func:`register` adds the commands to the ``hyok kms``
group; the connection options are described in :mod:`hyok.cli._kms_api`.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import click

from hyok.cli._common import CliError, OutputFormat, print_json, print_table
from hyok.cli._kms_api import (
    ConnectionOptions,
    KmsClient,
    Paging,
    api_options,
    page_title,
    paging_options,
    print_fields,
    resolve_target,
)
from hyok.cli.kms_aliases import alias
from hyok.cli.kms_instances import instance
from hyok.cli.kms_policies import (
    get_key_policy,
    read_policy_file,
    role_options,
    role_policy,
    set_key_policy,
)
from hyok.common.fileio import atomic_write

__all__ = [
    "create_key",
    "decrypt",
    "describe_key",
    "encrypt",
    "generate_data_key",
    "list_keys",
    "register",
]

_KEY_FIELDS_FIRST: Final = (
    "KeyId",
    "Arn",
    "KeyState",
    "Description",
    "DKMSInstanceId",
    "KmsInstanceStatus",
    "ExternalKeyId",
    "ExternalKeyState",
    "KeySpec",
    "KeyUsage",
    "Origin",
    "CreationDate",
    "Creator",
    "PrimaryKeyVersion",
)


def register(group: click.Group) -> None:
    """Add the API commands to the ``hyok kms`` group."""
    for command in (
        create_key,
        describe_key,
        list_keys,
        encrypt,
        decrypt,
        generate_data_key,
        set_key_policy,
        get_key_policy,
        instance,
        alias,
    ):
        group.add_command(command)


# Option parsing.


def _pairs(values: Sequence[str], param_hint: str, *, unique: bool) -> list[tuple[str, str]]:
    """Split each ``NAME=VALUE`` at its first ``=``; the name must not be empty."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in values:
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise click.BadParameter(
                f"{item!r} is not NAME=VALUE; write it as, for example, purpose=backup",
                param_hint=param_hint,
            )
        if unique and name in seen:
            raise click.BadParameter(
                f"the name {name!r} is given twice; give each name once", param_hint=param_hint
            )
        seen.add(name)
        pairs.append((name, value))
    return pairs


def _context(values: Sequence[str]) -> dict[str, str] | None:
    """Build the EncryptionContext of ``--context`` options, or None when there are none."""
    return dict(_pairs(values, "--context", unique=True)) or None


def _context_option(function: Any) -> Any:
    return click.option(
        "--context",
        "context",
        multiple=True,
        metavar="NAME=VALUE",
        help=(
            "EncryptionContext entry; repeat for several. Decrypt needs the same entries "
            "that encrypted the data."
        ),
    )(function)


def _read_input(path: Path | None, description: str) -> bytes:
    """Read ``path``, standard input for ``-``, or standard input when no path is given."""
    if path is None or str(path) == "-":
        if path is None and _stdin_is_tty():
            raise click.UsageError(
                f"no {description} given: pass it with --in FILE, or pipe it to standard input"
            )
        data = sys.stdin.buffer.read()
        if not data:
            raise click.UsageError(
                f"standard input is empty, so there is no {description}: pass it with --in "
                "FILE, or pipe data to standard input"
            )
        return data
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise click.BadParameter(f"the file {path} does not exist", param_hint="--in") from None
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read the file {path}: {exc.strerror}", param_hint="--in"
        ) from None


def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def _body_without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name not in names}


# Keys.


@click.command("create-key")
@click.option(
    "--instance-id",
    default=None,
    metavar="ID",
    help=(
        "External key management instance (kst-...) to create the key in. "
        "Default: instance_id of the connection file."
    ),
)
@click.option(
    "--external-key-id",
    required=True,
    metavar="ID",
    help="ID of the key in your key manager, as the XKI proxy reports it ('hyok kmi list-keys').",
)
@click.option("--description", default=None, help="Description of the key (up to 8192 characters).")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="KEY=VALUE",
    help="Tag of the key; repeat for several (up to 20).",
)
@click.option(
    "--policy-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=(
        "JSON file with the key policy. Default: the policy of the role options, or the "
        "default policy without them."
    ),
)
@role_options
@api_options
def create_key(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    instance_id: str | None,
    external_key_id: str,
    description: str | None,
    tags: tuple[str, ...],
    policy_file: Path | None,
    administrators: tuple[str, ...],
    users: tuple[str, ...],
    cross_account_users: tuple[str, ...],
) -> None:
    """Create a KMS key backed by an external key in your key manager.

    The same external key may back several KMS keys. Ciphertext stays bound
    to the KMS key that made it. --administrator, --user and
    --cross-account-user (each repeatable) give the key a policy of role
    lists in place of the default policy.
    """
    from alibabacloud_kms20160120 import models  # type: ignore[import-untyped]

    tag_list = [
        {"TagKey": name, "TagValue": value} for name, value in _pairs(tags, "--tag", unique=True)
    ]
    lists = (administrators, users, cross_account_users)
    if policy_file is not None and any(lists):
        raise click.UsageError(
            "give either --policy-file or role options (--administrator, --user, "
            "--cross-account-user), not both"
        )
    policy = read_policy_file(policy_file) if policy_file is not None else None
    target = resolve_target(connection)
    instance_id = instance_id or target.instance_id
    if instance_id is None:
        raise click.UsageError(
            "no instance to create the key in: pass --instance-id kst-..., or use a "
            "connection file that names one ('hyok kms instance list' shows yours)"
        )

    request = models.CreateKeyRequest(
        dkmsinstance_id=instance_id,
        description=description,
        tags=json.dumps(tag_list) if tag_list else None,
        policy=policy,
    )
    client = KmsClient(target)
    if policy is None:
        policy = role_policy(client, lists)
        request.policy = policy
    # ExternalKeyId is a hyok extension that the SDK model lacks.
    body = client.invoke(
        client.sdk.create_key_with_options,
        request,
        extra_query={"ExternalKeyId": external_key_id},
    )
    if output is OutputFormat.JSON:
        print_json(body)
        return
    metadata = body.get("KeyMetadata") or {}
    click.echo(f"Created key {metadata.get('KeyId', '?')} in instance {instance_id}.")
    print_fields(metadata, _KEY_FIELDS_FIRST)


@click.command("describe-key")
@click.argument("key_id", metavar="KEY")
@api_options
def describe_key(*, connection: ConnectionOptions, output: OutputFormat, key_id: str) -> None:
    """Show the metadata of a key, given its ID, ARN or alias/NAME.

    hyok adds the external key ID, the external key's state in the key
    manager, and the instance's connection status.
    """
    from alibabacloud_kms20160120 import models

    client = KmsClient(resolve_target(connection))
    body = client.invoke(
        client.sdk.describe_key_with_options, models.DescribeKeyRequest(key_id=key_id)
    )
    if output is OutputFormat.JSON:
        print_json(body)
        return
    print_fields(body.get("KeyMetadata") or {}, _KEY_FIELDS_FIRST)


def _filters(values: Sequence[str]) -> str | None:
    """Build the ListKeys ``Filters`` JSON of ``--filter`` options; values of one name are ORed."""
    grouped: dict[str, list[str]] = {}
    for name, value in _pairs(values, "--filter", unique=False):
        grouped.setdefault(name, []).append(value)
    if not grouped:
        return None
    return json.dumps([{"Key": name, "Values": wanted} for name, wanted in grouped.items()])


@click.command("list-keys")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="NAME=VALUE",
    help=(
        "Show only keys whose NAME has VALUE, such as KeyState=Enabled or "
        "DKMSInstanceId=kst-...; repeat a NAME to accept several values."
    ),
)
@paging_options("keys", default_size=10)
@api_options
def list_keys(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    filters: tuple[str, ...],
    paging: Paging,
) -> None:
    """List the keys of the account in this region, with their ARNs.

    JSON output is the ListKeys response. With --all, it contains every key
    under Keys.Key, and TotalCount.
    """
    from alibabacloud_kms20160120 import models

    filters_json = _filters(filters)
    client = KmsClient(resolve_target(connection))

    def fetch(number: int | None, size: int | None) -> dict[str, Any]:
        request = models.ListKeysRequest(page_number=number, page_size=size, filters=filters_json)
        return client.invoke(client.sdk.list_keys_with_options, request)

    body, keys = paging.fetch(fetch, "Keys", "Key")

    if output is OutputFormat.JSON:
        print_json(body)
        return
    if not keys:
        click.echo("No keys found. Create one with 'hyok kms create-key'.")
        return
    rows = [[str(key.get("KeyId", "")), str(key.get("KeyArn", ""))] for key in keys]
    print_table(page_title("Keys", body, len(keys)), ("Key ID", "ARN"), rows)


# Cryptography.


@click.command()
@click.option("--key-id", required=True, metavar="KEY", help="Key ID, ARN or alias/NAME.")
@click.option(
    "--plaintext",
    default=None,
    metavar="TEXT",
    help=(
        "Text to encrypt, as UTF-8. Other local users may see command arguments, "
        "so prefer --in or standard input for secrets."
    ),
)
@click.option(
    "--in",
    "input_file",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default=None,
    help="File whose bytes to encrypt ('-' for standard input). Default: standard input.",
)
@_context_option
@api_options
def encrypt(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    key_id: str,
    plaintext: str | None,
    input_file: Path | None,
    context: tuple[str, ...],
) -> None:
    """Encrypt up to 6 KB of data and print the CiphertextBlob (Base64).

    For larger data, encrypt it locally under a key from generate-data-key.
    """
    from alibabacloud_kms20160120 import models

    if plaintext is not None and input_file is not None:
        raise click.UsageError("--plaintext and --in both give the data; pass only one of them")
    data = plaintext.encode("utf-8") if plaintext is not None else _read_input(input_file, "data")
    request = models.EncryptRequest(
        key_id=key_id,
        plaintext=base64.b64encode(data).decode("ascii"),
        encryption_context=_context(context),
    )
    client = KmsClient(resolve_target(connection))
    body = client.invoke(client.sdk.encrypt_with_options, request)
    if output is OutputFormat.JSON:
        print_json(body)
        return
    click.echo(body.get("CiphertextBlob", ""))


@click.command()
@click.option(
    "--ciphertext",
    default=None,
    metavar="BLOB",
    help="CiphertextBlob (Base64) as encrypt prints it.",
)
@click.option(
    "--in",
    "input_file",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default=None,
    help="File with the CiphertextBlob ('-' for standard input). Default: standard input.",
)
@click.option(
    "--out",
    "output_file",
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    default=None,
    help="File to write the plaintext to, with mode 0600. Default: standard output.",
)
@_context_option
@api_options
def decrypt(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    ciphertext: str | None,
    input_file: Path | None,
    output_file: Path | None,
    context: tuple[str, ...],
) -> None:
    """Decrypt a CiphertextBlob and write the plaintext bytes.

    The plaintext goes to --out, or as raw bytes to standard output. With
    --output json, the plaintext is Base64 in the Plaintext field, unless
    --out is given.
    """
    from alibabacloud_kms20160120 import models

    if ciphertext is not None and input_file is not None:
        raise click.UsageError("--ciphertext and --in both give the ciphertext; pass only one")
    blob = ciphertext if ciphertext is not None else _read_blob(input_file)
    request = models.DecryptRequest(
        ciphertext_blob=blob.strip(), encryption_context=_context(context)
    )
    client = KmsClient(resolve_target(connection))
    body = client.invoke(client.sdk.decrypt_with_options, request)
    try:
        plaintext = base64.b64decode(body.get("Plaintext") or "", validate=True)
    except binascii.Error:
        raise CliError(f"the KMS at {client.url} returned a Plaintext that is not Base64") from None

    if output_file is not None:
        _write_private(output_file, plaintext)
        if output is OutputFormat.JSON:
            print_json(_body_without(body, "Plaintext"))
        return
    if output is OutputFormat.JSON:
        print_json(body)
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(plaintext)
    sys.stdout.buffer.flush()


def _read_blob(path: Path | None) -> str:
    data = _read_input(path, "ciphertext")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        where = "standard input" if path is None or str(path) == "-" else str(path)
        raise click.BadParameter(
            f"{where} does not contain a Base64 CiphertextBlob as 'hyok kms encrypt' prints it",
            param_hint="--in",
        ) from None


def _write_private(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, data, mode=0o600)
    except OSError as exc:
        raise CliError(
            f"cannot write the plaintext to {path}: {exc.strerror}; choose another --out"
        ) from None


@click.command("generate-data-key")
@click.option("--key-id", required=True, metavar="KEY", help="Key ID, ARN or alias/NAME.")
@click.option(
    "--number-of-bytes",
    type=click.IntRange(1, 1024),
    default=None,
    help="Length of the data key in bytes, 1 to 1024. Default: 32.",
)
@click.option(
    "--key-spec",
    type=click.Choice(["AES_256", "AES_128"]),
    default=None,
    help="Length of the data key as a spec: AES_256 (32 bytes) or AES_128 (16 bytes).",
)
@click.option(
    "--without-plaintext",
    is_flag=True,
    help="Return only the encrypted data key (GenerateDataKeyWithoutPlaintext).",
)
@_context_option
@api_options
def generate_data_key(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    key_id: str,
    number_of_bytes: int | None,
    key_spec: str | None,
    without_plaintext: bool,
    context: tuple[str, ...],
) -> None:
    """Generate a random data key for envelope encryption.

    Prints the data key encrypted under KEY (CiphertextBlob) and, unless
    --without-plaintext is given, the data key itself (Plaintext, Base64).
    Decrypt the CiphertextBlob later with 'hyok kms decrypt'.
    """
    from alibabacloud_kms20160120 import models

    if number_of_bytes is not None and key_spec is not None:
        raise click.UsageError(
            "--number-of-bytes and --key-spec both set the length; pass only one of them"
        )
    fields: dict[str, Any] = {
        "key_id": key_id,
        "number_of_bytes": number_of_bytes,
        "key_spec": key_spec,
        "encryption_context": _context(context),
    }
    client = KmsClient(resolve_target(connection))
    if without_plaintext:
        body = client.invoke(
            client.sdk.generate_data_key_without_plaintext_with_options,
            models.GenerateDataKeyWithoutPlaintextRequest(**fields),
        )
    else:
        body = client.invoke(
            client.sdk.generate_data_key_with_options, models.GenerateDataKeyRequest(**fields)
        )
    if output is OutputFormat.JSON:
        print_json(body)
        return
    print_fields(body, ("KeyId", "KeyVersionId", "CiphertextBlob", "Plaintext"))
