"""External key management instance actions.

Alibaba Cloud KMS actions: ConnectKmsInstance, GetKmsInstance and
ListKmsInstances. hyok extensions, because Alibaba Cloud creates and binds
instances in its console: CreateKmsInstance, UpdateXkiProxyConfiguration
and DisconnectKmsInstance. GetKmsInstance also returns extension fields
(``XkiProxy``, ``ErrorReason``, ``ErrorDetail``, ``LastHealthCheckTime``,
``KmsInstanceArn``). docs/api.md documents every parameter, field and error.

An instance belongs to the account of the caller's AccessKey and to this
KMS's region. Its owner may share it with other accounts (the actions of
:mod:`hyok.kms.api.actions.sharing`, served here too): a member sees it and
creates keys in it, but only the owner may change it, and a member's attempt
gets ``Forbidden.NoPermission``. Any other instance ID, like an unknown one,
gets ``Forbidden.DKMSInstanceNotFound``.

The proxy's secret access key is stored encrypted, never returned, and never
written to a log or an error message.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from hyok.common.errors import ValidationError
from hyok.common.secrets import Secret
from hyok.kms.api.actions._lookup import instance_id_parameter, principal_arn
from hyok.kms.api.actions._services import Services, bind_actions
from hyok.kms.api.actions.sharing import (
    QUOTA_PARAMETER,
    share_quota_parameter,
    sharing_actions,
    visible_instance,
)
from hyok.kms.api.app import CallContext, Handler
from hyok.kms.api.errors import (
    ForbiddenInstanceNotFoundError,
    ForbiddenInstanceStateInvalidError,
    InvalidParameterError,
    MissingParameterError,
    shown_value,
)
from hyok.kms.api.params import Params
from hyok.kms.domain import (
    MAX_ENDPOINT_LENGTH,
    MAX_INSTANCE_NAME_LENGTH,
    MAX_PAGE_SIZE,
    Connectivity,
    Instance,
    InstanceErrorReason,
    InstanceStatus,
    PageRequest,
    instance_arn,
    new_instance_id,
)
from hyok.kms.health import HealthOutcome, check_proxy, log_transition, record_outcome
from hyok.kms.store import KmsStore, RowNotFoundError
from hyok.kms.store.sharing import VisibleInstance
from hyok.kms.xki_client import Connectivity as BindingConnectivity
from hyok.kms.xki_client import ProxyBinding, ProxyBindingError

__all__ = ["CONNECTIVITY_VALUES", "PRODUCT_TYPE", "instance_handlers"]

logger = logging.getLogger("hyok.kms.api.instances")

PRODUCT_TYPE: Final = "external_key_management"
"""The ``ProductType`` of every instance that hyok serves."""
CONNECTIVITY_VALUES: Final = {
    "PUBLIC_ENDPOINT": Connectivity.PUBLIC,
    "VPC_ENDPOINT_SERVICE": Connectivity.VPC,
}
"""The wire values of the ``Connectivity`` parameter and the connectivity each stands for."""

_CONNECTIVITY_NAMES: Final = {value: name for name, value in CONNECTIVITY_VALUES.items()}
_MAX_URI_PATH_LENGTH: Final = 128
_MAX_VPC_SERVICE_LENGTH: Final = 255
_VPC_SERVICE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_MAX_PROXY_ACCESS_KEY_ID_LENGTH: Final = 30
_MAX_PROXY_SECRET_LENGTH: Final = 64
# 64 hex digits, or 32 pairs of hex digits separated by ':'.
_FINGERPRINT: Final = re.compile(r"[0-9A-Fa-f]{64}|[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31}")
_MAX_FINGERPRINT_LENGTH: Final = 95
_MAX_PAGE_NUMBER: Final = 2**31 - 1
_DEFAULT_PAGE_SIZE: Final = 20

# The proxy parameters, in the order they are checked.
_PROXY_PARAMETERS: Final = (
    "Connectivity",
    "XkiProxyUriEndpoint",
    "XkiProxyUriPath",
    "VpcEndpointServiceName",
    "XkiProxyAccessKeyId",
    "XkiProxySecretAccessKey",
    "XkiProxyTlsCertificateFingerprint",
)
# The parameter behind each field that ProxyBinding checks.
_BINDING_PARAMETERS: Final = {
    "connectivity": "Connectivity",
    "endpoint": "XkiProxyUriEndpoint",
    "uri_path": "XkiProxyUriPath",
    "access_key_id": "XkiProxyAccessKeyId",
    "secret": "XkiProxySecretAccessKey",
    "server_certificate_sha256": "XkiProxyTlsCertificateFingerprint",
    "connect_address": "VpcEndpointServiceName",
}
# Phrases of ProxyBinding messages that name its fields, in the API's words.
_BINDING_TERMS: Final = (
    ("put the path in uri_path", "put the path in XkiProxyUriPath"),
    (
        "use connectivity 'vpc' with connect_address",
        "use Connectivity VPC_ENDPOINT_SERVICE with a VPC endpoint service that the KMS "
        "operator maps to that address",
    ),
)
# The cause and the fix that a failed connection check reports, by error reason.
_FIXES: Final = {
    InstanceErrorReason.CREDENTIALS_REJECTED: (
        "the proxy rejected the access key ID or secret of the KMS. Set XkiProxyAccessKeyId "
        "and XkiProxySecretAccessKey to a credential that the proxy issued for this key "
        "store with UpdateXkiProxyConfiguration"
    ),
    InstanceErrorReason.URI_PATH_INVALID: (
        "the proxy does not serve the URI path. Set XkiProxyUriPath to the proxy's path "
        "prefix followed by /kms/xks/v1 with UpdateXkiProxyConfiguration"
    ),
    InstanceErrorReason.PROXY_UNREACHABLE: (
        "the proxy could not be reached. Check that it is running and that its endpoint "
        "resolves and accepts connections from the KMS; for a VPC endpoint service, check "
        "the address that the KMS operator maps it to"
    ),
    InstanceErrorReason.TIMED_OUT: (
        "the proxy did not respond in time. Check the proxy's load and the network latency "
        "between the KMS and the proxy"
    ),
    InstanceErrorReason.TLS_FAILURE: (
        "the TLS connection to the proxy failed. Check that the proxy's certificate chains to "
        "a root that the KMS trusts and names the host of XkiProxyUriEndpoint, and that "
        "XkiProxyTlsCertificateFingerprint, if set, is the SHA-256 of that certificate"
    ),
    InstanceErrorReason.INVALID_RESPONSE: (
        "the proxy's response is not a valid XKS proxy API v1 response. Check that "
        "XkiProxyUriEndpoint and XkiProxyUriPath lead to an XKS proxy"
    ),
    InstanceErrorReason.PROXY_FAILURE: (
        "the proxy or its key manager reported a failure. Check the proxy's logs and the "
        "health of its key manager"
    ),
}


@dataclass(frozen=True)
class _ProxySettings:
    """Checked XKI proxy parameters, in the form the store takes them.

    ``secret`` is a :class:`Secret`, so the repr masks it.
    """

    connectivity: Connectivity
    endpoint: str
    uri_path: str
    vpc_endpoint_service: str | None
    access_key_id: str
    secret: Secret
    tls_fingerprint: str | None

    def instance_fields(self) -> dict[str, Any]:
        """Return the settings as :class:`Instance` fields."""
        return {
            "connectivity": self.connectivity,
            "proxy_endpoint": self.endpoint,
            "proxy_uri_path": self.uri_path,
            "vpc_endpoint_service": self.vpc_endpoint_service,
            "proxy_access_key_id": self.access_key_id,
            "proxy_secret": self.secret,
            "tls_fingerprint": self.tls_fingerprint,
        }


# --- Parameters -------------------------------------------------------------------


def _instance_id(params: Params) -> str:
    return instance_id_parameter(params, "KmsInstanceId")


def _fingerprint(params: Params) -> str | None:
    value = params.optional_str(
        "XkiProxyTlsCertificateFingerprint", max_length=_MAX_FINGERPRINT_LENGTH, min_length=1
    )
    if value is None:
        return None
    if not _FINGERPRINT.fullmatch(value):
        raise InvalidParameterError(
            f"The parameter XkiProxyTlsCertificateFingerprint has the invalid value "
            f"{shown_value(value)}: give the SHA-256 fingerprint of the proxy's TLS "
            "certificate as 64 hex digits, or as 32 hex pairs separated by ':' (AA:BB:...).",
            parameter="XkiProxyTlsCertificateFingerprint",
        )
    return value.replace(":", "").lower()


def _vpc_endpoint_service(
    services: Services, params: Params, connectivity: Connectivity
) -> tuple[str | None, str | None]:
    """Return the VPC endpoint service name and the address this deployment maps it to."""
    name = params.optional_str(
        "VpcEndpointServiceName", max_length=_MAX_VPC_SERVICE_LENGTH, min_length=1
    )
    if connectivity is Connectivity.PUBLIC:
        if name is not None:
            raise InvalidParameterError(
                "The parameter VpcEndpointServiceName is set, but Connectivity is "
                "PUBLIC_ENDPOINT. Remove VpcEndpointServiceName, or set Connectivity to "
                "VPC_ENDPOINT_SERVICE.",
                parameter="VpcEndpointServiceName",
            )
        return None, None
    if name is None:
        raise MissingParameterError("VpcEndpointServiceName")
    if not _VPC_SERVICE.fullmatch(name):
        raise InvalidParameterError(
            f"The parameter VpcEndpointServiceName has the invalid value {shown_value(name)}: "
            "use 1 to 255 letters, digits, '.', '_' and '-', starting with a letter or digit.",
            parameter="VpcEndpointServiceName",
        )
    address = services.proxies.network.vpc_endpoints.get(name)
    if address is None:
        raise InvalidParameterError(
            f"The VPC endpoint service {shown_value(name)} in VpcEndpointServiceName is not "
            "mapped by this KMS deployment. The KMS operator must map it to the private "
            "address of the XKI proxy ([proxy.vpc_endpoints] in the KMS configuration) before "
            "an instance can use it.",
            parameter="VpcEndpointServiceName",
        )
    return name, address


def _proxy_settings(services: Services, params: Params) -> _ProxySettings:
    """Read and check the proxy parameters, as UpdateXkiProxyConfiguration takes them."""
    connectivity = CONNECTIVITY_VALUES[params.enum("Connectivity", CONNECTIVITY_VALUES)]
    endpoint = params.required_str("XkiProxyUriEndpoint", max_length=MAX_ENDPOINT_LENGTH)
    uri_path = params.required_str("XkiProxyUriPath", max_length=_MAX_URI_PATH_LENGTH)
    service, address = _vpc_endpoint_service(services, params, connectivity)
    access_key_id = params.required_str(
        "XkiProxyAccessKeyId", max_length=_MAX_PROXY_ACCESS_KEY_ID_LENGTH
    )
    # required_str never shows a value that is too long or empty, only its length.
    secret = Secret(
        params.required_str("XkiProxySecretAccessKey", max_length=_MAX_PROXY_SECRET_LENGTH)
    )
    fingerprint = _fingerprint(params)
    try:
        # The same checks as when the KMS connects. Trust roots do not matter here.
        ProxyBinding(
            endpoint=endpoint,
            uri_path=uri_path,
            region=services.region,
            access_key_id=access_key_id,
            secret=secret,
            connectivity=BindingConnectivity(str(connectivity)),
            server_certificate_sha256=fingerprint,
            connect_address=address,
        )
    except ProxyBindingError as exc:
        parameter = _BINDING_PARAMETERS.get(exc.field, exc.field)
        raise InvalidParameterError(_binding_message(exc, parameter), parameter=parameter) from None
    return _ProxySettings(
        connectivity=connectivity,
        endpoint=endpoint,
        uri_path=uri_path,
        vpc_endpoint_service=service,
        access_key_id=access_key_id,
        secret=secret,
        tls_fingerprint=fingerprint,
    )


def _binding_message(exc: ProxyBindingError, parameter: str) -> str:
    """Reword a ProxyBinding message with the API's parameter names in place of its fields."""
    message = exc.message
    if message.startswith(exc.field + " "):
        message = parameter + message[len(exc.field) :]
    else:
        message = f"The parameter {parameter} is invalid: {message}"
    for field_text, parameter_text in _BINDING_TERMS:
        message = message.replace(field_text, parameter_text)
    return message + "."


