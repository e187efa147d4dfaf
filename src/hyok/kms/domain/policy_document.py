"""RAM identity policies and KMS key policies: parsing and validation of the JSON document.

Pure code, no I/O. :func:`parse_policy` turns the JSON text into a
:class:`PolicyDocument` or raises :class:`PolicyDocumentError`, whose message
names the bad element by its path (``Statement[2].Principal.RAM[0]``) and
states the fix. A document that parses is valid in full, so the
evaluation never meets a malformed element.

The grammar (element names are case-sensitive)::

    {"Version": "1",
     "Statement": [{"Sid": "...",                       optional
                    "Effect": "Allow" | "Deny",
                    "Principal": {"RAM": ARN or [ARN]},  key policies only, required
                    "Action": pattern or [pattern],      or NotAction (identity policies)
                    "Resource": pattern or [pattern],    or NotResource (identity policies)
                    "Condition": {...}}]}                optional, see policy_conditions

Rules by kind:

- key policy: at most 32,768 bytes of UTF-8. Every action starts with
  ``kms:`` (``kms:*``, ``kms:List*`` …); an action that the KMS does not
  implement is accepted and never matches. ``Resource`` is ``"*"``, the key
  itself. Principals have the forms ``acs:ram::<account ID>:root``,
  ``…:*`` (every identity of the account), ``…:user/<name>`` and
  ``…:role/<name>``.
- identity policy: at most 6,144 characters, the RAM CreatePolicy limit. An
  action is ``*`` or ``<service>:<action>`` with wildcards (actions of other
  services are accepted and never match a KMS request). A resource is ``*``
  or an ARN ``acs:<service>:<region>:<account>:<relative ID>`` with
  wildcards, such as ``acs:kms:*:123456789012:key/*``.
- both: ``Sid`` is optional, 1 to 128 characters from letters, digits, space
  and ``_ / + = . @ -``, and unique in the document. At least one statement.
  No element other than those above, no duplicate JSON key.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from hyok.common.jsontypes import json_type_name
from hyok.kms.domain._checks import shown
from hyok.kms.domain._wildcards import wildcard_match
from hyok.kms.domain.models import MAX_POLICY_BYTES
from hyok.kms.domain.policy_conditions import Condition, ConditionContext, parse_conditions
from hyok.kms.domain.policy_errors import (
    IDENTITY_POLICY_LENGTH_CODE,
    PolicyDocumentError,
    PolicyKind,
)
from hyok.kms.domain.policy_principals import (
    PolicyPrincipal,
    RamIdentity,
    parse_principal,
)

__all__ = [
    "MAX_IDENTITY_POLICY_LENGTH",
    "MAX_KEY_POLICY_BYTES",
    "MAX_SID_LENGTH",
    "Effect",
    "PolicyDocument",
    "Statement",
    "parse_policy",
]

MAX_KEY_POLICY_BYTES: Final = MAX_POLICY_BYTES
"""The maximum size of a key policy: 32,768 bytes of UTF-8, the CreateKey and SetKeyPolicy limit."""
MAX_IDENTITY_POLICY_LENGTH: Final = 6_144
"""The maximum length of an identity policy in characters, the RAM CreatePolicy limit."""
MAX_SID_LENGTH: Final = 128
# NOTE: RAM documents no length limit for one Action or Resource entry, so 1,024 is hyok's.
_MAX_PATTERN_LENGTH: Final = 1_024
_VERSION: Final = "1"
_SID: Final = re.compile(r"[A-Za-z0-9 _/+=.@-]{1,128}")
_KMS_ACTION: Final = re.compile(r"kms:[A-Za-z0-9*?]+")
_ANY_ACTION: Final = re.compile(r"\*|[a-z0-9*?-]+:[A-Za-z0-9*?]+")
_RESOURCE_ARN: Final = re.compile(r"acs:[a-z0-9*?-]+:[a-z0-9*?-]*:[0-9*?]*:[!-~]+")
_TOP_ELEMENTS: Final = ("Version", "Statement")
_STATEMENT_ELEMENTS: Final = {
    PolicyKind.KEY: ("Sid", "Effect", "Principal", "Action", "Resource", "Condition"),
    PolicyKind.IDENTITY: (
        "Sid",
        "Effect",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    ),
}


@enum.unique
class Effect(enum.StrEnum):
    """Whether a statement allows or denies what it matches."""

    ALLOW = "Allow"
    DENY = "Deny"


@dataclass(frozen=True, kw_only=True)
class Statement:
    """One parsed statement. Patterns keep the policy's spelling.

    ``actions_negated`` and ``resources_negated`` mark ``NotAction`` and
    ``NotResource``: the statement then matches what the patterns do not.
    ``principals`` is empty in identity policies.
    """

    effect: Effect
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    actions_negated: bool = False
    resources_negated: bool = False
    principals: tuple[PolicyPrincipal, ...] = ()
    conditions: tuple[Condition, ...] = ()
    sid: str | None = None

    def matches_action(self, action: str) -> bool:
        """Return whether the statement covers ``action`` (``kms:Encrypt``), ignoring case."""
        found = any(wildcard_match(pattern, action, ignore_case=True) for pattern in self.actions)
        return found != self.actions_negated

    def matches_resource(self, arn: str) -> bool:
        """Return whether the statement covers the resource ``arn``, comparing case-sensitively."""
        found = any(wildcard_match(pattern, arn) for pattern in self.resources)
        return found != self.resources_negated

    def names(self, caller: RamIdentity) -> bool:
        """Return whether one of the statement's principals names ``caller``."""
        return any(principal.names(caller) for principal in self.principals)

    def conditions_hold(self, context: ConditionContext) -> bool:
        """Return whether every condition of the statement holds for the request."""
        return all(condition.holds(context) for condition in self.conditions)


