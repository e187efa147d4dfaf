"""The ``Condition`` element of RAM and key policies: operators, condition keys, values, matching.

Pure code, no I/O: the request values that conditions test, including the
current time, arrive in a :class:`ConditionContext`.

A condition block maps operators to ``{condition key: value or list of values}``.
The block holds when every operator entry holds, and an entry holds when
every key in it holds. For a key with several values:

- a positive operator (``StringEquals``, ``IpAddress``, ``DateLessThan`` …)
  holds when the request value matches at least one of them;
- a negated operator (``StringNotEquals``, ``StringNotLike``,
  ``StringNotEqualsIgnoreCase``, ``NumericNotEquals``, ``DateNotEquals``,
  ``NotIpAddress``) holds when the request value matches none of them.

A key that the request does not carry (such as ``acs:SourceVpc``, which hyok
never sets, or a tag the key does not have) makes a positive operator false
and a negated operator true. A request value that cannot be compared, such
as a tag value that is not a number under ``NumericEquals``, counts as not
carried.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from hyok.kms.domain._checks import shown
from hyok.kms.domain._wildcards import wildcard_match
from hyok.kms.domain.policy_errors import PolicyDocumentError

__all__ = [
    "MAX_TAG_KEY_LENGTH",
    "Condition",
    "ConditionContext",
    "ConditionOperator",
    "ConditionValue",
    "IpAddress",
    "IpNetwork",
    "parse_conditions",
    "parse_source_ip",
]

MAX_TAG_KEY_LENGTH: Final = 128
_TAG_KEY_PREFIX: Final = "kms:tag/"
# The tag key rule of TagResource: letters, digits and / \ _ - . + = : @ (and space for keys
# created in the console), up to 128 characters.
_TAG_KEY: Final = re.compile(r"[A-Za-z0-9/\\_\-.+=:@ ]{1,128}")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ConditionValue = str | Decimal | datetime | bool | IpNetwork
"""One parsed value of a condition: its type follows the operator."""


def parse_source_ip(text: str) -> IpAddress | None:
    """Return the request's source address for ``acs:SourceIp``, or None when it is not an address.

    A server that does not report the peer gives an empty string, which
    matches no ``IpAddress`` condition.
    """
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class _ValueType(enum.Enum):
    STRING = "string"
    NUMBER = "number"
    DATE = "date"
    BOOLEAN = "boolean"
    IP = "IP address"


@enum.unique
class ConditionOperator(enum.StrEnum):
    """A RAM condition operator."""

    STRING_EQUALS = "StringEquals"
    STRING_NOT_EQUALS = "StringNotEquals"
    STRING_EQUALS_IGNORE_CASE = "StringEqualsIgnoreCase"
    STRING_NOT_EQUALS_IGNORE_CASE = "StringNotEqualsIgnoreCase"
    STRING_LIKE = "StringLike"
    STRING_NOT_LIKE = "StringNotLike"
    NUMERIC_EQUALS = "NumericEquals"
    NUMERIC_NOT_EQUALS = "NumericNotEquals"
    NUMERIC_LESS_THAN = "NumericLessThan"
    NUMERIC_LESS_THAN_EQUALS = "NumericLessThanEquals"
    NUMERIC_GREATER_THAN = "NumericGreaterThan"
    NUMERIC_GREATER_THAN_EQUALS = "NumericGreaterThanEquals"
    DATE_EQUALS = "DateEquals"
    DATE_NOT_EQUALS = "DateNotEquals"
    DATE_LESS_THAN = "DateLessThan"
    DATE_LESS_THAN_EQUALS = "DateLessThanEquals"
    DATE_GREATER_THAN = "DateGreaterThan"
    DATE_GREATER_THAN_EQUALS = "DateGreaterThanEquals"
    BOOL = "Bool"
    IP_ADDRESS = "IpAddress"
    NOT_IP_ADDRESS = "NotIpAddress"

    @property
    def negated(self) -> bool:
        """Whether the operator holds when the request value matches none of the values."""
        return self in _NEGATED


_NEGATED: Final = frozenset(
    {
        ConditionOperator.STRING_NOT_EQUALS,
        ConditionOperator.STRING_NOT_EQUALS_IGNORE_CASE,
        ConditionOperator.STRING_NOT_LIKE,
        ConditionOperator.NUMERIC_NOT_EQUALS,
        ConditionOperator.DATE_NOT_EQUALS,
        ConditionOperator.NOT_IP_ADDRESS,
    }
)


def _value_type(operator: ConditionOperator) -> _ValueType:
    name = operator.value
    if name.startswith("String"):
        return _ValueType.STRING
    if name.startswith("Numeric"):
        return _ValueType.NUMBER
    if name.startswith("Date"):
        return _ValueType.DATE
    if operator is ConditionOperator.BOOL:
        return _ValueType.BOOLEAN
    return _ValueType.IP


# Condition keys by lower-case name: the canonical spelling and the value types they accept.
_FIXED_KEYS: Final = {
    "acs:sourceip": ("acs:SourceIp", frozenset({_ValueType.IP})),
    "acs:vpcsourceip": ("acs:VpcSourceIp", frozenset({_ValueType.IP})),
    "acs:currenttime": ("acs:CurrentTime", frozenset({_ValueType.DATE})),
    "acs:securetransport": ("acs:SecureTransport", frozenset({_ValueType.BOOLEAN})),
    "acs:mfapresent": ("acs:MFAPresent", frozenset({_ValueType.BOOLEAN})),
    "acs:sourcevpc": ("acs:SourceVpc", frozenset({_ValueType.STRING})),
    "kms:encryptionalgorithm": ("kms:EncryptionAlgorithm", frozenset({_ValueType.STRING})),
}
_TAG_TYPES: Final = frozenset({_ValueType.STRING, _ValueType.NUMBER})
_SUPPORTED_KEYS: Final = ", ".join(
    [name for name, _ in _FIXED_KEYS.values()] + ["kms:tag/<tag key>"]
)
_MAX_CONDITION_VALUES: Final = 256


@dataclass(frozen=True, kw_only=True)
class ConditionContext:
    """The request values that conditions test.

    ``current_time`` must be timezone-aware. ``source_ip`` is None when the
    client address is unknown, and ``tags`` are the tags of the key that the
    request acts on (empty for other resources). hyok never sets
    ``acs:SourceVpc``, ``acs:VpcSourceIp``, ``acs:MFAPresent`` or
    ``kms:EncryptionAlgorithm``, so conditions on them see a missing key.
    """

    current_time: datetime
    secure_transport: bool
    source_ip: IpAddress | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.current_time.utcoffset() is None:
            raise ValueError("current_time must be a timezone-aware datetime")

    def value(self, key: str) -> str | datetime | bool | IpAddress | None:
        """Return the request value of a canonical condition key, or None when it has none."""
        if key.startswith(_TAG_KEY_PREFIX):
            return self.tags.get(key[len(_TAG_KEY_PREFIX) :])
        match key:
            case "acs:SourceIp":
                return self.source_ip
            case "acs:CurrentTime":
                return self.current_time
            case "acs:SecureTransport":
                return self.secure_transport
            case _:
                return None


@dataclass(frozen=True)
class Condition:
    """One key of one operator entry: ``{"<operator>": {"<key>": <values>}}``.

    ``key`` has its canonical spelling (``acs:SourceIp``, ``kms:tag/<tag key>``).
    ``values`` are parsed for the operator: str for String operators, Decimal
    for Numeric, an aware datetime for Date, bool for Bool and an IP network
    for IpAddress and NotIpAddress.
    """

    operator: ConditionOperator
    key: str
    values: tuple[ConditionValue, ...]

    def holds(self, context: ConditionContext) -> bool:
        """Return whether the request in ``context`` satisfies this condition."""
        actual = _comparable(self.operator, context.value(self.key))
        if actual is None:
            return self.operator.negated
        matched = any(_compare(self.operator, actual, expected) for expected in self.values)
        return not matched if self.operator.negated else matched


def _comparable(
    operator: ConditionOperator, actual: str | datetime | bool | IpAddress | None
) -> str | Decimal | datetime | bool | IpAddress | None:
    """Convert a request value to the operator's type, or return None when it cannot be."""
    if actual is None:
        return None
    if _value_type(operator) is _ValueType.NUMBER and isinstance(actual, str):
        try:
            number = Decimal(actual)
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return actual