def _page(params: Params) -> PageRequest:
    number = params.int_in_range("PageNumber", 1, _MAX_PAGE_NUMBER, default=1)
    size = params.int_in_range("PageSize", 1, MAX_PAGE_SIZE, default=_DEFAULT_PAGE_SIZE)
    return PageRequest(number, size)


# --- Store work (blocking, run in the executor) -------------------------------------


def _not_found(ctx: CallContext, services: Services, instance_id: str) -> Exception:
    return ForbiddenInstanceNotFoundError(
        f"The instance {instance_id} is not found in account {ctx.account_id} in region "
        f"{services.region}. Check the instance ID, or call ListKmsInstances."
    )


def _load_owned(services: Services, ctx: CallContext, instance_id: str) -> Instance:
    with services.store.session(read_only=True) as session:
        return visible_instance(session, ctx, services, instance_id, owner_only=True)


def _load_described(services: Services, ctx: CallContext, instance_id: str) -> tuple[Instance, int]:
    with services.store.session(read_only=True) as session:
        instance = visible_instance(session, ctx, services, instance_id, owner_only=False)
        return instance, session.instances.count_keys(instance_id)


def _create(store: KmsStore, instance: Instance, share_quota: int | None) -> None:
    with store.session() as session:
        session.instances.create(instance)
        if share_quota is not None:
            session.sharing.set_quota(instance.instance_id, share_quota)