@dataclass(frozen=True)
class PolicyDocument:
    """A valid policy document of one kind, and the JSON text it was parsed from."""

    kind: PolicyKind
    statements: tuple[Statement, ...]
    text: str


def parse_policy(text: str, kind: PolicyKind) -> PolicyDocument:
    """Parse and check a policy document of ``kind`` in full.

    Raises PolicyDocumentError with the code of the kind
    (:attr:`PolicyKind.error_code`, or ``InvalidParameter.PolicyDocument.Length``
    for an identity policy that is too long) and the path of the first bad element.
    """
    if not isinstance(text, str):
        raise TypeError(f"the policy must be a str, not {type(text).__name__}")
    code = kind.error_code
    _check_size(text, kind)
    document = _decode(text, kind)
    if not isinstance(document, dict):
        raise PolicyDocumentError(
            f"the {kind.label} is a JSON {json_type_name(document)}, not an object: write "
            '{"Version": "1", "Statement": [...]}',
            code=code,
        )
    _check_elements(document, _TOP_ELEMENTS, "", code, where="the document")
    version = document.get("Version")
    if version != _VERSION:
        problem = "is missing" if "Version" not in document else f"is {shown(version)}"
        raise PolicyDocumentError(
            f'Version {problem}: write "Version": "1" (the string "1", the only version)',
            code=code,
            path="Version",
        )
    statements = document.get("Statement")
    if not isinstance(statements, list) or not statements:
        problem = "is missing" if "Statement" not in document else "is not a non-empty list"
        raise PolicyDocumentError(
            f"Statement {problem}: write a JSON list of at least one statement object",
            code=code,
            path="Statement",
        )
    parsed = tuple(
        _parse_statement(item, kind, f"Statement[{index}]") for index, item in enumerate(statements)
    )
    _check_unique_sids(parsed, code)
    return PolicyDocument(kind, parsed, text)


# --- Document level ---------------------------------------------------------------


def _check_size(text: str, kind: PolicyKind) -> None:
    if kind is PolicyKind.KEY:
        size = len(text.encode("utf-8"))
        if size > MAX_KEY_POLICY_BYTES:
            raise PolicyDocumentError(
                f"the key policy has {size} bytes in UTF-8: the maximum is "
                f"{MAX_KEY_POLICY_BYTES}, so remove statements or principals",
                code=kind.error_code,
            )
    elif len(text) > MAX_IDENTITY_POLICY_LENGTH:
        raise PolicyDocumentError(
            f"the identity policy has {len(text)} characters: the maximum is "
            f"{MAX_IDENTITY_POLICY_LENGTH}, so split it into several policies",
            code=IDENTITY_POLICY_LENGTH_CODE,
        )


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise _DuplicateKeyError(name)
        result[name] = value
    return result


class _DuplicateKeyError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _decode(text: str, kind: PolicyKind) -> object:
    code = kind.error_code
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except _DuplicateKeyError as exc:
        raise PolicyDocumentError(
            f"the {kind.label} repeats the JSON key {shown(exc.name)} in one object: keep one",
            code=code,
        ) from None
    except json.JSONDecodeError as exc:
        raise PolicyDocumentError(
            f"the {kind.label} is not valid JSON ({exc.msg} at line {exc.lineno} column "
            f"{exc.colno}): fix the JSON syntax",
            code=code,
        ) from None
    except RecursionError:
        raise PolicyDocumentError(
            f"the {kind.label} nests JSON too deeply: a policy needs at most 5 levels",
            code=code,
        ) from None
    except ValueError:
        # NaN, Infinity, or an integer with more digits than Python converts.
        raise PolicyDocumentError(
            f"the {kind.label} contains a number that is not valid JSON, such as NaN or "
            "Infinity: write the value as a string",
            code=code,
        ) from None