def _compare(
    operator: ConditionOperator,
    actual: str | Decimal | datetime | bool | IpAddress,
    expected: ConditionValue,
) -> bool:
    """Compare one request value with one condition value, as the positive form of the operator."""
    match operator:
        case ConditionOperator.STRING_EQUALS | ConditionOperator.STRING_NOT_EQUALS:
            return actual == expected
        case (
            ConditionOperator.STRING_EQUALS_IGNORE_CASE
            | ConditionOperator.STRING_NOT_EQUALS_IGNORE_CASE
        ):
            return (
                isinstance(actual, str)
                and isinstance(expected, str)
                and actual.casefold() == expected.casefold()
            )
        case ConditionOperator.STRING_LIKE | ConditionOperator.STRING_NOT_LIKE:
            return (
                isinstance(actual, str)
                and isinstance(expected, str)
                and wildcard_match(expected, actual)
            )
        case ConditionOperator.IP_ADDRESS | ConditionOperator.NOT_IP_ADDRESS:
            return (
                isinstance(actual, ipaddress.IPv4Address | ipaddress.IPv6Address)
                and isinstance(expected, ipaddress.IPv4Network | ipaddress.IPv6Network)
                and actual.version == expected.version
                and actual in expected
            )
        case ConditionOperator.BOOL:
            return actual is expected
    return _compare_ordered(operator, actual, expected)


