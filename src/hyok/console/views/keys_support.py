"""Helpers of the Keys pages: the input rules, the role lists of a policy, the audit events.

The rules that the pages' script checks as the user types (tags, alias,
cross-account ARNs) come from the domain's own constants and patterns, and
reach the script as JSON in a data attribute. The server checks again
through the KMS actions, so the script is a convenience that cannot drift
from the server.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from hyok.common.errors import RequestError
from hyok.console.web import N_, View
from hyok.kms.api import params as api_params
from hyok.kms.domain import aliases as alias_rules
from hyok.kms.domain import policy_principals
from hyok.kms.domain.key_policy import KeyPolicyRoles, build_role_policy, roles_from_policy
from hyok.kms.domain.policy_document import parse_policy
from hyok.kms.domain.policy_errors import PolicyDocumentError, PolicyKind
from hyok.kms.store.repositories import MAX_TAGS_PER_KEY

__all__ = [
    "OUTCOME_LABELS",
    "ROLE_FIELDS",
    "RoleForm",
    "alias_problem",
    "input_rules",
    "is_console_read",
    "key_audit_events",
    "role_form_from_policy",
    "role_form_from_submission",
    "role_problems",
    "rule_messages",
    "tag_problems",
]

MAX_AUDIT_EVENTS: Final = 50
# The trail is read backwards from its end. Events older than this many bytes are not shown.
_MAX_AUDIT_BYTES: Final = 8 * 1024 * 1024
_AUDIT_BLOCK: Final = 64 * 1024
# The access key ID that the audit events of console calls carry (see KmsApp.call_as).
CONSOLE_ACCESS_KEY_ID: Final = "console"
_READ_ACTION_PREFIXES: Final = ("Describe", "Get", "List")
MAX_ARNS_PER_ROLE: Final = 50
_MAX_ARN_TEXT: Final = MAX_ARNS_PER_ROLE * 200

ROLE_FIELDS: Final = ("administrators", "users", "cross_account_users")
"""The form fields of the three role lists, named as in KeyPolicyRoles."""
_ROLE_PATH: Final = re.compile(r"(administrators|users|cross_account_users)\[\d+\]")

STATE_LABELS: Final = {
    "Enabled": N_("Enabled"),
    "Disabled": N_("Disabled"),
    "PendingDeletion": N_("Pending deletion"),
    "PendingImport": N_("Pending import"),
}
OUTCOME_LABELS: Final = {
    "success": N_("Succeeded"),
    "failed": N_("Failed"),
    "denied": N_("Denied"),
    "unauthenticated": N_("Not authenticated"),
}
EXTERNAL_STATE_LABELS: Final = {
    "ENABLED": N_("Enabled"),
    "DISABLED": N_("Disabled"),
    "PENDING_DELETION": N_("Pending deletion"),
    "NotFound": N_("Not found"),
    "Unknown": N_("Unknown"),
}


def _js_pattern(pattern: str) -> str:
    """Turn a Python regular expression into the same expression for JavaScript."""
    return pattern.replace("(?P<", "(?<")


def input_rules(view: View, account_id: str) -> str:
    """Return the JSON rules and messages of the keys script, in the page's language."""
    tag_pattern = api_params._TAG_TEXT.pattern
    rules = {
        "tag": {
            "maxLength": api_params.MAX_TAG_LENGTH,
            "pattern": tag_pattern,
            "reservedPrefixes": list(api_params._RESERVED_TAG_PREFIXES),
            "maxTags": MAX_TAGS_PER_KEY,
        },
        "alias": {
            "prefix": alias_rules.ALIAS_PREFIX,
            "maxLength": alias_rules.MAX_ALIAS_NAME_LENGTH,
            "pattern": alias_rules._NAME_AFTER_PREFIX.pattern,
            "reservedPrefix": alias_rules.RESERVED_ALIAS_PREFIX,
        },
        "principal": {
            "pattern": _js_pattern(policy_principals._PRINCIPAL.pattern),
            "account": account_id,
        },
        "messages": rule_messages(view),
    }
    return json.dumps(rules, ensure_ascii=False)


def rule_messages(view: View) -> dict[str, str]:
    """Return the messages of the input rules, in the page's language.

    The keys script shows them as the user types, and the server shows the
    same ones when the script is off (see :func:`check_create_inputs`).
    """
    return {
        "tagKeyEmpty": view.gettext(
            "Enter a tag key of 1 to %(max)s characters.", max=api_params.MAX_TAG_LENGTH
        ),
        "tagTooLong": view.gettext(
            "Use at most %(max)s characters.", max=api_params.MAX_TAG_LENGTH
        ),
        "tagCharacters": view.gettext(
            "Use only letters, digits, spaces and / \\ _ - . + = : @, at most %(max)s characters.",
            max=api_params.MAX_TAG_LENGTH,
        ),
        "tagReserved": view.gettext("Tag keys must not start with aliyun or acs:."),
        "tagDuplicate": view.gettext("Each tag key may appear once."),
        "tagLimit": view.gettext("A key has at most %(max)s tags.", max=MAX_TAGS_PER_KEY),
        "aliasInvalid": view.gettext(
            "Use letters, digits, _, - and / after alias/, at most %(max)s characters in all.",
            max=alias_rules.MAX_ALIAS_NAME_LENGTH,
        ),
        "aliasReserved": view.gettext("Aliases starting with alias/acs are reserved."),
        "arnInvalid": view.gettext(
            "Not a RAM user or role ARN: %(arn)s. Write acs:ram::account ID:user/name or "
            "acs:ram::account ID:role/name, with an account ID of 12 to 16 digits and a name "
            "of 1 to 64 characters.",
            arn="{arn}",
        ),
        "arnOwnAccount": view.gettext(
            "The ARN %(arn)s belongs to this account: choose it under Administrators or Users.",
            arn="{arn}",
        ),
        "checking": view.gettext("Checking the external key with the XKI proxy…"),
        "checkFailed": view.gettext(
            "The external key could not be checked: %(reason)s", reason="{reason}"
        ),
    }