def _update(
    services: Services, ctx: CallContext, instance_id: str, settings: _ProxySettings
) -> tuple[Instance, Instance]:
    with services.store.session() as session:
        before = visible_instance(session, ctx, services, instance_id, owner_only=True)
        try:
            after = session.instances.update_proxy_configuration(
                instance_id,
                connectivity=settings.connectivity,
                endpoint=settings.endpoint,
                uri_path=settings.uri_path,
                vpc_endpoint_service=settings.vpc_endpoint_service,
                access_key_id=settings.access_key_id,
                secret=settings.secret,
                tls_fingerprint=settings.tls_fingerprint,
            )
        except RowNotFoundError:
            # Deleted after the read above.
            raise _not_found(ctx, services, instance_id) from None
        except ValidationError as exc:
            raise InvalidParameterError(
                f"The XKI proxy configuration is invalid: {exc.message}."
            ) from None
        return before, after


def _set_status(
    services: Services, ctx: CallContext, instance_id: str, status: InstanceStatus
) -> tuple[Instance, Instance]:
    with services.store.session() as session:
        before = visible_instance(session, ctx, services, instance_id, owner_only=True)
        try:
            after = session.instances.update_status(instance_id, status)
        except RowNotFoundError:
            raise _not_found(ctx, services, instance_id) from None
        return before, after