def _compare_ordered(
    operator: ConditionOperator,
    actual: str | Decimal | datetime | bool | IpAddress,
    expected: ConditionValue,
) -> bool:
    if isinstance(actual, Decimal) and isinstance(expected, Decimal):
        return _ORDER_TESTS[_order_name(operator)](actual.compare(expected))
    if isinstance(actual, datetime) and isinstance(expected, datetime):
        difference = (actual - expected).total_seconds()
        return _ORDER_TESTS[_order_name(operator)]((difference > 0) - (difference < 0))
    return False


def _order_name(operator: ConditionOperator) -> str:
    return operator.value.removeprefix("Numeric").removeprefix("Date")


# Each test takes the sign of (request value - condition value).
_ORDER_TESTS: Final[Mapping[str, Callable[[Any], bool]]] = {
    "Equals": lambda sign: sign == 0,
    "NotEquals": lambda sign: sign == 0,
    "LessThan": lambda sign: sign < 0,
    "LessThanEquals": lambda sign: sign <= 0,
    "GreaterThan": lambda sign: sign > 0,
    "GreaterThanEquals": lambda sign: sign >= 0,
}


# --- Parsing ----------------------------------------------------------------------


def parse_conditions(block: object, path: str, code: str) -> tuple[Condition, ...]:
    """Parse and check the ``Condition`` element at ``path``.

    Raises PolicyDocumentError with ``code`` and the path of the bad entry.
    """
    if not isinstance(block, dict) or not block:
        raise PolicyDocumentError(
            f"{path} must be a non-empty JSON object such as "
            '{"IpAddress": {"acs:SourceIp": ["192.0.2.0/24"]}}: map each operator to its '
            "condition keys",
            code=code,
            path=path,
        )
    conditions: list[Condition] = []
    for operator_name, entry in block.items():
        operator = _parse_operator(operator_name, f"{path}.{operator_name}", code)
        entry_path = f"{path}.{operator_name}"
        if not isinstance(entry, dict) or not entry:
            raise PolicyDocumentError(
                f"{entry_path} must be a non-empty JSON object that maps condition keys to "
                'values, such as {"acs:SecureTransport": "true"}',
                code=code,
                path=entry_path,
            )
        seen: dict[str, str] = {}
        for key_name, raw_values in entry.items():
            key_path = f"{entry_path}.{key_name}"
            key = _parse_key(key_name, operator, key_path, code)
            if key.lower() in seen:
                raise PolicyDocumentError(
                    f"{key_path} repeats the condition key {seen[key.lower()]} under "
                    f"{operator_name}: condition keys are case-insensitive, so merge the values "
                    "into one list",
                    code=code,
                    path=key_path,
                )
            seen[key.lower()] = key_name
            values = _parse_values(raw_values, operator, key_path, code)
            conditions.append(Condition(operator, key, values))
    return tuple(conditions)


def _parse_operator(name: str, path: str, code: str) -> ConditionOperator:
    try:
        return ConditionOperator(name)
    except ValueError:
        pass
    hint = next((op.value for op in ConditionOperator if op.value.lower() == name.lower()), None)
    fix = (
        f"write {hint}"
        if hint is not None
        else "use one of " + ", ".join(op.value for op in ConditionOperator)
    )
    raise PolicyDocumentError(
        f"{path}: {shown(name)} is not a condition operator: {fix}", code=code, path=path
    )