def _tag_problem(messages: dict[str, str], text: str, *, is_key: bool) -> str:
    if is_key and not text:
        return messages["tagKeyEmpty"]
    if len(text) > api_params.MAX_TAG_LENGTH:
        return messages["tagTooLong"]
    if not api_params._TAG_TEXT.fullmatch(text):
        return messages["tagCharacters"]
    if is_key and text.lower().startswith(api_params._RESERVED_TAG_PREFIXES):
        return messages["tagReserved"]
    return ""


def alias_problem(messages: dict[str, str], value: str) -> str:
    """Return why the alias (with or without alias/) is invalid, or an empty string."""
    if not value:
        return ""
    prefix = alias_rules.ALIAS_PREFIX
    full = value if value.startswith(prefix) else prefix + value
    rest = full[len(prefix) :]
    too_long = len(full) > alias_rules.MAX_ALIAS_NAME_LENGTH
    if too_long or not alias_rules._NAME_AFTER_PREFIX.fullmatch(rest):
        return messages["aliasInvalid"]
    if full[: len(alias_rules.RESERVED_ALIAS_PREFIX)].lower() == alias_rules.RESERVED_ALIAS_PREFIX:
        return messages["aliasReserved"]
    return ""


def tag_problems(messages: dict[str, str], tags: list[tuple[str, str]]) -> dict[str, str]:
    """Check the tag rows as the script does; errors by field ``tag-<row from 1>`` and ``tags``."""
    errors: dict[str, str] = {}
    seen: set[str] = set()
    filled = 0
    for row, (key, value) in enumerate(tags, start=1):
        if not key and not value:
            continue
        filled += 1
        problem = _tag_problem(messages, key, is_key=True) or _tag_problem(
            messages, value, is_key=False
        )
        if not problem and key in seen:
            problem = messages["tagDuplicate"]
        seen.add(key)
        if problem:
            errors[f"tag-{row}"] = problem
    if filled > MAX_TAGS_PER_KEY:
        errors["tags"] = messages["tagLimit"]
    return errors


def role_problems(messages: dict[str, str], account_id: str, form: RoleForm) -> dict[str, str]:
    """Check the typed ARNs of each role list; the first problem of a list, by its field."""
    errors: dict[str, str] = {}
    for name in ROLE_FIELDS:
        for arn in [*form.chosen[name], *_lines(form.other[name])]:
            match = policy_principals._PRINCIPAL.fullmatch(arn)
            if match is None or not (match["user"] or match["role"]):
                errors[name] = messages["arnInvalid"].replace("{arn}", arn)
                break
            if name == "cross_account_users" and match["account"] == account_id:
                errors[name] = messages["arnOwnAccount"].replace("{arn}", arn)
                break
    return errors


# --- The role lists of a custom policy ------------------------------------------------


@dataclass
class RoleForm:
    """The role lists as the form shows them: chosen ARNs of listed users, and other ARNs."""

    chosen: dict[str, list[str]] = field(default_factory=lambda: {n: [] for n in ROLE_FIELDS})
    other: dict[str, str] = field(default_factory=lambda: {n: "" for n in ROLE_FIELDS})

    def roles(self) -> KeyPolicyRoles:
        lists = {name: [*self.chosen[name], *_lines(self.other[name])] for name in ROLE_FIELDS}
        return KeyPolicyRoles(
            tuple(lists["administrators"]),
            tuple(lists["users"]),
            tuple(lists["cross_account_users"]),
        )


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


async def role_form_from_submission(view: View) -> RoleForm:
    """Read the three role lists of the submitted form (checkboxes and text areas)."""
    form = await view.form()
    result = RoleForm()
    for name in ROLE_FIELDS:
        result.chosen[name] = [
            value
            for value in form.getlist(name)[:MAX_ARNS_PER_ROLE]
            if isinstance(value, str) and len(value) <= 200
        ]
        other = form.get(f"{name}_other")
        result.other[name] = other[:_MAX_ARN_TEXT] if isinstance(other, str) else ""
    return result


