"""The details page of a key and its actions.

The page runs DescribeKey (whose metadata includes the external key's state
and the instance's connection state), ListAliasesByKeyId, ListResourceTags,
GetKeyPolicy and ListKeyAssociations, and shows the key's newest audit
events once DescribeKey has allowed the principal to see the key. The
actions are EnableKey, DisableKey, SetDeletionProtection,
ScheduleKeyDeletion, CancelKeyDeletion, CreateAlias, DeleteAlias,
TagResource, UntagResource and SetKeyPolicy. Disabling a key and scheduling
its deletion first show who used the key in the last 30 days and ask for
confirmation.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hyok.console.views.keys_support import (
    EXTERNAL_STATE_LABELS,
    OUTCOME_LABELS,
    ROLE_FIELDS,
    STATE_LABELS,
    RoleForm,
    build_policy,
    input_rules,
    key_audit_events,
    ram_user_arns,
    role_form_from_policy,
    role_form_from_submission,
)
from hyok.console.web import BASE_PATH, N_, ActionError, ActionFailedError, View, page
from hyok.kms.domain.aliases import ALIAS_PREFIX

__all__ = ["render_details", "routes"]

LIST_PATH: Final = f"{BASE_PATH}/keys"
RECENT_DAYS: Final = 30
DEFAULT_PENDING_DAYS: Final = 30
_KEY_ID: Final = re.compile(r"key-[a-z0-9]{1,124}")
_NOTICES: Final = {
    "created": N_("The key was created."),
    "enabled": N_("The key is enabled."),
    "disabled": N_(
        "The key is disabled. Cryptographic operations with it fail until it is enabled again."
    ),
    "protection-on": N_("Deletion protection is on."),
    "protection-off": N_("Deletion protection is off."),
    "deletion-scheduled": N_("The key is scheduled for deletion."),
    "deletion-cancelled": N_("The deletion is cancelled and the key is enabled."),
    "alias-added": N_("The alias was added."),
    "alias-deleted": N_("The alias was deleted."),
    "tag-added": N_("The tag was saved."),
    "tag-removed": N_("The tag was removed."),
    "policy-saved": N_("The key policy was saved."),
}


def _key_id(view: View) -> str | None:
    key_id = str(view.request.path_params["key_id"])
    return key_id if _KEY_ID.fullmatch(key_id) else None


def _missing(view: View) -> Response:
    return view.render(
        "message.html",
        status=404,
        title=view.gettext("Key not available"),
        message=view.gettext("There is no key with this ID."),
    )


@page()
async def key_detail(view: View) -> Response:
    key_id = _key_id(view)
    if key_id is None:
        return _missing(view)
    notice = _NOTICES.get(view.request.query_params.get("notice", ""))
    return await render_details(view, key_id, notice=view.gettext(notice) if notice else None)


async def render_details(
    view: View,
    key_id: str,
    *,
    notice: str | None = None,
    error: ActionError | None = None,
    field_errors: dict[str, str] | None = None,
    forms: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    """Render the details page of ``key_id``, with a notice, an error and form values."""
    try:
        described = await view.call("DescribeKey", KeyId=key_id)
    except ActionFailedError as exc:
        return view.render(
            "message.html",
            status=exc.error.http_status,
            title=view.gettext("Key not available"),
            message=exc.error.message,
            error=exc.error,
        )
    key = described["KeyMetadata"]
    key_id = key["KeyId"]
    errors: dict[str, ActionError] = {}

    async def optional(action: str, **parameters: str | int) -> dict[str, Any] | None:
        try:
            return await view.call(action, KeyId=key_id, **parameters)
        except ActionFailedError as exc:
            errors[action] = exc.error
            return None

    aliases_result = await optional("ListAliasesByKeyId", PageSize=100)
    aliases = [
        item["AliasName"] for item in (aliases_result or {}).get("Aliases", {}).get("Alias", [])
    ]
    tags_result = await optional("ListResourceTags")
    tags = [
        (tag["TagKey"], tag["TagValue"])
        for tag in (tags_result or {}).get("Tags", {}).get("Tag", [])
    ]
    policy_result = await optional("GetKeyPolicy")
    policy_text = (policy_result or {}).get("Policy", "")
    associations = await optional("ListKeyAssociations")
    show_reads = view.request.query_params.get("reads") == "1"
    events = await view.run(
        lambda: key_audit_events(
            view.console.audit_path, [key_id, *aliases], include_reads=show_reads
        )
    )

    users = await ram_user_arns(view)
    shown = dict(forms or {})
    roles = shown.get("roles")
    if not isinstance(roles, RoleForm):
        roles = role_form_from_policy(policy_text, key["Creator"], (arn for arn, _ in users))
    return view.render(
        "keys/detail.html",
        status=status,
        section="keys",
        key=key,
        aliases=aliases,
        tags=tags,
        policy_text=shown.get("policy_json", _pretty(policy_text)),
        roles=roles,
        role_fields=ROLE_FIELDS,
        users=users,
        associations=associations,
        events=events,
        show_reads=show_reads,
        errors=errors,
        notice=notice,
        error=error,
        field_errors=field_errors or {},
        values=shown,
        rules=input_rules(view, key["Creator"]),
        state_labels=STATE_LABELS,
        external_state_labels=EXTERNAL_STATE_LABELS,
        outcome_labels=OUTCOME_LABELS,
        default_pending_days=DEFAULT_PENDING_DAYS,
        audit_available=view.console.audit_path is not None,
    )


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


def _back(view: View, key_id: str, notice: str) -> Response:
    return view.redirect(f"{LIST_PATH}/{key_id}", notice=notice)


async def _run(
    view: View,
    notice: str,
    action: str,
    parameters: dict[str, str | int | None],
    *,
    fields: dict[str, str] | None = None,
    forms: dict[str, Any] | None = None,
    pass_key_id: bool = True,
) -> Response:
    """Run one action for the key in the path, then go back to its page, or show the error.

    With ``pass_key_id`` the action receives the key as ``KeyId``; actions
    that name the key otherwise (an alias, an ARN) get ``parameters`` only.
    """
    key_id = _key_id(view)
    if key_id is None:
        return _missing(view)
    sent = {"KeyId": key_id, **parameters} if pass_key_id else parameters
    try:
        await view.call_with(action, sent, fields=fields)
    except ActionFailedError as exc:
        return await render_details(
            view,
            key_id,
            error=exc.error,
            field_errors=dict(exc.error.fields),
            forms=forms,
            status=exc.error.http_status,
        )
    return _back(view, key_id, notice)


# --- State ----------------------------------------------------------------------------


@page()
async def enable(view: View) -> Response:
    return await _run(view, "enabled", "EnableKey", {})


async def _confirm_with_usage(
    view: View, key_id: str, *, title: str, button: str, hidden: dict[str, str]
) -> Response:
    """Show who used the key in the last 30 days, and ask to go on."""
    usage_error: ActionError | None = None
    principals: list[dict[str, Any]] = []
    resources: list[dict[str, Any]] = []
    try:
        found = await view.call("ListKeyAssociations", KeyId=key_id, Days=RECENT_DAYS)
        principals = list(found["Principals"]["Principal"])
        resources = list(found["Resources"]["Resource"])
    except ActionFailedError as exc:
        usage_error = exc.error
    return view.render(
        "keys/confirm.html",
        section="keys",
        title=title,
        button=button,
        key_id=key_id,
        principals=principals,
        resources=resources,
        usage_error=usage_error,
        days=RECENT_DAYS,
        hidden=hidden,
        action_path=view.request.url.path,
        cancel_path=f"{LIST_PATH}/{key_id}",
    )


@page()
async def disable(view: View) -> Response:
    key_id = _key_id(view)
    if key_id is None:
        return _missing(view)
    if await view.form_text("confirmed") != "yes":
        return await _confirm_with_usage(
            view,
            key_id,
            title=view.gettext("Disable key %(key)s?", key=key_id),
            button=view.gettext("Disable key"),
            hidden={},
        )
    return await _run(view, "disabled", "DisableKey", {})


@page()
async def schedule_deletion(view: View) -> Response:
    key_id = _key_id(view)
    if key_id is None:
        return _missing(view)
    days = await view.form_text("pending_days")
    if await view.form_text("confirmed") != "yes":
        return await _confirm_with_usage(
            view,
            key_id,
            title=view.gettext(
                "Schedule the deletion of key %(key)s in %(days)s days?", key=key_id, days=days
            ),
            button=view.gettext("Schedule deletion"),
            hidden={"pending_days": days},
        )
    return await _run(
        view,
        "deletion-scheduled",
        "ScheduleKeyDeletion",
        {"PendingWindowInDays": days},
        fields={"PendingWindowInDays": "pending_days"},
        forms={"pending_days": days},
    )


@page()
async def cancel_deletion(view: View) -> Response:
    return await _run(view, "deletion-cancelled", "CancelKeyDeletion", {})


@page()
async def protection(view: View) -> Response:
    key_id = _key_id(view)
    if key_id is None:
        return _missing(view)
    turn_on = await view.form_text("enable") == "true"
    description = await view.form_text("protection_description")
    try:
        described = await view.call("DescribeKey", KeyId=key_id)
    except ActionFailedError as exc:
        return await render_details(view, key_id, error=exc.error, status=exc.error.http_status)
    return await _run(
        view,
        "protection-on" if turn_on else "protection-off",
        "SetDeletionProtection",
        {
            "ProtectedResourceArn": described["KeyMetadata"]["Arn"],
            "EnableDeletionProtection": "true" if turn_on else "false",
            "DeletionProtectionDescription": (description or None) if turn_on else None,
        },
        fields={"DeletionProtectionDescription": "protection_description"},
        forms={"protection_description": description},
        pass_key_id=False,
    )


# --- Aliases and tags -----------------------------------------------------------------


@page()
async def add_alias(view: View) -> Response:
    alias = await view.form_text("alias")
    name = alias if alias.startswith(ALIAS_PREFIX) or not alias else ALIAS_PREFIX + alias
    return await _run(
        view,
        "alias-added",
        "CreateAlias",
        {"AliasName": name},
        fields={"AliasName": "alias"},
        forms={"alias": alias},
    )


@page()
async def delete_alias(view: View) -> Response:
    alias = await view.form_text("alias")
    return await _run(
        view, "alias-deleted", "DeleteAlias", {"AliasName": alias}, pass_key_id=False
    )


@page()
async def add_tag(view: View) -> Response:
    tag_key = await view.form_text("tag_key")
    tag_value = await view.form_text("tag_value")
    return await _run(
        view,
        "tag-added",
        "TagResource",
        {"Tags": json.dumps([{"TagKey": tag_key, "TagValue": tag_value}])},
        fields={"Tags": "tag_key"},
        forms={"tag_key": tag_key, "tag_value": tag_value},
    )


@page()
async def remove_tag(view: View) -> Response:
    tag_key = await view.form_text("tag_key")
    return await _run(view, "tag-removed", "UntagResource", {"TagKeys": json.dumps([tag_key])})


# --- The policy -----------------------------------------------------------------------


async def _save_policy_document(view: View, key_id: str) -> Response:
    text = await view.form_text("policy_json", strip=False)
    try:
        json.loads(text)
    except ValueError as exc:
        return await render_details(
            view,
            key_id,
            field_errors={
                "policy_json": view.gettext(
                    "The policy is not valid JSON: %(reason)s.", reason=str(exc)
                )
            },
            forms={"policy_json": text},
            status=400,
        )
    return await _run(
        view,
        "policy-saved",
        "SetKeyPolicy",
        {"Policy": text},
        fields={"Policy": "policy_json"},
        forms={"policy_json": text},
    )


@page()
async def save_policy(view: View) -> Response:
    key_id = _key_id(view)
    if key_id is None:
        return _missing(view)
    if await view.form_text("policy_mode") == "json":
        return await _save_policy_document(view, key_id)
    roles = await role_form_from_submission(view)
    try:
        described = await view.call("DescribeKey", KeyId=key_id)
    except ActionFailedError as exc:
        return await render_details(view, key_id, error=exc.error, status=exc.error.http_status)
    policy, errors = build_policy(described["KeyMetadata"]["Creator"], roles)
    if policy is None:
        return await render_details(
            view, key_id, field_errors=errors, forms={"roles": roles}, status=400
        )
    key_id_checked = key_id
    try:
        await view.call_with("SetKeyPolicy", {"KeyId": key_id_checked, "Policy": policy})
    except ActionFailedError as exc:
        fields = dict(exc.error.fields)
        if exc.error.code == "Rejected.ShareQuotaExceedLimit":
            fields["cross_account_users"] = exc.error.message
        return await render_details(
            view,
            key_id,
            error=exc.error,
            field_errors=fields,
            forms={"roles": roles},
            status=exc.error.http_status,
        )
    return _back(view, key_id, "policy-saved")


def routes() -> list[BaseRoute]:
    one = LIST_PATH + "/{key_id}"
    return [
        Route(one, key_detail, methods=["GET"]),
        Route(f"{one}/enable", enable, methods=["POST"]),
        Route(f"{one}/disable", disable, methods=["POST"]),
        Route(f"{one}/protection", protection, methods=["POST"]),
        Route(f"{one}/schedule-deletion", schedule_deletion, methods=["POST"]),
        Route(f"{one}/cancel-deletion", cancel_deletion, methods=["POST"]),
        Route(f"{one}/aliases", add_alias, methods=["POST"]),
        Route(f"{one}/aliases/delete", delete_alias, methods=["POST"]),
        Route(f"{one}/tags", add_tag, methods=["POST"]),
        Route(f"{one}/tags/delete", remove_tag, methods=["POST"]),
        Route(f"{one}/policy", save_policy, methods=["POST"]),
    ]