def _parse_key(name: str, operator: ConditionOperator, path: str, code: str) -> str:
    lowered = name.lower()
    if lowered.startswith(_TAG_KEY_PREFIX):
        tag_key = name[len(_TAG_KEY_PREFIX) :]
        if _TAG_KEY.fullmatch(tag_key) is None:
            raise PolicyDocumentError(
                f"{path}: the tag key in {shown(name)} is invalid: write kms:tag/<tag key> "
                f"with a tag key of 1 to {MAX_TAG_KEY_LENGTH} letters, digits, spaces and "
                "/ \\ _ - . + = : @",
                code=code,
                path=path,
            )
        canonical = _TAG_KEY_PREFIX + tag_key
        accepted = _TAG_TYPES
    elif lowered in _FIXED_KEYS:
        canonical, accepted = _FIXED_KEYS[lowered]
    else:
        raise PolicyDocumentError(
            f"{path}: {shown(name)} is not a supported condition key: use one of {_SUPPORTED_KEYS}",
            code=code,
            path=path,
        )
    value_type = _value_type(operator)
    if value_type not in accepted:
        kinds = " or ".join(sorted(t.value for t in accepted))
        raise PolicyDocumentError(
            f"{path}: {operator.value} compares {value_type.value} values, but {canonical} "
            f"holds a {kinds} value: use a {kinds} operator",
            code=code,
            path=path,
        )
    return canonical


def _parse_values(
    raw: object, operator: ConditionOperator, path: str, code: str
) -> tuple[ConditionValue, ...]:
    if isinstance(raw, list):
        if not raw:
            raise PolicyDocumentError(
                f"{path} is an empty list: give at least one value", code=code, path=path
            )
        if len(raw) > _MAX_CONDITION_VALUES:
            raise PolicyDocumentError(
                f"{path} has {len(raw)} values: the maximum is {_MAX_CONDITION_VALUES}, so "
                "split the condition into several statements",
                code=code,
                path=path,
            )
        if operator is ConditionOperator.BOOL and len(raw) > 1:
            raise PolicyDocumentError(
                f"{path} has {len(raw)} values, but Bool takes one: give true or false",
                code=code,
                path=path,
            )
        return tuple(
            _parse_value(item, operator, f"{path}[{index}]", code) for index, item in enumerate(raw)
        )
    return (_parse_value(raw, operator, path, code),)


def _parse_value(raw: object, operator: ConditionOperator, path: str, code: str) -> ConditionValue:
    match _value_type(operator):
        case _ValueType.STRING:
            if isinstance(raw, str):
                return raw
            rule = "give a JSON string"
        case _ValueType.NUMBER:
            number = _parse_number(raw)
            if number is not None:
                return number
            rule = 'give a finite number, such as 10 or "10.5"'
        case _ValueType.DATE:
            date = _parse_date(raw)
            if date is not None:
                return date
            rule = (
                "give an ISO 8601 date and time with a UTC offset, such as "
                '"2026-01-31T17:00:00Z" or "2026-01-31T17:00:00+08:00"'
            )
        case _ValueType.BOOLEAN:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "false"):
                return raw.lower() == "true"
            rule = "give true or false"
        case _ValueType.IP:
            network = _parse_network(raw)
            if network is not None:
                return network
            rule = 'give an IPv4 or IPv6 address or CIDR block, such as "192.0.2.0/24"'
    raise PolicyDocumentError(
        f"{path}: {shown(raw)} is not a valid value for {operator.value}: {rule}",
        code=code,
        path=path,
    )


def _parse_number(raw: object) -> Decimal | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        return Decimal(repr(raw)) if math.isfinite(raw) else None
    if isinstance(raw, str) and len(raw) <= 64:
        try:
            number = Decimal(raw.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _parse_date(raw: object) -> datetime | None:
    if not isinstance(raw, str) or len(raw) > 64:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if value.utcoffset() is None or "T" not in raw:
        return None
    return value


def _parse_network(raw: object) -> IpNetwork | None:
    if not isinstance(raw, str) or len(raw) > 64:
        return None
    try:
        return ipaddress.ip_network(raw, strict=False)
    except ValueError:
        return None
