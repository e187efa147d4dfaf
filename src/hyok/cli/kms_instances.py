"""``hyok kms instance``: external key management instances and their XKI proxy binding.

An instance contains external keys and is bound to one XKI proxy: its
connectivity, endpoint, URI path, SigV4 access key and secret, and optionally
the proxy's TLS certificate fingerprint. Keys can do cryptography only while
the instance is Connected.

An owner may share an instance with other accounts of the KMS, which then
create their own keys in it (``share``, ``unshare``, ``shares``), and set
the instance's access management quota (``quota``).

CreateKmsInstance, UpdateXkiProxyConfiguration, DisconnectKmsInstance and
the sharing actions are hyok extensions, sent with the SDK's generic call.
ConnectKmsInstance, GetKmsInstance, ListKmsInstances and
GetKmsInstanceQuotaInfos use the SDK's typed methods.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
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
    private_file_warning,
    resolve_target,
)
from hyok.common.secrets import Secret

__all__ = ["ProxyConfigurationFile", "instance", "read_proxy_configuration"]

_CONNECTIVITY: Final = {"public": "PUBLIC_ENDPOINT", "vpc": "VPC_ENDPOINT_SERVICE"}
_INSTANCE_FIELDS_FIRST: Final = (
    "InstanceId",
    "InstanceName",
    "Status",
    "ErrorReason",
    "ErrorDetail",
    "XkiProxy",
    "KeyNum",
    "CreateTime",
    "LastHealthCheckTime",
)


@dataclass(frozen=True)
class ProxyConfigurationFile:
    """The fields of a proxy configuration file as ``hyok xki init`` writes it."""

    uri_path: str
    access_key_id: str
    secret: Secret = field(repr=False)


def read_proxy_configuration(path: Path) -> ProxyConfigurationFile:
    """Read ``xks-proxy-configuration.json``: the URI path and the SigV4 credential.

    Errors name the file and the field, never a value, because the file
    contains the proxy's secret access key.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise click.BadParameter(
            f"the file {path} does not exist; 'hyok xki init' writes it as "
            "xks-proxy-configuration.json in its data directory",
            param_hint="--proxy-config-file",
        ) from None
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read the file {path}: {exc.strerror}", param_hint="--proxy-config-file"
        ) from None
    except ValueError:
        raise click.BadParameter(
            f"the file {path} is not UTF-8 JSON", param_hint="--proxy-config-file"
        ) from None

    credential = (
        document.get("XksProxyAuthenticationCredential") if isinstance(document, dict) else None
    )
    fields = {
        "XksProxyUriPath": document.get("XksProxyUriPath") if isinstance(document, dict) else None,
        "XksProxyAuthenticationCredential.AccessKeyId": (
            credential.get("AccessKeyId") if isinstance(credential, dict) else None
        ),
        "XksProxyAuthenticationCredential.RawSecretAccessKey": (
            credential.get("RawSecretAccessKey") if isinstance(credential, dict) else None
        ),
    }
    missing = [name for name, value in fields.items() if not isinstance(value, str) or not value]
    if missing:
        raise click.BadParameter(
            f"the file {path} lacks the string field {', '.join(missing)}; use the "
            "xks-proxy-configuration.json that 'hyok xki init' writes",
            param_hint="--proxy-config-file",
        )
    warning = private_file_warning(path, "the proxy's secret access key")
    if warning is not None:
        click.echo(f"warning: {warning}", err=True)
    return ProxyConfigurationFile(
        uri_path=str(fields["XksProxyUriPath"]),
        access_key_id=str(fields["XksProxyAuthenticationCredential.AccessKeyId"]),
        secret=Secret(str(fields["XksProxyAuthenticationCredential.RawSecretAccessKey"])),
    )


@click.group()
def instance() -> None:
    """Create external key management instances and bind them to an XKI proxy.

    Typical order: create, configure (the proxy's endpoint, path and
    credential), connect, then 'hyok kms create-key --instance-id ...'.
    """