def _check_elements(
    element: dict[str, Any], allowed: Sequence[str], path: str, code: str, *, where: str
) -> None:
    for name in element:
        if name in allowed:
            continue
        element_path = f"{path}.{name}" if path else name
        hint = next((known for known in allowed if known.lower() == name.lower()), None)
        fix = (
            f"write {hint}, because element names are case-sensitive"
            if hint is not None
            else f"use only {', '.join(allowed)}"
        )
        raise PolicyDocumentError(
            f"{element_path}: {where} has the unknown element {shown(name)}: {fix}",
            code=code,
            path=element_path,
        )


def _check_unique_sids(statements: tuple[Statement, ...], code: str) -> None:
    first: dict[str, int] = {}
    for index, statement in enumerate(statements):
        if statement.sid is None:
            continue
        if statement.sid in first:
            path = f"Statement[{index}].Sid"
            raise PolicyDocumentError(
                f"{path}: the Sid {shown(statement.sid)} is also the Sid of "
                f"Statement[{first[statement.sid]}]: give each statement its own Sid",
                code=code,
                path=path,
            )
        first[statement.sid] = index


# --- Statements -------------------------------------------------------------------


def _parse_statement(item: object, kind: PolicyKind, path: str) -> Statement:
    code = kind.error_code
    if not isinstance(item, dict):
        raise PolicyDocumentError(
            f"{path} is a JSON {json_type_name(item)}, not an object: write "
            '{"Effect": ..., "Action": ..., "Resource": ...}',
            code=code,
            path=path,
        )
    allowed = _STATEMENT_ELEMENTS[kind]
    if kind is PolicyKind.KEY:
        for name in ("NotAction", "NotResource", "NotPrincipal"):
            if name in item:
                raise PolicyDocumentError(
                    f"{path}.{name}: key policies do not support {name}: write "
                    f"{name.removeprefix('Not')} with the values it applies to",
                    code=code,
                    path=f"{path}.{name}",
                )
    else:
        for name in ("Principal", "NotPrincipal"):
            if name in item:
                raise PolicyDocumentError(
                    f"{path}.{name}: identity policies have no {name}, because they apply to "
                    "the user or role they are attached to: remove it, or put the statement "
                    "in a key policy",
                    code=code,
                    path=f"{path}.{name}",
                )
    _check_elements(item, allowed, path, code, where="the statement")

    sid = _parse_sid(item, path, code)
    effect = _parse_effect(item, path, code)
    actions, actions_negated = _parse_either(item, "Action", path, kind, _parse_action)
    resources, resources_negated = _parse_either(item, "Resource", path, kind, _parse_resource)
    principals: tuple[PolicyPrincipal, ...] = ()
    if kind is PolicyKind.KEY:
        principals = _parse_principals(item, path, code)
    conditions: tuple[Condition, ...] = ()
    if "Condition" in item:
        conditions = parse_conditions(item["Condition"], f"{path}.Condition", code)
    return Statement(
        effect=effect,
        actions=actions,
        resources=resources,
        actions_negated=actions_negated,
        resources_negated=resources_negated,
        principals=principals,
        conditions=conditions,
        sid=sid,
    )


def _parse_sid(item: dict[str, Any], path: str, code: str) -> str | None:
    if "Sid" not in item:
        return None
    sid = item["Sid"]
    if not isinstance(sid, str) or _SID.fullmatch(sid) is None:
        raise PolicyDocumentError(
            f"{path}.Sid: {shown(sid)} is not a valid Sid: use 1 to {MAX_SID_LENGTH} "
            "characters from letters, digits, space and _ / + = . @ -, or leave Sid out",
            code=code,
            path=f"{path}.Sid",
        )
    return sid


def _parse_effect(item: dict[str, Any], path: str, code: str) -> Effect:
    if "Effect" not in item:
        raise PolicyDocumentError(
            f'{path}.Effect is missing: add "Effect": "Allow" or "Effect": "Deny"',
            code=code,
            path=f"{path}.Effect",
        )
    value = item["Effect"]
    if isinstance(value, str):
        for effect in Effect:
            if value == effect.value:
                return effect
    raise PolicyDocumentError(
        f'{path}.Effect: {shown(value)} is not an effect: write "Allow" or "Deny" (case-sensitive)',
        code=code,
        path=f"{path}.Effect",
    )