def _start_connecting(store: KmsStore, instance: Instance) -> Instance | None:
    with store.session() as session:
        return session.instances.update_status_if_unchanged(instance, InstanceStatus.CONNECTING)


def _list(
    services: Services, ctx: CallContext, page: PageRequest
) -> tuple[list[VisibleInstance], int]:
    with services.store.session(read_only=True) as session:
        found = session.sharing.list_visible(ctx.account_id, services.region, page)
    return list(found.items), found.total_count


# --- Responses ----------------------------------------------------------------------


def _format_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(instance: Instance, key_count: int, caller_account: str) -> dict[str, Any]:
    """Build the ``KmsInstance`` object of GetKmsInstance, with hyok's extension fields.

    A member of a shared instance does not see the proxy settings.
    """
    owner = instance.account_id == caller_account
    described: dict[str, Any] = {
        "InstanceId": instance.instance_id,
        "InstanceName": instance.name,
        "Status": str(instance.status),
        "CreateTime": _format_time(instance.created_at),
        "KeyNum": key_count,
        "SecretNum": "0",
        "VpcNum": 0,
        "ProductType": PRODUCT_TYPE,
        "KmsInstanceArn": instance.arn,
        "OwnerAccountId": instance.account_id,
        "Shared": not owner,
    }
    if instance.configured and owner:
        proxy: dict[str, str] = {
            "Connectivity": _CONNECTIVITY_NAMES[instance.connectivity],
            "UriEndpoint": instance.proxy_endpoint or "",
            "UriPath": instance.proxy_uri_path or "",
            "AccessKeyId": instance.proxy_access_key_id or "",
        }
        if instance.vpc_endpoint_service is not None:
            proxy["VpcEndpointServiceName"] = instance.vpc_endpoint_service
        if instance.tls_fingerprint is not None:
            proxy["TlsCertificateFingerprint"] = instance.tls_fingerprint
        described["XkiProxy"] = proxy
    if instance.error_reason is not None:
        described["ErrorReason"] = str(instance.error_reason)
        described["ErrorDetail"] = instance.error_detail
    if instance.last_health_check_at is not None:
        described["LastHealthCheckTime"] = _format_time(instance.last_health_check_at)
    return described