def role_form_from_policy(
    policy_text: str, owner_account: str, listed_arns: Iterable[str]
) -> RoleForm | None:
    """Split a policy's role lists into listed users and other ARNs; None for another shape."""
    try:
        roles = roles_from_policy(parse_policy(policy_text, PolicyKind.KEY), owner_account)
    except PolicyDocumentError:
        return None
    if roles is None:
        return None
    listed = set(listed_arns)
    result = RoleForm()
    for name in ROLE_FIELDS:
        arns: tuple[str, ...] = getattr(roles, name)
        result.chosen[name] = [arn for arn in arns if arn in listed]
        result.other[name] = "\n".join(arn for arn in arns if arn not in listed)
    return result


def build_policy(owner_account: str, form: RoleForm) -> tuple[str | None, dict[str, str]]:
    """Return the policy of the role lists, or None with the error by its form field."""
    try:
        return build_role_policy(owner_account, form.roles()), {}
    except PolicyDocumentError as exc:
        match = _ROLE_PATH.match(exc.path or "")
        message = exc.message
        if exc.path and message.startswith(exc.path + ": "):
            # The path (such as cross_account_users[0]) names the list, not a form field.
            message = message[len(exc.path) + 2 :]
        name = match.group(1) if match else "administrators"
        return None, {name: message[:1].upper() + message[1:]}


async def ram_user_arns(view: View) -> list[tuple[str, str]]:
    """Return (ARN, name) of the account's RAM users and then its roles, for the role pickers.

    The lists come from RAM ListUsers and ListRoles as the signed-in
    principal, so a RAM user sees them only when an identity policy allows
    ``ram:ListUsers`` or ``ram:ListRoles``; otherwise that list is empty and
    ARNs are typed. Each list shows its first 100 entries, and further ones
    are typed as ARNs too.
    """
    from hyok.kms.api.app import RAM_API_VERSION

    account = view.principal.account_id
    choices: list[tuple[str, str]] = []
    for action, wrapper, item, kind, name_field in (
        ("ListUsers", "Users", "User", "user", "UserName"),
        ("ListRoles", "Roles", "Role", "role", "RoleName"),
    ):
        try:
            listed = await view.console.kms.call_as(
                view.principal,
                action,
                {"MaxItems": "100"},
                request_id=_request_id(),
                source_ip=view.source_ip,
                secure_transport=view.request.url.scheme == "https",
                version=RAM_API_VERSION,
            )
        except RequestError:
            # The pickers are optional: ARNs can be typed.
            continue
        choices += [
            (f"acs:ram::{account}:{kind}/{entry[name_field]}", str(entry[name_field]))
            for entry in listed[wrapper][item]
        ]
    return choices


def _request_id() -> str:
    import uuid

    return str(uuid.uuid4()).upper()


# --- The key's audit events -----------------------------------------------------------


def is_console_read(event: dict[str, Any]) -> bool:
    """Whether the event is a read-only action that a console page ran (such as DescribeKey).

    Each view of the key's page runs five of them; they stay in the trail,
    and the page hides them by default so that they do not push out the real events.
    """
    action = str(event.get("action", ""))
    return event.get("access_key_id") == CONSOLE_ACCESS_KEY_ID and action.startswith(
        _READ_ACTION_PREFIXES
    )


def key_audit_events(
    path: Path | None, names: Iterable[str], *, include_reads: bool = False
) -> list[dict[str, Any]]:
    """Return the newest audit events (at most 50) that name the key, newest first.

    ``names`` are the key ID and its alias names, as a call may name either.
    Without ``include_reads``, read-only actions run through the console are left out.
    Reads the trail backwards from its end, at most 8 MiB (blocking).
    """
    if path is None:
        return []
    requested = set(names)
    keep = None if include_reads else (lambda event: not is_console_read(event))
    found: list[dict[str, Any]] = []
    try:
        with path.open("rb") as stream:
            position = stream.seek(0, os.SEEK_END)
            floor = max(0, position - _MAX_AUDIT_BYTES)
            pending = b""
            while position > floor and len(found) < MAX_AUDIT_EVENTS:
                start = max(floor, position - _AUDIT_BLOCK)
                stream.seek(start)
                lines = (stream.read(position - start) + pending).split(b"\n")
                position = start
                # The first piece may be the end of a line that starts in the block before.
                pending = lines.pop(0)
                for line in reversed(lines):
                    if len(found) >= MAX_AUDIT_EVENTS:
                        break
                    _collect(line, requested, found, keep)
            if floor == 0 and len(found) < MAX_AUDIT_EVENTS:
                _collect(pending, requested, found, keep)
    except FileNotFoundError:
        return []
    return found


def _collect(
    line: bytes,
    requested: set[str],
    found: list[dict[str, Any]],
    keep: Callable[[dict[str, Any]], bool] | None,
) -> None:
    if not line.strip():
        return
    try:
        event = json.loads(line)
    except ValueError:
        return
    if not isinstance(event, dict):
        return
    key_ids = event.get("key_ids")
    if (
        isinstance(key_ids, list)
        and requested.intersection(str(item) for item in key_ids)
        and (keep is None or keep(event))
    ):
        found.append(event)