def _parse_either(
    item: dict[str, Any],
    name: str,
    path: str,
    kind: PolicyKind,
    parse_one: Callable[[str, str, PolicyKind], str],
) -> tuple[tuple[str, ...], bool]:
    """Parse ``name`` or ``Not<name>``, exactly one of which the statement must have."""
    code = kind.error_code
    negated_name = f"Not{name}"
    if name in item and negated_name in item:
        raise PolicyDocumentError(
            f"{path} has both {name} and {negated_name}: keep one of them",
            code=code,
            path=f"{path}.{negated_name}",
        )
    if name not in item and negated_name not in item:
        alternative = f" or {negated_name}" if kind is PolicyKind.IDENTITY else ""
        raise PolicyDocumentError(
            f"{path}.{name} is missing: add {name}{alternative} with a string or a list of strings",
            code=code,
            path=f"{path}.{name}",
        )
    used = name if name in item else negated_name
    values = _string_list(item[used], f"{path}.{used}", code)
    parsed = tuple(parse_one(value, element_path, kind) for value, element_path in values)
    return parsed, used == negated_name


def _string_list(value: object, path: str, code: str) -> list[tuple[str, str]]:
    """Return each string of a string-or-list element with its path."""
    if isinstance(value, str):
        return [(value, path)]
    if isinstance(value, list) and value:
        result: list[tuple[str, str]] = []
        for index, entry in enumerate(value):
            if not isinstance(entry, str):
                raise PolicyDocumentError(
                    f"{path}[{index}] is a JSON {json_type_name(entry)}: write a string",
                    code=code,
                    path=f"{path}[{index}]",
                )
            result.append((entry, f"{path}[{index}]"))
        return result
    raise PolicyDocumentError(
        f"{path} must be a string or a non-empty list of strings, not "
        f"{'an empty list' if value == [] else 'a JSON ' + json_type_name(value)}",
        code=code,
        path=path,
    )


def _parse_action(value: str, path: str, kind: PolicyKind) -> str:
    code = kind.error_code
    _check_pattern_length(value, path, code)
    if kind is PolicyKind.KEY:
        if _KMS_ACTION.fullmatch(value) is None:
            raise PolicyDocumentError(
                f"{path}: {shown(value)} is not a KMS action: write kms:<action>, such as "
                "kms:Encrypt, kms:List* or kms:*, with letters, digits, * and ?",
                code=code,
                path=path,
            )
    elif _ANY_ACTION.fullmatch(value) is None:
        raise PolicyDocumentError(
            f"{path}: {shown(value)} is not an action: write * or <service>:<action>, such as "
            "kms:Encrypt or kms:Describe*, with letters, digits, * and ? in the action",
            code=code,
            path=path,
        )
    return value


def _parse_resource(value: str, path: str, kind: PolicyKind) -> str:
    code = kind.error_code
    _check_pattern_length(value, path, code)
    if kind is PolicyKind.KEY:
        if value != "*":
            raise PolicyDocumentError(
                f'{path}: {shown(value)} is not allowed in a key policy: write "*", which '
                "means the key the policy is attached to",
                code=code,
                path=path,
            )
    elif value != "*" and _RESOURCE_ARN.fullmatch(value) is None:
        raise PolicyDocumentError(
            f"{path}: {shown(value)} is not a resource: write * or an ARN "
            "acs:<service>:<region>:<account ID>:<resource>, such as "
            "acs:kms:cn-hangzhou:123456789012:key/* or acs:kms:*:*:alias/app-*",
            code=code,
            path=path,
        )
    return value


def _check_pattern_length(value: str, path: str, code: str) -> None:
    if len(value) > _MAX_PATTERN_LENGTH:
        raise PolicyDocumentError(
            f"{path} has {len(value)} characters: the maximum is {_MAX_PATTERN_LENGTH}",
            code=code,
            path=path,
        )


def _parse_principals(item: dict[str, Any], path: str, code: str) -> tuple[PolicyPrincipal, ...]:
    principal_path = f"{path}.Principal"
    if "Principal" not in item:
        raise PolicyDocumentError(
            f"{principal_path} is missing: add "
            '"Principal": {"RAM": ["acs:ram::<account ID>:*"]} naming who the statement applies to',
            code=code,
            path=principal_path,
        )
    principal = item["Principal"]
    if not isinstance(principal, dict) or set(principal) != {"RAM"}:
        raise PolicyDocumentError(
            f"{principal_path} must be a JSON object with the single element RAM, such as "
            '{"RAM": ["acs:ram::123456789012:user/alice"]}',
            code=code,
            path=principal_path,
        )
    entries = _string_list(principal["RAM"], f"{principal_path}.RAM", code)
    return tuple(parse_principal(arn, code=code, path=entry_path) for arn, entry_path in entries)
