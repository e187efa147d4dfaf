"""The Instances section: external key management instances, their XKI proxy, sharing, quota.

Every page runs the instance actions of the KMS API as the signed-in
principal: ListKmsInstances, GetKmsInstance, CreateKmsInstance,
UpdateXkiProxyConfiguration, ConnectKmsInstance, DisconnectKmsInstance,
ListKmsInstanceShares, ShareKmsInstance, UnshareKmsInstance,
GetKmsInstanceQuotaInfos and UpdateKmsInstanceShareQuota.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.datastructures import UploadFile
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hyok.console.web import BASE_PATH, N_, ActionError, ActionFailedError, View, page
from hyok.kms.domain.share_quota import RELEASE_DELAY

__all__ = ["routes"]

LIST_PATH: Final = f"{BASE_PATH}/instances"
PAGE_SIZE: Final = 20
_MAX_PAGE: Final = 100_000
_INSTANCE_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_CONFIGURATION_FILE_BYTES: Final = 64 * 1024

STATUS_LABELS: Final = {
    "Uninitialized": N_("Uninitialized"),
    "Connecting": N_("Connecting"),
    "Connected": N_("Connected"),
    "Error": N_("Error"),
    "Disconnected": N_("Disconnected"),
}
CONNECTIVITY_LABELS: Final = {
    "PUBLIC_ENDPOINT": N_("Public endpoint"),
    "VPC_ENDPOINT_SERVICE": N_("VPC endpoint service"),
}
_NOTICES: Final = {
    "created": N_("The instance was created. Configure its XKI proxy, then connect it."),
    "proxy-saved": N_("The XKI proxy configuration was saved."),
    "connected": N_("The instance is connected to its XKI proxy."),
    "disconnected": N_("The instance is disconnected. Cryptographic operations on its keys fail."),
    "shared": N_("The instance is shared with the account."),
    "unshared": N_("The instance is no longer shared with the account."),
    "quota-saved": N_("The access management quota was saved."),
}
# Notices that report a loss of service, shown in the warning style.
_WARNING_NOTICES: Final = frozenset({"disconnected"})
# Form fields of the proxy form, by the API parameter whose errors they show.
_PROXY_FIELDS: Final = {
    "Connectivity": "connectivity",
    "XkiProxyUriEndpoint": "endpoint",
    "XkiProxyUriPath": "uri_path",
    "VpcEndpointServiceName": "vpc_endpoint_service",
    "XkiProxyAccessKeyId": "access_key_id",
    "XkiProxySecretAccessKey": "secret",
    "XkiProxyTlsCertificateFingerprint": "fingerprint",
}
# The parameters that a proxy configuration file provides, by its JSON fields.
_FILE_PARAMETERS: Final = ("XkiProxyUriPath", "XkiProxyAccessKeyId", "XkiProxySecretAccessKey")


@dataclass
class _Page:
    """The parts of the details page besides the instance: forms, errors and a notice."""

    notice: str | None = None
    notice_level: str = "success"
    error: ActionError | None = None
    status: int = 200
    proxy_form: dict[str, str] = field(default_factory=dict)
    field_errors: dict[str, str] = field(default_factory=dict)
    share_account_id: str = ""
    share_quota: str = ""


# --- The list -----------------------------------------------------------------------------


@page()
async def instance_list(view: View) -> Response:
    page_number = _page_number(view.request.query_params.get("page"))
    notice_error: ActionError | None = None
    rows: list[dict[str, Any]] = []
    total = 0
    try:
        listed = await view.call("ListKmsInstances", PageNumber=page_number, PageSize=PAGE_SIZE)
        total = int(listed["TotalCount"])
        for item in listed["KmsInstances"]["KmsInstance"]:
            try:
                described = await view.call("GetKmsInstance", KmsInstanceId=item["KmsInstanceId"])
                rows.append(described["KmsInstance"])
            except ActionFailedError as exc:
                # Deleted or unshared since the list was read: show the ID with the error.
                rows.append({"InstanceId": item["KmsInstanceId"], "Error": exc.error})
    except ActionFailedError as exc:
        notice_error = exc.error
    pages = max(1, -(-total // PAGE_SIZE))
    return view.render(
        "instances/list.html",
        section="instances",
        instances=rows,
        page_number=page_number,
        pages=pages,
        total=total,
        error=notice_error,
        status_labels=STATUS_LABELS,
        connectivity_labels=CONNECTIVITY_LABELS,
        create_name="",
        create_error=None,
    )


@page()
async def create_instance(view: View) -> Response:
    name = await view.form_text("instance_name")
    try:
        created = await view.call_with(
            "CreateKmsInstance",
            {"InstanceName": name or None},
            fields={"InstanceName": "instance_name"},
        )
    except ActionFailedError as exc:
        return view.render(
            "instances/list.html",
            status=exc.error.http_status,
            section="instances",
            instances=[],
            page_number=1,
            pages=1,
            total=0,
            error=None,
            status_labels=STATUS_LABELS,
            connectivity_labels=CONNECTIVITY_LABELS,
            create_name=name,
            create_error=exc.error,
        )
    return view.redirect(f"{LIST_PATH}/{created['KmsInstanceId']}", notice="created")


# --- The details page ---------------------------------------------------------------------


@page()
async def instance_detail(view: View) -> Response:
    key = view.request.query_params.get("notice", "")
    notice = _NOTICES.get(key)
    return await _details(
        view,
        _Page(
            notice=view.gettext(notice) if notice else None,
            notice_level="warning" if key in _WARNING_NOTICES else "success",
        ),
    )


async def _details(view: View, shown: _Page) -> Response:
    """Render the details page of the instance in the path, with the forms of ``shown``."""
    instance_id = view.request.path_params["instance_id"]
    if not _INSTANCE_ID.fullmatch(instance_id):
        return _missing(view, instance_id)
    try:
        described = await view.call("GetKmsInstance", KmsInstanceId=instance_id)
    except ActionFailedError as exc:
        return view.render(
            "message.html",
            status=exc.error.http_status,
            title=view.gettext("Instance not available"),
            message=exc.error.message,
            error=exc.error,
        )
    instance = described["KmsInstance"]
    owner = not instance.get("Shared", False)

    shares: list[dict[str, Any]] = []
    shares_error: ActionError | None = None
    if owner:
        try:
            listed = await view.call("ListKmsInstanceShares", KmsInstanceId=instance_id)
            shares = list(listed["Shares"]["Share"])
        except ActionFailedError as exc:
            shares_error = exc.error
    quota: dict[str, Any] | None = None
    quota_error: ActionError | None = None
    try:
        infos = await view.call("GetKmsInstanceQuotaInfos", KmsInstanceId=instance_id)
        quota = next(iter(infos["KmsInstanceQuotaInfos"]), None)
    except ActionFailedError as exc:
        quota_error = exc.error

    proxy = instance.get("XkiProxy", {})
    form = {
        "connectivity": proxy.get("Connectivity", "PUBLIC_ENDPOINT"),
        "endpoint": proxy.get("UriEndpoint", ""),
        "uri_path": proxy.get("UriPath", "/kms/xks/v1"),
        "vpc_endpoint_service": proxy.get("VpcEndpointServiceName", ""),
        "access_key_id": proxy.get("AccessKeyId", ""),
        "fingerprint": proxy.get("TlsCertificateFingerprint", ""),
        **shown.proxy_form,
    }
    return view.render(
        "instances/detail.html",
        status=shown.status,
        section="instances",
        instance=instance,
        owner=owner,
        proxy=proxy,
        shares=shares,
        shares_error=shares_error,
        quota=quota,
        quota_error=quota_error,
        release_minutes=int(RELEASE_DELAY.total_seconds() // 60),
        page=shown,
        form=form,
        status_labels=STATUS_LABELS,
        connectivity_labels=CONNECTIVITY_LABELS,
    )


def _missing(view: View, instance_id: str) -> Response:
    return view.render(
        "message.html",
        status=404,
        title=view.gettext("Instance not available"),
        message=view.gettext("There is no instance with this ID."),
    )


def _back(view: View, notice: str) -> Response:
    instance_id = view.request.path_params["instance_id"]
    return view.redirect(f"{LIST_PATH}/{instance_id}", notice=notice)


def _failed(error: ActionError, **values: Any) -> _Page:
    return _Page(error=error, status=error.http_status, field_errors=dict(error.fields), **values)


async def _run(
    view: View,
    notice: str,
    action: str,
    parameters: dict[str, str | None],
    *,
    fields: dict[str, str] | None = None,
    **values: Any,
) -> Response:
    """Run one action on the instance in the path, then go back to its page, or show the error.

    ``values`` are the form values to show again with the error.
    """
    instance_id = view.request.path_params["instance_id"]
    try:
        await view.call_with(action, {"KmsInstanceId": instance_id, **parameters}, fields=fields)
    except ActionFailedError as exc:
        return await _details(view, _failed(exc.error, **values))
    return _back(view, notice)


# --- The XKI proxy configuration ----------------------------------------------------------


@page()
async def update_proxy(view: View) -> Response:
    instance_id = view.request.path_params["instance_id"]
    if not _INSTANCE_ID.fullmatch(instance_id):
        return _missing(view, instance_id)
    texts = {name: await view.form_text(name) for name in _PROXY_FIELDS.values()}
    texts["secret"] = await view.form_text("secret", strip=False)
    connectivity = texts["connectivity"]
    parameters: dict[str, str | None] = {
        "Connectivity": connectivity,
        "XkiProxyUriEndpoint": texts["endpoint"],
        "XkiProxyUriPath": texts["uri_path"],
        "VpcEndpointServiceName": texts["vpc_endpoint_service"] or None,
        "XkiProxyAccessKeyId": texts["access_key_id"],
        "XkiProxySecretAccessKey": texts["secret"],
        "XkiProxyTlsCertificateFingerprint": texts["fingerprint"] or None,
    }
    fields = dict(_PROXY_FIELDS)
    # The secret is never shown again, not even after an error.
    kept = {name: value for name, value in texts.items() if name != "secret"}

    upload = (await view.form()).get("configuration_file")
    if isinstance(upload, UploadFile) and upload.filename:
        try:
            from_file = await _read_configuration_file(view, upload)
        except _FileError as exc:
            return await _details(
                view,
                _Page(
                    status=400,
                    proxy_form=kept,
                    field_errors={"configuration_file": exc.message},
                ),
            )
        parameters.update(from_file)
        kept["uri_path"] = from_file["XkiProxyUriPath"]
        kept["access_key_id"] = from_file["XkiProxyAccessKeyId"]
        for name in _FILE_PARAMETERS:
            fields[name] = "configuration_file"

    return await _run(
        view,
        "proxy-saved",
        "UpdateXkiProxyConfiguration",
        parameters,
        fields=fields,
        proxy_form=kept,
    )


class _FileError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def _read_configuration_file(view: View, upload: UploadFile) -> dict[str, str]:
    """Read the URI path and credential from a proxy configuration file (``hyok xki init``).

    Messages name the file's fields, never a value, because the file contains
    the proxy's secret access key.
    """
    data = await upload.read(_MAX_CONFIGURATION_FILE_BYTES + 1)
    if len(data) > _MAX_CONFIGURATION_FILE_BYTES:
        raise _FileError(
            view.gettext(
                "The file is larger than %(size)s KiB; a proxy configuration file is smaller.",
                size=_MAX_CONFIGURATION_FILE_BYTES // 1024,
            )
        )
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _FileError(
            view.gettext(
                "The file is not JSON. Upload the xks-proxy-configuration.json file that "
                "'hyok xki init' writes."
            )
        ) from None
    credential = (
        document.get("XksProxyAuthenticationCredential") if isinstance(document, dict) else None
    )
    values = {
        "XkiProxyUriPath": document.get("XksProxyUriPath") if isinstance(document, dict) else None,
        "XkiProxyAccessKeyId": credential.get("AccessKeyId")
        if isinstance(credential, dict)
        else None,
        "XkiProxySecretAccessKey": credential.get("RawSecretAccessKey")
        if isinstance(credential, dict)
        else None,
    }
    if not all(isinstance(value, str) and value for value in values.values()):
        raise _FileError(
            view.gettext(
                "The file lacks XksProxyUriPath, or the AccessKeyId and RawSecretAccessKey of "
                "XksProxyAuthenticationCredential. Upload the xks-proxy-configuration.json file "
                "that 'hyok xki init' writes."
            )
        )
    return {name: str(value) for name, value in values.items()}


# --- Connect and disconnect ---------------------------------------------------------------


@page()
async def connect(view: View) -> Response:
    return await _change_connection(
        view,
        action="ConnectKmsInstance",
        notice="connected",
        title=view.gettext("Connect the instance?"),
        message=view.gettext(
            "The KMS checks the XKI proxy with its health operation. When the check succeeds, "
            "the keys of this instance can be used."
        ),
        button=view.gettext("Connect"),
    )


@page()
async def disconnect(view: View) -> Response:
    return await _change_connection(
        view,
        action="DisconnectKmsInstance",
        notice="disconnected",
        title=view.gettext("Disconnect the instance?"),
        message=view.gettext(
            "Every cryptographic operation on the keys of this instance fails until the "
            "instance is connected again."
        ),
        button=view.gettext("Disconnect"),
    )


async def _change_connection(
    view: View, *, action: str, notice: str, title: str, message: str, button: str
) -> Response:
    instance_id = view.request.path_params["instance_id"]
    if not _INSTANCE_ID.fullmatch(instance_id):
        return _missing(view, instance_id)
    if await view.form_text("confirmed") != "yes":
        return view.render(
            "confirm.html",
            section="instances",
            title=title,
            message=message,
            button=button,
            action_path=view.request.url.path,
            cancel_path=f"{LIST_PATH}/{instance_id}",
        )
    return await _run(view, notice, action, {})


# --- Sharing and the quota ----------------------------------------------------------------


@page()
async def share(view: View) -> Response:
    account_id = await view.form_text("account_id")
    return await _run(
        view,
        "shared",
        "ShareKmsInstance",
        {"AccountId": account_id},
        fields={"AccountId": "share_account_id"},
        share_account_id=account_id,
    )


@page()
async def unshare(view: View) -> Response:
    account_id = await view.form_text("account_id")
    return await _run(view, "unshared", "UnshareKmsInstance", {"AccountId": account_id})


@page()
async def update_quota(view: View) -> Response:
    quota = await view.form_text("share_quota")
    return await _run(
        view,
        "quota-saved",
        "UpdateKmsInstanceShareQuota",
        {"ShareQuota": quota},
        fields={"ShareQuota": "share_quota"},
        share_quota=quota,
    )


def _page_number(value: str | None) -> int:
    if value is None or not value.isdigit() or len(value) > 6:
        return 1
    return min(max(int(value), 1), _MAX_PAGE)


def routes() -> list[BaseRoute]:
    one = LIST_PATH + "/{instance_id}"
    return [
        Route(LIST_PATH, instance_list, methods=["GET"]),
        Route(LIST_PATH, create_instance, methods=["POST"]),
        Route(one, instance_detail, methods=["GET"]),
        Route(f"{one}/proxy", update_proxy, methods=["POST"]),
        Route(f"{one}/connect", connect, methods=["POST"]),
        Route(f"{one}/disconnect", disconnect, methods=["POST"]),
        Route(f"{one}/shares", share, methods=["POST"]),
        Route(f"{one}/shares/remove", unshare, methods=["POST"]),
        Route(f"{one}/quota", update_quota, methods=["POST"]),
    ]
