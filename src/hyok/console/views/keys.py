"""The Keys section: the Customer Master Keys list and the Create Key panel.

The list runs ListKmsInstances (the Instance ID list, shared instances
included), ListKeys with the DKMSInstanceId and KeyState filters, and
DescribeKey and ListAliasesByKeyId for each row. Create Key runs CreateKey
with the external key ID, tags and policy, then CreateAlias for the alias.
Before submit, the page's script checks the external key ID with a CreateKey
``DryRun`` (``check-external-key``), which reads the key's metadata from
the XKI proxy. The server runs the same checks again on submit.

The details page and its actions are in :mod:`hyok.console.views.keys_detail`.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from hyok.console.views import keys_detail
from hyok.console.views.keys_support import (
    EXTERNAL_STATE_LABELS,
    ROLE_FIELDS,
    STATE_LABELS,
    RoleForm,
    alias_problem,
    build_policy,
    input_rules,
    ram_user_arns,
    role_form_from_submission,
    role_problems,
    rule_messages,
    tag_problems,
)
from hyok.console.web import BASE_PATH, ActionError, ActionFailedError, View, page
from hyok.kms.domain.aliases import ALIAS_PREFIX

__all__ = ["routes"]

LIST_PATH: Final = f"{BASE_PATH}/keys"
PAGE_SIZE: Final = 10
_MAX_PAGE: Final = 100_000
_MAX_SEARCH: Final = 255
_KEY_ID: Final = re.compile(r"key-[a-z0-9]{1,124}")
_STATES: Final = ("Enabled", "Disabled", "PendingDeletion")
_MAX_TAG_ROWS: Final = 21
# CreateKey's parameters, by the form field that shows their errors.
_CREATE_FIELDS: Final = {
    "DKMSInstanceId": "instance",
    "ExternalKeyId": "external_key_id",
    "KeySpec": "key_spec",
    "KeyUsage": "key_usage",
    "Description": "description",
    "Tags": "tags",
    "Policy": "policy_mode",
}
_QUOTA_CODE: Final = "Rejected.ShareQuotaExceedLimit"
_DRY_RUN_CODE: Final = "DryRunOperationError"


# --- Instances ------------------------------------------------------------------------


async def _instances(view: View) -> tuple[list[dict[str, Any]], ActionError | None]:
    """Return the instances the account owns or shares in, with their name and state."""
    try:
        listed = await view.call("ListKmsInstances", PageNumber=1, PageSize=100)
    except ActionFailedError as exc:
        return [], exc.error
    ids = [item["KmsInstanceId"] for item in listed["KmsInstances"]["KmsInstance"]]

    async def describe(instance_id: str) -> dict[str, Any]:
        try:
            described = await view.call("GetKmsInstance", KmsInstanceId=instance_id)
        except ActionFailedError:
            return {"InstanceId": instance_id, "InstanceName": "", "Status": ""}
        return dict(described["KmsInstance"])

    return list(await asyncio.gather(*(describe(item) for item in ids))), None


def _instance_label(instance: dict[str, Any]) -> str:
    name = instance.get("InstanceName") or ""
    return f"{instance['InstanceId']} ({name})" if name else str(instance["InstanceId"])


# --- The list -------------------------------------------------------------------------


@page()
async def key_list(view: View) -> Response:
    query = view.request.query_params
    instances, error = await _instances(view)
    ids = [item["InstanceId"] for item in instances]
    chosen = query.get("instance", "")
    if chosen not in ids:
        chosen = ids[0] if ids else ""
    state = query.get("state", "")
    if state not in _STATES:
        state = ""
    search = query.get("q", "").strip()[:_MAX_SEARCH]
    page_number = _page_number(query.get("page"))

    rows: list[dict[str, Any]] = []
    total = 0
    if chosen and error is None:
        try:
            rows, total = await _key_rows(view, chosen, state, search, page_number)
        except ActionFailedError as exc:
            error = exc.error
    pages = max(1, -(-total // PAGE_SIZE))
    return view.render(
        "keys/list.html",
        section="keys",
        instances=instances,
        instance_label=_instance_label,
        chosen=chosen,
        state=state,
        states=_STATES,
        search=search,
        keys=rows,
        total=total,
        page_number=page_number,
        pages=pages,
        error=error,
        state_labels=STATE_LABELS,
        external_state_labels=EXTERNAL_STATE_LABELS,
    )


async def _key_rows(
    view: View, instance_id: str, state: str, search: str, page_number: int
) -> tuple[list[dict[str, Any]], int]:
    """Return the page of keys to show, each with its metadata and aliases, and the total."""
    if search and _KEY_ID.fullmatch(search):
        # A key ID: show that key when it is in the chosen instance.
        try:
            described = await view.call("DescribeKey", KeyId=search)
        except ActionFailedError:
            return [], 0
        metadata = described["KeyMetadata"]
        if metadata["DKMSInstanceId"] != instance_id or (state and metadata["KeyState"] != state):
            return [], 0
        return [await _row(view, metadata["KeyId"], metadata)], 1
    filters: list[dict[str, Any]] = [{"Key": "DKMSInstanceId", "Values": [instance_id]}]
    if state:
        filters.append({"Key": "KeyState", "Values": [state]})
    if search:
        name = search if search.startswith(ALIAS_PREFIX) else ALIAS_PREFIX + search
        filters.append({"Key": "AliasName", "Values": [name]})
    listed = await view.call(
        "ListKeys",
        Filters=json.dumps(filters),
        PageNumber=page_number,
        PageSize=PAGE_SIZE,
    )
    ids = [item["KeyId"] for item in listed["Keys"]["Key"]]
    rows = await asyncio.gather(*(_row(view, key_id, None) for key_id in ids))
    return list(rows), int(listed["TotalCount"])


async def _row(view: View, key_id: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
    try:
        if metadata is None:
            metadata = dict((await view.call("DescribeKey", KeyId=key_id))["KeyMetadata"])
        aliases = await view.call("ListAliasesByKeyId", KeyId=key_id, PageSize=10)
    except ActionFailedError as exc:
        return {"KeyId": key_id, "Error": exc.error}
    return {
        **metadata,
        "Aliases": [item["AliasName"] for item in aliases["Aliases"]["Alias"]],
    }


def _page_number(value: str | None) -> int:
    if value is None or not value.isdigit() or len(value) > 6:
        return 1
    return min(max(int(value), 1), _MAX_PAGE)


# --- Create Key -----------------------------------------------------------------------


@dataclass
class _CreateForm:
    """The values of the Create Key panel, as submitted or as first shown."""

    instance: str = ""
    external_key_id: str = ""
    key_spec: str = "Aliyun_AES_256"
    key_usage: str = "ENCRYPT/DECRYPT"
    alias: str = ""
    description: str = ""
    tags: list[tuple[str, str]] = field(default_factory=lambda: [("", "")])
    policy_mode: str = "default"
    roles: RoleForm = field(default_factory=RoleForm)


@page()
async def create_form(view: View) -> Response:
    form = _CreateForm(instance=view.request.query_params.get("instance", ""))
    return await _render_create(view, form, None, {})


async def _render_create(
    view: View,
    form: _CreateForm,
    error: ActionError | None,
    field_errors: dict[str, str],
    *,
    status: int = 200,
) -> Response:
    instances, list_error = await _instances(view)
    ids = [item["InstanceId"] for item in instances]
    if form.instance not in ids and ids:
        form.instance = ids[0]
    quota = await _quota(view, form.instance) if form.instance else None
    return view.render(
        "keys/create.html",
        status=status,
        section="keys",
        instances=instances,
        instance_label=_instance_label,
        form=form,
        error=error or list_error,
        field_errors=field_errors,
        users=await ram_user_arns(view),
        quota=quota,
        rules=input_rules(view, view.principal.account_id),
        role_fields=ROLE_FIELDS,
        max_tag_rows=_MAX_TAG_ROWS,
    )


async def _quota(view: View, instance_id: str) -> dict[str, Any] | None:
    try:
        infos = await view.call("GetKmsInstanceQuotaInfos", KmsInstanceId=instance_id)
    except ActionFailedError:
        return None
    return next(iter(infos["KmsInstanceQuotaInfos"]), None)


async def _read_create_form(view: View) -> _CreateForm:
    submitted = await view.form()
    keys = [value for value in submitted.getlist("tag_key") if isinstance(value, str)]
    values = [value for value in submitted.getlist("tag_value") if isinstance(value, str)]
    tags = list(zip(keys, values + [""] * (len(keys) - len(values)), strict=False))
    return _CreateForm(
        instance=await view.form_text("instance"),
        external_key_id=await view.form_text("external_key_id"),
        key_spec=await view.form_text("key_spec"),
        key_usage=await view.form_text("key_usage"),
        alias=await view.form_text("alias"),
        description=await view.form_text("description", strip=False),
        tags=tags[:_MAX_TAG_ROWS] or [("", "")],
        policy_mode="custom" if await view.form_text("policy_mode") == "custom" else "default",
        roles=await role_form_from_submission(view),
    )


def _alias_name(value: str) -> str:
    return value if value.startswith(ALIAS_PREFIX) else ALIAS_PREFIX + value


async def _dry_run(view: View, form: _CreateForm) -> tuple[ActionError | None, dict[str, str]]:
    """Check the instance and external key with a CreateKey dry run, for the same error round.

    Returns the error to show in the banner (one without a field) and the field errors.
    """
    try:
        await view.call_with(
            "CreateKey",
            {
                "DKMSInstanceId": form.instance,
                "ExternalKeyId": form.external_key_id,
                "KeySpec": form.key_spec,
                "KeyUsage": form.key_usage,
                "Description": form.description or None,
                "DryRun": "true",
            },
            fields=_CREATE_FIELDS,
        )
    except ActionFailedError as exc:
        if exc.error.code == _DRY_RUN_CODE:
            return None, {}
        if exc.error.fields:
            return None, dict(exc.error.fields)
        return exc.error, {}
    return None, {}


@page()
async def create_key(view: View) -> Response:
    form = await _read_create_form(view)
    action = await view.form_text("form_action")
    if action == "add-tag":
        if len(form.tags) < _MAX_TAG_ROWS:
            form.tags.append(("", ""))
        return await _render_create(view, form, None, {})
    if action.startswith("remove-tag-") and action[11:].isdigit():
        index = int(action[11:])
        form.tags = [tag for position, tag in enumerate(form.tags) if position != index] or [
            ("", "")
        ]
        return await _render_create(view, form, None, {})

    # Every field is checked before CreateKey, so that all errors show at once.
    messages = rule_messages(view)
    errors: dict[str, str] = {}
    problem = alias_problem(messages, form.alias)
    if problem:
        errors["alias"] = problem
    errors.update(tag_problems(messages, form.tags))
    policy: str | None = None
    if form.policy_mode == "custom":
        errors.update(role_problems(messages, view.principal.account_id, form.roles))
        if not any(name in errors for name in ROLE_FIELDS):
            policy, role_errors = build_policy(view.principal.account_id, form.roles)
            errors.update(role_errors)
    if errors:
        error, external_errors = await _dry_run(view, form)
        return await _render_create(
            view, form, error, {**external_errors, **errors}, status=400
        )

    tags = [{"TagKey": key, "TagValue": value} for key, value in form.tags if key or value]
    try:
        created = await view.call_with(
            "CreateKey",
            {
                "DKMSInstanceId": form.instance,
                "ExternalKeyId": form.external_key_id,
                "KeySpec": form.key_spec,
                "KeyUsage": form.key_usage,
                "Description": form.description or None,
                "Tags": json.dumps(tags) if tags else None,
                "Policy": policy,
            },
            fields=_CREATE_FIELDS,
        )
    except ActionFailedError as exc:
        fields = dict(exc.error.fields)
        if exc.error.code == _QUOTA_CODE:
            fields["cross_account_users"] = exc.error.message
        return await _render_create(view, form, exc.error, fields, status=exc.error.http_status)
    key_id = created["KeyMetadata"]["KeyId"]
    if form.alias:
        try:
            await view.call("CreateAlias", KeyId=key_id, AliasName=_alias_name(form.alias))
        except ActionFailedError as exc:
            return await keys_detail.render_details(
                view,
                key_id,
                error=exc.error,
                notice=view.gettext(
                    "The key was created, but its alias was not: %(reason)s",
                    reason=exc.error.message,
                ),
            )
    return view.redirect(f"{LIST_PATH}/{key_id}", notice="created")


@page()
async def check_external_key(view: View) -> Response:
    """Check an external key ID with a CreateKey dry run; JSON for the page's script."""
    instance_id = await view.form_text("instance")
    external_key_id = await view.form_text("external_key_id")
    try:
        await view.call_with(
            "CreateKey",
            {
                "DKMSInstanceId": instance_id,
                "ExternalKeyId": external_key_id,
                "DryRun": "true",
            },
            fields=_CREATE_FIELDS,
        )
    except ActionFailedError as exc:
        if exc.error.code == _DRY_RUN_CODE:
            return JSONResponse(
                {
                    "ok": True,
                    "message": view.gettext(
                        "The XKI proxy has this key: AES-256, for encryption and decryption, "
                        "enabled."
                    ),
                }
            )
        return JSONResponse(
            {
                "ok": False,
                "code": exc.error.code,
                "message": exc.error.message,
                "field": next(iter(exc.error.fields), ""),
            }
        )
    # CreateKey with DryRun always raises, so a result here is a KMS bug.
    return JSONResponse({"ok": False, "code": "", "message": ""}, status_code=500)


def routes() -> list[BaseRoute]:
    return [
        Route(LIST_PATH, key_list, methods=["GET"]),
        Route(LIST_PATH, create_key, methods=["POST"]),
        Route(f"{LIST_PATH}/new", create_form, methods=["GET"]),
        Route(f"{LIST_PATH}/check-external-key", check_external_key, methods=["POST"]),
        *keys_detail.routes(),
    ]