@instance.command()
@click.option(
    "--name", default=None, help="Name of the instance, 1 to 128 characters. Default: its ID."
)
@click.option(
    "--share-quota",
    type=click.IntRange(0, 1000),
    default=None,
    help=(
        "Access management quota: how many other accounts the key policies of the instance "
        "may grant, 0 to 1000. Default: 10."
    ),
)
@api_options
def create(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    name: str | None,
    share_quota: int | None,
) -> None:
    """Create an external key management instance, not yet bound to a proxy."""
    client = KmsClient(resolve_target(connection))
    query = {"InstanceName": name} if name else {}
    if share_quota is not None:
        query["ShareQuota"] = str(share_quota)
    body = client.call("CreateKmsInstance", query)
    if output is OutputFormat.JSON:
        print_json(body)
        return
    instance_id = body.get("KmsInstanceId", "?")
    click.echo(
        f"Created instance {instance_id}. Bind it to your XKI proxy with "
        f"'hyok kms instance configure {instance_id} ...'."
    )
    print_fields(body)


@instance.command()
@click.argument("instance_id", metavar="ID")
@click.option(
    "--connectivity",
    type=click.Choice(sorted(_CONNECTIVITY)),
    required=True,
    help=(
        "How the KMS reaches the proxy: public (an https URL with a DNS name) or vpc "
        "(a VPC endpoint service that the KMS maps to a private address)."
    ),
)
@click.option(
    "--proxy-endpoint",
    required=True,
    metavar="URL",
    help="URL of the proxy, https://HOST[:PORT], such as https://xki.example.com.",
)
@click.option(
    "--uri-path",
    default=None,
    metavar="PATH",
    help=(
        "URI path of the proxy's key store, ending in /kms/xks/v1. "
        "Default: from --proxy-config-file."
    ),
)
@click.option(
    "--vpc-endpoint-service",
    default=None,
    metavar="NAME",
    help="VPC endpoint service name; required with --connectivity vpc, rejected otherwise.",
)
@click.option(
    "--proxy-access-key-id",
    default=None,
    metavar="ID",
    help="SigV4 access key ID of the proxy's key store. Default: from --proxy-config-file.",
)
@click.option(
    "--proxy-secret-file",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default=None,
    help=(
        "File with the SigV4 secret access key ('-' for standard input). Default: from "
        "--proxy-config-file, else a prompt."
    ),
)
@click.option(
    "--proxy-config-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=(
        "Proxy configuration file as 'hyok xki init' writes it (xks-proxy-configuration.json): "
        "gives the URI path, access key ID and secret."
    ),
)
@click.option(
    "--tls-fingerprint",
    default=None,
    metavar="HEX",
    help="SHA-256 fingerprint of the proxy's TLS certificate (64 hex digits, colons allowed).",
)
@api_options
def configure(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    instance_id: str,
    connectivity: str,
    proxy_endpoint: str,
    uri_path: str | None,
    vpc_endpoint_service: str | None,
    proxy_access_key_id: str | None,
    proxy_secret_file: Path | None,
    proxy_config_file: Path | None,
    tls_fingerprint: str | None,
) -> None:
    """Set the XKI proxy of an instance (UpdateXkiProxyConfiguration).

    A connected instance must pass a health check again: run 'hyok kms
    instance connect ID' afterwards. The secret is never accepted as an
    argument, because other local users can see arguments.
    """
    if connectivity == "vpc" and vpc_endpoint_service is None:
        raise click.UsageError(
            "--connectivity vpc needs --vpc-endpoint-service NAME: the endpoint service "
            "that the KMS maps to the proxy's private address"
        )
    if connectivity == "public" and vpc_endpoint_service is not None:
        raise click.UsageError(
            "--vpc-endpoint-service applies only to --connectivity vpc; remove it, or "
            "use --connectivity vpc"
        )
    from_file = read_proxy_configuration(proxy_config_file) if proxy_config_file else None
    uri_path = uri_path or (from_file.uri_path if from_file else None)
    access_key_id = proxy_access_key_id or (from_file.access_key_id if from_file else None)
    if uri_path is None:
        raise click.UsageError("Missing option '--uri-path' (or --proxy-config-file).")
    if access_key_id is None:
        raise click.UsageError("Missing option '--proxy-access-key-id' (or --proxy-config-file).")
    if proxy_secret_file is not None:
        secret = _read_secret_file(proxy_secret_file)
    elif from_file is not None:
        secret = from_file.secret
    else:
        secret = _prompt_secret()

    query = {
        "KmsInstanceId": instance_id,
        "Connectivity": _CONNECTIVITY[connectivity],
        "XkiProxyUriEndpoint": proxy_endpoint,
        "XkiProxyUriPath": uri_path,
        "XkiProxyAccessKeyId": access_key_id,
        "XkiProxySecretAccessKey": secret.reveal(),
    }
    if vpc_endpoint_service is not None:
        query["VpcEndpointServiceName"] = vpc_endpoint_service
    if tls_fingerprint is not None:
        query["XkiProxyTlsCertificateFingerprint"] = tls_fingerprint
    client = KmsClient(resolve_target(connection))
    client.call("UpdateXkiProxyConfiguration", query)
    _show_instance(
        client,
        instance_id,
        output,
        note=(
            f"Updated the XKI proxy of instance {instance_id}. Connect it with "
            f"'hyok kms instance connect {instance_id}'."
        ),
    )