def _connect_failure(
    instance_id: str, outcome: HealthOutcome
) -> ForbiddenInstanceStateInvalidError:
    reason = outcome.error_reason or InstanceErrorReason.PROXY_FAILURE
    return ForbiddenInstanceStateInvalidError(
        f"The XKI proxy of instance {instance_id} failed the connection check, so the instance "
        f"is {outcome.status} ({reason}): {_FIXES[reason]}, then call ConnectKmsInstance "
        f"again. Detail: {outcome.detail}"
    )


# --- Actions ------------------------------------------------------------------------


async def create_kms_instance(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    name = params.optional_str("InstanceName", max_length=MAX_INSTANCE_NAME_LENGTH, min_length=1)
    if name is not None and "\x00" in name:
        raise InvalidParameterError(
            "The parameter InstanceName contains a NUL character. Remove it.",
            parameter="InstanceName",
        )
    configured = any(parameter in params for parameter in _PROXY_PARAMETERS)
    settings = _proxy_settings(services, params) if configured else None
    share_quota = share_quota_parameter(params)

    instance_id = new_instance_id()
    try:
        instance = Instance(
            instance_id=instance_id,
            account_id=ctx.account_id,
            region=services.region,
            name=name or instance_id,
            created_at=services.clock(),
            **(settings.instance_fields() if settings is not None else {}),
        )
    except ValidationError as exc:
        raise InvalidParameterError(f"The instance settings are invalid: {exc.message}.") from None
    await services.run(_create, services.store, instance, share_quota)
    logger.info(
        "instance %s created in account %s region %s, proxy configured: %s, %s: %s",
        instance_id,
        ctx.account_id,
        services.region,
        "yes" if instance.configured else "no",
        QUOTA_PARAMETER,
        "default" if share_quota is None else share_quota,
    )
    return {"KmsInstanceId": instance_id, "KmsInstanceArn": instance.arn}


async def update_xki_proxy_configuration(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    instance_id = _instance_id(params)
    settings = _proxy_settings(services, params)
    before, after = await services.run(_update, services, ctx, instance_id, settings)
    services.keys.forget_instance(instance_id)
    # The next call builds a client with the new settings; close the old one now.
    services.proxies.discard(instance_id)
    logger.info(
        "XKI proxy of instance %s set to %s %s%s with access key ID %s, status %s -> %s",
        instance_id,
        settings.connectivity,
        settings.endpoint,
        settings.uri_path,
        settings.access_key_id,
        before.status,
        after.status,
    )
    return {}


async def connect_kms_instance(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    # ProductType, VpcId, ZoneIds, VSwitchIds and KMProvider bind an Alibaba Cloud VPC
    # and are ignored: hyok reaches the proxy through the instance's proxy settings.
    instance_id = _instance_id(params)
    instance = await services.run(_load_owned, services, ctx, instance_id)
    if not instance.configured:
        raise ForbiddenInstanceStateInvalidError(
            f"The instance {instance_id} has no XKI proxy configuration, so it cannot be "
            "connected. Call UpdateXkiProxyConfiguration first, then ConnectKmsInstance."
        )
    changed = ForbiddenInstanceStateInvalidError(
        f"The instance {instance_id} was changed by another request during "
        "ConnectKmsInstance. Check it with GetKmsInstance and call ConnectKmsInstance again."
    )

    connecting = await services.run(_start_connecting, services.store, instance)
    services.keys.forget_instance(instance_id)
    if connecting is None:
        raise changed
    log_transition(instance, connecting)
    outcome = await check_proxy(
        services,
        connecting,
        request_id=ctx.request_id,
        operation="ConnectKmsInstance",
        principal_arn=principal_arn(ctx),
    )
    recorded = await services.run(
        record_outcome, services.store, connecting, outcome, services.clock()
    )
    if recorded is None:
        raise changed
    services.keys.forget_instance(instance_id)
    log_transition(connecting, recorded)
    if not outcome.connected:
        raise _connect_failure(instance_id, outcome)
    return {}


async def disconnect_kms_instance(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    instance_id = _instance_id(params)
    before, after = await services.run(
        _set_status, services, ctx, instance_id, InstanceStatus.DISCONNECTED
    )
    services.proxies.discard(instance_id)
    services.keys.forget_instance(instance_id)
    log_transition(before, after)
    return {}


async def get_kms_instance(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    instance_id = _instance_id(params)
    instance, key_count = await services.run(_load_described, services, ctx, instance_id)
    return {"KmsInstance": _describe(instance, key_count, ctx.account_id)}


async def list_kms_instances(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    # Filters, which the SDK sends and Alibaba Cloud does not document, is ignored.
    page = _page(params)
    items, total = await services.run(_list, services, ctx, page)
    return {
        "KmsInstances": {
            "KmsInstance": [
                {
                    "KmsInstanceId": instance.instance_id,
                    "KmsInstanceArn": instance_arn(
                        instance.region, instance.owner_account_id, instance.instance_id
                    ),
                    "OwnerAccountId": instance.owner_account_id,
                    "Shared": instance.owner_account_id != ctx.account_id,
                }
                for instance in items
            ]
        },
        "PageNumber": page.number,
        "PageSize": page.size,
        "TotalCount": total,
    }


def instance_handlers(services: Services) -> dict[str, Handler]:
    """Return the instance action handlers, by action name, bound to ``services``."""
    return bind_actions(
        services,
        {
            "CreateKmsInstance": create_kms_instance,
            "UpdateXkiProxyConfiguration": update_xki_proxy_configuration,
            "ConnectKmsInstance": connect_kms_instance,
            "DisconnectKmsInstance": disconnect_kms_instance,
            "GetKmsInstance": get_kms_instance,
            "ListKmsInstances": list_kms_instances,
            **sharing_actions(),
        },
    )
