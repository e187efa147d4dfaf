"""The trust policy of a RAM role (``AssumeRolePolicyDocument``): parsing and the trust decision.

Pure code, no I/O. The grammar::

    {"Version": "1",
     "Statement": [{"Sid": "...",                                   optional
                    "Effect": "Allow" | "Deny",
                    "Action": "sts:AssumeRole" or [...],
                    "Principal": {"RAM": ARN or [ARN],
                                  "Service": name or [name],
                                  "Federated": ARN or [ARN]},       at least one
                    "Condition": {...}}]}                           optional

``RAM`` principals have the key policy forms (``acs:ram::<account>:root``,
``…:*``, ``…:user/<name>``, ``…:role/<name>``). A trust policy that names an
account (``root`` or ``*``) trusts every identity of that account, whose own
identity policies must then allow ``sts:AssumeRole`` on the role. ``Service``
and ``Federated`` principals are accepted and never match, because hyok has
neither cloud services nor identity providers that assume roles.

An invalid document raises :class:`PolicyDocumentError` with the RAM code
``MalformedPolicyDocument``, or ``InvalidParameter.AssumeRolePolicyDocument.Length``
above 2,048 characters.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from hyok.common.jsontypes import json_type_name
from hyok.kms.domain._checks import shown
from hyok.kms.domain._wildcards import wildcard_match
from hyok.kms.domain.policy_conditions import Condition, ConditionContext, parse_conditions
from hyok.kms.domain.policy_errors import IDENTITY_POLICY_CODE, PolicyDocumentError
from hyok.kms.domain.policy_principals import (
    CallerKind,
    PolicyPrincipal,
    PrincipalKind,
    RamIdentity,
    parse_principal,
)

__all__ = [
    "ASSUME_ROLE_ACTION",
    "MAX_TRUST_POLICY_LENGTH",
    "TRUST_POLICY_LENGTH_CODE",
    "TrustPolicy",
    "TrustStatement",
    "parse_trust_policy",
]

ASSUME_ROLE_ACTION: Final = "sts:AssumeRole"
MAX_TRUST_POLICY_LENGTH: Final = 2_048
"""The maximum length of a trust policy in characters."""
TRUST_POLICY_LENGTH_CODE: Final = "InvalidParameter.AssumeRolePolicyDocument.Length"
_CODE: Final = IDENTITY_POLICY_CODE
_ACTION: Final = re.compile(r"sts:[A-Za-z*?]+")
_SID: Final = re.compile(r"[A-Za-z0-9 _/+=.@-]{1,128}")
_STATEMENT_ELEMENTS: Final = ("Sid", "Effect", "Action", "Principal", "Condition")
_PRINCIPAL_ELEMENTS: Final = ("RAM", "Service", "Federated")
_MAX_ENTRY_LENGTH: Final = 256


@dataclass(frozen=True, kw_only=True)
class TrustStatement:
    """One statement of a trust policy. ``principals`` holds its ``RAM`` principals only."""

    allow: bool
    actions: tuple[str, ...]
    principals: tuple[PolicyPrincipal, ...]
    conditions: tuple[Condition, ...] = ()

    def applies_to(self, caller: RamIdentity, context: ConditionContext) -> bool:
        """Return whether the statement covers ``caller`` assuming the role in ``context``."""
        if not any(
            wildcard_match(pattern, ASSUME_ROLE_ACTION, ignore_case=True)
            for pattern in self.actions
        ):
            return False
        if not any(_trusts(principal, caller) for principal in self.principals):
            return False
        return all(condition.holds(context) for condition in self.conditions)


@dataclass(frozen=True)
class TrustPolicy:
    """A valid trust policy and the JSON text it was parsed from."""

    statements: tuple[TrustStatement, ...]
    text: str

    def trusts(self, caller: RamIdentity, context: ConditionContext) -> bool:
        """Return whether ``caller`` may assume the role: an Allow applies and no Deny does."""
        applying = [s for s in self.statements if s.applies_to(caller, context)]
        return any(s.allow for s in applying) and not any(not s.allow for s in applying)


def _trusts(principal: PolicyPrincipal, caller: RamIdentity) -> bool:
    if principal.account_id != caller.account_id:
        return False
    if principal.kind in (PrincipalKind.ROOT, PrincipalKind.ANY_IDENTITY):
        return True
    if principal.kind is PrincipalKind.USER:
        return caller.kind is CallerKind.USER and caller.name == principal.name
    return caller.kind is CallerKind.ROLE and caller.name == principal.name


def _fail(message: str, path: str = "") -> PolicyDocumentError:
    return PolicyDocumentError(message, code=_CODE, path=path)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise _fail(
                f"the trust policy repeats the JSON key {shown(name)} in one object: keep one"
            )
        result[name] = value
    return result


def parse_trust_policy(text: str) -> TrustPolicy:
    """Parse and check a trust policy in full, raising PolicyDocumentError at the first fault."""
    if not isinstance(text, str):
        raise TypeError(f"the trust policy must be a str, not {type(text).__name__}")
    if len(text) > MAX_TRUST_POLICY_LENGTH:
        raise PolicyDocumentError(
            f"the trust policy has {len(text)} characters: the maximum is "
            f"{MAX_TRUST_POLICY_LENGTH}",
            code=TRUST_POLICY_LENGTH_CODE,
        )
    try:
        document = json.loads(text, object_pairs_hook=_reject_duplicates)
    except (RecursionError, ValueError):
        raise _fail("the trust policy is not valid JSON: fix the JSON syntax") from None
    if not isinstance(document, dict):
        raise _fail(
            f"the trust policy is a JSON {json_type_name(document)}, not an object: write "
            '{"Version": "1", "Statement": [...]}'
        )
    _check_elements(document, ("Version", "Statement"), "", "the document")
    if document.get("Version") != "1":
        raise _fail('Version must be the string "1"', "Version")
    statements = document.get("Statement")
    if not isinstance(statements, list) or not statements:
        raise _fail("Statement must be a non-empty list of statement objects", "Statement")
    parsed = tuple(
        _parse_statement(item, f"Statement[{index}]") for index, item in enumerate(statements)
    )
    return TrustPolicy(parsed, text)


def _check_elements(
    element: dict[str, Any], allowed: tuple[str, ...], path: str, where: str
) -> None:
    for name in element:
        if name not in allowed:
            element_path = f"{path}.{name}" if path else name
            raise _fail(
                f"{element_path}: {where} has the unknown element {shown(name)}: use only "
                f"{', '.join(allowed)} (names are case-sensitive)",
                element_path,
            )


def _parse_statement(item: object, path: str) -> TrustStatement:
    if not isinstance(item, dict):
        raise _fail(f"{path} is a JSON {json_type_name(item)}, not an object", path)
    _check_elements(item, _STATEMENT_ELEMENTS, path, "the statement")
    if "Sid" in item and (not isinstance(item["Sid"], str) or not _SID.fullmatch(item["Sid"])):
        raise _fail(
            f"{path}.Sid: {shown(item['Sid'])} is not a valid Sid: use 1 to 128 letters, digits, "
            "space and _ / + = . @ -",
            f"{path}.Sid",
        )
    effect = item.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise _fail(
            f'{path}.Effect: {shown(effect)} is not an effect: write "Allow" or "Deny"',
            f"{path}.Effect",
        )
    actions = tuple(value for value, _ in _strings(item, "Action", path))
    for action in actions:
        if not _ACTION.fullmatch(action):
            raise _fail(
                f"{path}.Action: {shown(action)} is not an STS action: write sts:AssumeRole",
                f"{path}.Action",
            )
    principal = item.get("Principal")
    principal_path = f"{path}.Principal"
    if not isinstance(principal, dict) or not principal:
        raise _fail(
            f'{principal_path} must be an object such as {{"RAM": ["acs:ram::123456789012:root"]}}',
            principal_path,
        )
    _check_elements(principal, _PRINCIPAL_ELEMENTS, principal_path, "the principal")
    ram: list[PolicyPrincipal] = []
    for name in _PRINCIPAL_ELEMENTS:
        if name not in principal:
            continue
        entries = _strings(principal, name, principal_path)
        if name == "RAM":
            ram.extend(
                parse_principal(arn, code=_CODE, path=entry_path) for arn, entry_path in entries
            )
    conditions: tuple[Condition, ...] = ()
    if "Condition" in item:
        conditions = parse_conditions(item["Condition"], f"{path}.Condition", _CODE)
    return TrustStatement(
        allow=effect == "Allow", actions=actions, principals=tuple(ram), conditions=conditions
    )


def _strings(element: dict[str, Any], name: str, path: str) -> list[tuple[str, str]]:
    """Return the strings of the string-or-list ``element[name]`` with their paths."""
    value_path = f"{path}.{name}"
    if name not in element:
        raise _fail(f"{value_path} is missing", value_path)
    value = element[name]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        raise _fail(f"{value_path} must be a string or a non-empty list of strings", value_path)
    result: list[tuple[str, str]] = []
    for index, entry in enumerate(values):
        entry_path = value_path if isinstance(value, str) else f"{value_path}[{index}]"
        if not isinstance(entry, str) or not 1 <= len(entry) <= _MAX_ENTRY_LENGTH:
            raise _fail(
                f"{entry_path} must be a string of 1 to {_MAX_ENTRY_LENGTH} characters", entry_path
            )
        result.append((entry, entry_path))
    return result