def _read_secret_file(path: Path) -> Secret:
    if str(path) == "-":
        text = sys.stdin.read()
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise click.BadParameter(
                f"the file {path} does not exist", param_hint="--proxy-secret-file"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            raise click.BadParameter(
                f"cannot read the file {path}: {reason}", param_hint="--proxy-secret-file"
            ) from None
    value = text.strip()
    if not value:
        raise click.BadParameter(
            f"{'standard input' if str(path) == '-' else path} contains no secret",
            param_hint="--proxy-secret-file",
        )
    return Secret(value)


def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def _prompt_secret() -> Secret:
    if not _stdin_is_tty():
        raise click.UsageError(
            "no proxy secret given: pass --proxy-secret-file FILE (or '-' to read it from "
            "standard input), or --proxy-config-file, or run in a terminal to be prompted"
        )
    value: str = click.prompt("Secret access key of the XKI proxy", hide_input=True, err=True)
    value = value.strip()
    if not value:
        raise CliError("the proxy secret is empty; enter the secret access key of the proxy")
    return Secret(value)


@instance.command()
@click.argument("instance_id", metavar="ID")
@api_options
def connect(*, connection: ConnectionOptions, output: OutputFormat, instance_id: str) -> None:
    """Connect an instance to its XKI proxy, after a health check of the proxy.

    On failure, the instance's status and error reason show what to fix.
    """
    from alibabacloud_kms20160120 import models  # type: ignore[import-untyped]

    client = KmsClient(resolve_target(connection))
    client.invoke(
        client.sdk.connect_kms_instance_with_options,
        models.ConnectKmsInstanceRequest(kms_instance_id=instance_id),
    )
    _show_instance(client, instance_id, output, note=f"Connected instance {instance_id}.")


@instance.command()
@click.argument("instance_id", metavar="ID")
@api_options
def disconnect(*, connection: ConnectionOptions, output: OutputFormat, instance_id: str) -> None:
    """Disconnect an instance: cryptography with its keys fails until it is connected again."""
    client = KmsClient(resolve_target(connection))
    client.call("DisconnectKmsInstance", {"KmsInstanceId": instance_id})
    _show_instance(client, instance_id, output, note=f"Disconnected instance {instance_id}.")


@instance.command()
@click.argument("instance_id", metavar="ID")
@api_options
def describe(*, connection: ConnectionOptions, output: OutputFormat, instance_id: str) -> None:
    """Show an instance: status, error reason and XKI proxy settings (never the secret)."""
    client = KmsClient(resolve_target(connection))
    _show_instance(client, instance_id, output)


def _show_instance(
    client: KmsClient, instance_id: str, output: OutputFormat, *, note: str | None = None
) -> None:
    """Print GetKmsInstance of ``instance_id``; ``note`` goes first, in table output only."""
    from alibabacloud_kms20160120 import models

    body = client.invoke(
        client.sdk.get_kms_instance_with_options,
        models.GetKmsInstanceRequest(kms_instance_id=instance_id),
    )
    if output is OutputFormat.JSON:
        print_json(body)
        return
    if note is not None:
        click.echo(note)
    print_fields(body.get("KmsInstance") or {}, _INSTANCE_FIELDS_FIRST)


@instance.command("list")
@paging_options("instances", default_size=20)
@api_options
def list_instances(
    *,
    connection: ConnectionOptions,
    output: OutputFormat,
    paging: Paging,
) -> None:
    """List the instances of the account in this region, with their ARNs."""
    from alibabacloud_kms20160120 import models

    client = KmsClient(resolve_target(connection))

    def fetch(number: int | None, size: int | None) -> dict[str, Any]:
        request = models.ListKmsInstancesRequest(page_number=number, page_size=size)
        return client.invoke(client.sdk.list_kms_instances_with_options, request)

    body, instances = paging.fetch(fetch, "KmsInstances", "KmsInstance")

    if output is OutputFormat.JSON:
        print_json(body)
        return
    if not instances:
        click.echo("No instances found. Create one with 'hyok kms instance create'.")
        return
    rows = [
        [
            str(item.get("KmsInstanceId", "")),
            str(item.get("KmsInstanceArn", "")),
            f"shared by {item.get('OwnerAccountId', '?')}" if item.get("Shared") else "owned",
        ]
        for item in instances
    ]
    print_table(
        page_title("KMS instances", body, len(instances)), ("Instance ID", "ARN", "Access"), rows
    )


# Sharing and the access management quota.


@instance.command()
@click.argument("instance_id", metavar="ID")
@click.argument("account_id", metavar="ACCOUNT")
@api_options
def share(
    *, connection: ConnectionOptions, output: OutputFormat, instance_id: str, account_id: str
) -> None:
    """Share an instance with another account, which may then create its keys in it."""
    client = KmsClient(resolve_target(connection))
    body = client.call("ShareKmsInstance", {"KmsInstanceId": instance_id, "AccountId": account_id})
    if output is OutputFormat.JSON:
        print_json(body)
        return
    click.echo(f"Shared instance {instance_id} with account {account_id}.")


@instance.command()
@click.argument("instance_id", metavar="ID")
@click.argument("account_id", metavar="ACCOUNT")
@api_options
def unshare(
    *, connection: ConnectionOptions, output: OutputFormat, instance_id: str, account_id: str
) -> None:
    """Stop sharing an instance with an account. Refused while the account has keys in it."""
    client = KmsClient(resolve_target(connection))
    query = {"KmsInstanceId": instance_id, "AccountId": account_id}
    body = client.call("UnshareKmsInstance", query)
    if output is OutputFormat.JSON:
        print_json(body)
        return
    click.echo(f"Instance {instance_id} is no longer shared with account {account_id}.")


@instance.command()
@click.argument("instance_id", metavar="ID")
@api_options
def shares(*, connection: ConnectionOptions, output: OutputFormat, instance_id: str) -> None:
    """List the accounts an instance is shared with, and their key counts."""
    client = KmsClient(resolve_target(connection))
    body = client.call("ListKmsInstanceShares", {"KmsInstanceId": instance_id})
    if output is OutputFormat.JSON:
        print_json(body)
        return
    members = (body.get("Shares") or {}).get("Share") or []
    if not members:
        click.echo(
            f"Instance {instance_id} is not shared. Share it with 'hyok kms instance share'."
        )
        return
    rows = [
        [str(item.get("AccountId", "")), str(item.get("ShareTime", "")), str(item.get("KeyNum"))]
        for item in members
    ]
    title = f"Accounts instance {instance_id} is shared with"
    print_table(title, ("Account", "Since", "Keys"), rows)


@instance.command()
@click.argument("instance_id", metavar="ID")
@click.option(
    "--set",
    "new_quota",
    type=click.IntRange(0, 1000),
    default=None,
    help="Set the quota to this many accounts (0 to 1000) before showing it.",
)
@api_options
def quota(
    *, connection: ConnectionOptions, output: OutputFormat, instance_id: str, new_quota: int | None
) -> None:
    """Show (or set) the access management quota: other accounts that key policies may grant.

    A revoked account keeps counting for 5 minutes after its last grant ends.
    """
    from alibabacloud_kms20160120 import models

    client = KmsClient(resolve_target(connection))
    if new_quota is not None:
        query = {"KmsInstanceId": instance_id, "ShareQuota": str(new_quota)}
        client.call("UpdateKmsInstanceShareQuota", query)
    body = client.invoke(
        client.sdk.get_kms_instance_quota_infos_with_options,
        models.GetKmsInstanceQuotaInfosRequest(kms_instance_id=instance_id, resource_type="share"),
    )
    if output is OutputFormat.JSON:
        print_json(body)
        return
    for info in body.get("KmsInstanceQuotaInfos") or []:
        click.echo(
            f"Instance {instance_id}: {info.get('UsedQuantity')} of {info.get('ResourceQuota')} "
            "accounts of the access management quota in use."
        )
