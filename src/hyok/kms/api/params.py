"""Typed access to the parameters of one KMS OpenAPI request.

The SDK sends every parameter as a string (see :class:`Params` for the forms).
Each method returns one parameter as a Python value, or raises
:class:`~hyok.kms.api.errors.MissingParameterError` or
:class:`~hyok.kms.api.errors.InvalidParameterError` with a message that names
the parameter, shows the bad value (quoted and cut to 64 characters) and gives
the allowed values. Values that may hold secrets or plaintext (the Base64
parameters) and JSON documents are never shown, only their size or the
position of the JSON syntax error.

Parameters that no method asks for are ignored, because the SDK also sends
system parameters such as ``Action`` or ``SignatureNonce``.
"""

from __future__ import annotations

import base64 as _base64
import binascii
import json
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from hyok.common.jsontypes import json_type_name
from hyok.kms.api.errors import (
    DuplicateTagKeyError,
    InvalidParameterError,
    InvalidTagKeyError,
    InvalidTagValueError,
    MissingParameterError,
    shown_value,
)

__all__ = ["MAX_TAG_LENGTH", "Params", "check_tag"]

MAX_TAG_LENGTH: Final = 128
_TAG_TEXT: Final = re.compile(r"[A-Za-z0-9 /\\_\-.+=:@]*")
_RESERVED_TAG_PREFIXES: Final = ("aliyun", "acs:")
_INTEGER: Final = re.compile(r"-?[0-9]{1,18}")
# A list index is 1-based with no leading zero. Six digits bound the work on hostile input.
_INDEX: Final = r"([1-9][0-9]{0,5})"


class Params:
    """The decoded parameters of one request, with typed, checked getters.

    Wire forms: integers in decimal, booleans as ``True``/``False``/``true``/
    ``false`` in any case, lists as ``Name.1``, ``Name.2`` …, lists of
    objects as ``Tag.1.Key``, ``Tag.1.Value`` …, and JSON documents as strings.

    Example::

        params = Params(caller.parameters)
        page_size = params.int_in_range("PageSize", 1, 100, default=10)
        dry_run = params.boolean("DryRun", default=False)
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._values = dict(mapping)

    def __repr__(self) -> str:
        # Values may hold plaintext, so only the names are shown.
        return f"Params(names={sorted(self._values)!r})"

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def names(self) -> list[str]:
        """Return the names of the parameters the request sent."""
        return list(self._values)

    def required_str(self, name: str, *, max_length: int, min_length: int = 1) -> str:
        """Return the string parameter ``name``, of ``min_length`` to ``max_length`` characters."""
        value = self._values.get(name)
        if value is None:
            raise MissingParameterError(name)
        return _check_length(name, value, min_length, max_length)

    def optional_str(
        self, name: str, *, max_length: int, min_length: int = 0, default: str | None = None
    ) -> str | None:
        """Return the string parameter ``name``, or ``default`` when it is absent."""
        value = self._values.get(name)
        if value is None:
            return default
        return _check_length(name, value, min_length, max_length)

    def int_in_range(self, name: str, low: int, high: int, default: int | None = None) -> int:
        """Return the decimal integer parameter ``name``, from ``low`` to ``high`` inclusive.

        An absent parameter returns ``default``, or raises MissingParameterError
        when ``default`` is None.
        """
        value = self._values.get(name)
        if value is None:
            if default is None:
                raise MissingParameterError(name)
            return default
        if not _INTEGER.fullmatch(value) or not low <= int(value) <= high:
            raise _invalid(name, value, f"it must be an integer from {low} to {high}")
        return int(value)

    def boolean(self, name: str, default: bool | None = None) -> bool:
        """Return the boolean parameter ``name``: ``true`` or ``false`` in any letter case."""
        value = self._values.get(name)
        if value is None:
            if default is None:
                raise MissingParameterError(name)
            return default
        match value.lower():
            case "true":
                return True
            case "false":
                return False
            case _:
                raise _invalid(name, value, "it must be true or false")

    def enum(self, name: str, allowed: Collection[str], default: str | None = None) -> str:
        """Return the parameter ``name``, which must equal one of ``allowed`` (case-sensitive)."""
        value = self._values.get(name)
        if value is None:
            if default is None:
                raise MissingParameterError(name)
            return default
        if value not in allowed:
            choices = ", ".join(sorted(allowed))
            raise _invalid(name, value, f"it must be one of: {choices}")
        return value

    def json_object(self, name: str, *, max_bytes: int = 32_768) -> dict[str, Any] | None:
        """Parse the parameter ``name`` as a JSON object, or return None when it is absent.

        ``max_bytes`` limits the UTF-8 size of the JSON text. Duplicate member
        names and the non-standard NaN and Infinity are invalid.
        """
        document = self._json(name, max_bytes)
        if document is None:
            return None
        if not isinstance(document, dict):
            raise InvalidParameterError(
                f"The parameter {name} must be a JSON object ({{...}}), "
                f"not a JSON {json_type_name(document)}.",
                parameter=name,
            )
        return document

    def json_array(self, name: str, *, max_bytes: int = 32_768) -> list[Any] | None:
        """Parse the parameter ``name`` as a JSON array, or return None when it is absent."""
        document = self._json(name, max_bytes)
        if document is None:
            return None
        if not isinstance(document, list):
            raise InvalidParameterError(
                f"The parameter {name} must be a JSON array ([...]), "
                f"not a JSON {json_type_name(document)}.",
                parameter=name,
            )
        return document

    def repeat_list(
        self, prefix: str, *, max_items: int, max_length: int = 1024, required: bool = False
    ) -> list[str]:
        """Return the list sent as ``prefix.1``, ``prefix.2`` … in index order.

        Indexes start at 1 with no gaps and no leading zeros, and there are at
        most ``max_items``. Each value has 1 to ``max_length`` characters. An
        absent list is empty, or raises MissingParameterError when ``required``.
        """
        pattern = re.compile(re.escape(prefix) + r"\.([0-9]+)")
        by_index: dict[int, str] = {}
        for key, value in self._values.items():
            found = pattern.fullmatch(key)
            if found:
                index = _index(key, found.group(1), prefix, max_items)
                by_index[index] = _check_length(key, value, 1, max_length)
        _check_contiguous(prefix, by_index, required)
        return [by_index[index] for index in sorted(by_index)]

    def object_list(
        self,
        prefix: str,
        fields: Collection[str],
        *,
        max_items: int,
        required_fields: Collection[str] = (),
        max_length: int = 1024,
        required: bool = False,
    ) -> list[dict[str, str]]:
        """Return the list of objects sent as ``prefix.1.Field``, ``prefix.2.Field`` ….

        Each object is a dict of the fields present for that index. A field not
        in ``fields`` is invalid, and one in ``required_fields`` must be present
        in every object. Indexes follow the rules of :meth:`repeat_list`.
        """
        pattern = re.compile(re.escape(prefix) + r"\.([0-9]+)\.(.+)")
        by_index: dict[int, dict[str, str]] = {}
        for key, value in self._values.items():
            found = pattern.fullmatch(key)
            if not found:
                continue
            index = _index(key, found.group(1), prefix, max_items)
            field = found.group(2)
            if field not in fields:
                allowed = ", ".join(sorted(fields))
                raise InvalidParameterError(
                    f"The parameter {shown_value(key)} is not valid: the fields of "
                    f"{prefix}.N are {allowed}.",
                    parameter=key,
                )
            by_index.setdefault(index, {})[field] = _check_length(key, value, 0, max_length)
        _check_contiguous(prefix, by_index, required)
        for index, item in sorted(by_index.items()):
            for field in sorted(required_fields):
                if field not in item:
                    raise MissingParameterError(f"{prefix}.{index}.{field}")
        return [by_index[index] for index in sorted(by_index)]

    def tag_list(self, prefix: str = "Tag", *, max_items: int = 20) -> list[tuple[str, str]]:
        """Return the tags sent as ``Tag.N.Key`` and ``Tag.N.Value`` as (key, value) pairs.

        Each tag is checked by :func:`check_tag`, and a missing ``Value`` is an
        empty value. Two tags with the same key raise DuplicateTagKeyError.
        """
        items = self.object_list(
            prefix, ("Key", "Value"), max_items=max_items, required_fields=("Key",)
        )
        tags: list[tuple[str, str]] = []
        for index, item in enumerate(items, start=1):
            key, value = item["Key"], item.get("Value", "")
            check_tag(
                key,
                value,
                key_name=f"{prefix}.{index}.Key",
                value_name=f"{prefix}.{index}.Value",
            )
            tags.append((key, value))
        _check_unique_keys(prefix, tags)
        return tags

    def tags_json(self, name: str, *, max_items: int = 20) -> list[tuple[str, str]] | None:
        """Parse the JSON string ``[{"TagKey": .., "TagValue": ..}]`` into (key, value) pairs.

        Returns None when the parameter is absent. Each tag is checked by
        :func:`check_tag`, and two tags with the same key raise DuplicateTagKeyError.
        """
        items = self.json_array(name, max_bytes=max_items * 2 * (MAX_TAG_LENGTH * 6 + 32) + 64)
        if items is None:
            return None
        if len(items) > max_items:
            raise InvalidParameterError(
                f"The parameter {name} has {len(items)} tags, above the maximum of {max_items}. "
                "Send fewer tags.",
                parameter=name,
            )
        tags: list[tuple[str, str]] = []
        for position, item in enumerate(items, start=1):
            if (
                not isinstance(item, dict)
                or set(item) != {"TagKey", "TagValue"}
                or not isinstance(item["TagKey"], str)
                or not isinstance(item["TagValue"], str)
            ):
                raise InvalidParameterError(
                    f"Tag {position} of the parameter {name} is invalid: each tag must be "
                    'a JSON object {"TagKey": "...", "TagValue": "..."} with string values.',
                    parameter=name,
                )
            check_tag(item["TagKey"], item["TagValue"], key_name=name, value_name=name)
            tags.append((item["TagKey"], item["TagValue"]))
        _check_unique_keys(name, tags)
        return tags

    def base64(self, name: str, *, max_bytes: int, min_bytes: int = 1) -> bytes:
        """Decode the required standard Base64 parameter ``name`` (with padding, canonical form).

        The decoded size must be from ``min_bytes`` to ``max_bytes``. The value
        is never shown in a message, because it may be plaintext or a key.
        """
        value = self._values.get(name)
        if value is None:
            raise MissingParameterError(name)
        # Checking the length first bounds the work that a hostile value can cause.
        max_text = 4 * ((max_bytes + 2) // 3)
        if len(value) > max_text:
            raise InvalidParameterError(
                f"The parameter {name} has {len(value)} Base64 characters, which decode to "
                f"more than the maximum of {max_bytes} bytes. Send less data.",
                parameter=name,
            )
        try:
            data = _base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            data = None
        if data is None or _base64.b64encode(data) != value.encode("ascii"):
            raise InvalidParameterError(
                f"The parameter {name} is not valid Base64. Encode it with the standard "
                "alphabet (A-Z a-z 0-9 + /) and = padding, with no spaces or line breaks.",
                parameter=name,
            )
        if len(data) < min_bytes:
            raise InvalidParameterError(
                f"The parameter {name} decodes to {len(data)} bytes, below the minimum of "
                f"{min_bytes}.",
                parameter=name,
            )
        return data

    def _json(self, name: str, max_bytes: int) -> object | None:
        value = self._values.get(name)
        if value is None:
            return None
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise InvalidParameterError(
                f"The parameter {name} is {size} bytes long, above the maximum of {max_bytes} "
                "bytes. Shorten it.",
                parameter=name,
            )
        try:
            document: object = json.loads(
                value, object_pairs_hook=_unique_members, parse_constant=_reject_constant
            )
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(
                f"The parameter {name} is not valid JSON: {exc.msg} at line {exc.lineno} "
                f"column {exc.colno}.",
                parameter=name,
            ) from None
        except RecursionError:
            raise InvalidParameterError(
                f"The parameter {name} is not valid JSON: it is nested too deeply.",
                parameter=name,
            ) from None
        except _JsonRejected as exc:
            raise InvalidParameterError(
                f"The parameter {name} is not valid JSON: {exc.reason}.", parameter=name
            ) from None
        return document


def check_tag(key: str, value: str, *, key_name: str, value_name: str) -> None:
    """Check a tag key and value, raising InvalidTagKeyError or InvalidTagValueError.

    A key has 1 to 128 characters and a value 0 to 128, from
    ``A-Z a-z 0-9``, space and ``/ \\ _ - . + = : @``. A key must not start with ``aliyun`` or
    ``acs:``, which are reserved. ``key_name`` and ``value_name`` name the
    parameters in the messages.
    """
    allowed = "letters, digits, space and / \\ _ - . + = : @"
    if not 1 <= len(key) <= MAX_TAG_LENGTH or not _TAG_TEXT.fullmatch(key):
        raise InvalidTagKeyError(
            f"The tag key {shown_value(key)} in {key_name} is invalid: it must have 1 to "
            f"{MAX_TAG_LENGTH} characters from {allowed}.",
            parameter=key_name,
        )
    if key.lower().startswith(_RESERVED_TAG_PREFIXES):
        raise InvalidTagKeyError(
            f"The tag key {shown_value(key)} in {key_name} is invalid: keys starting with "
            "aliyun or acs: are reserved. Choose another key.",
            parameter=key_name,
        )
    # NOTE: the KMS docs give the charset and maximum of tag values but no
    # minimum, so an empty value is accepted.
    if len(value) > MAX_TAG_LENGTH or not _TAG_TEXT.fullmatch(value):
        raise InvalidTagValueError(
            f"The tag value {shown_value(value)} in {value_name} is invalid: it must have 0 "
            f"to {MAX_TAG_LENGTH} characters from {allowed}.",
            parameter=value_name,
        )


def _check_length(name: str, value: str, min_length: int, max_length: int) -> str:
    if len(value) > max_length:
        raise InvalidParameterError(
            f"The parameter {name} has {len(value)} characters, above the maximum of "
            f"{max_length}. Shorten it.",
            parameter=name,
        )
    if len(value) < min_length:
        if not value:
            raise InvalidParameterError(
                f"The parameter {name} is empty. Set it to a value of {min_length} to "
                f"{max_length} characters.",
                parameter=name,
            )
        raise _invalid(name, value, f"it must have {min_length} to {max_length} characters")
    return value


def _invalid(name: str, value: str, rule: str) -> InvalidParameterError:
    return InvalidParameterError(
        f"The parameter {name} has the invalid value {shown_value(value)}: {rule}.",
        parameter=name,
    )


def _index(key: str, digits: str, prefix: str, max_items: int) -> int:
    if not re.fullmatch(_INDEX, digits):
        raise InvalidParameterError(
            f"The parameter {shown_value(key)} has an invalid index: {prefix}.N counts "
            "from 1, with no leading zeros.",
            parameter=key,
        )
    index = int(digits)
    if index > max_items:
        raise InvalidParameterError(
            f"The parameter {key} is above the maximum of {max_items} items in {prefix}.N. "
            "Send fewer items.",
            parameter=key,
        )
    return index


def _check_contiguous(prefix: str, by_index: Mapping[int, object], required: bool) -> None:
    if not by_index:
        if required:
            raise MissingParameterError(f"{prefix}.1")
        return
    expected = range(1, len(by_index) + 1)
    if sorted(by_index) != list(expected):
        missing = min(set(expected) - set(by_index))
        raise InvalidParameterError(
            f"The list {prefix}.N has no item {prefix}.{missing}: number the items 1, 2, 3 "
            "... with no gaps.",
            parameter=f"{prefix}.{missing}",
        )


def _check_unique_keys(name: str, tags: Sequence[tuple[str, str]]) -> None:
    seen: set[str] = set()
    for key, _value in tags:
        if key in seen:
            raise DuplicateTagKeyError(
                f"The tag key {shown_value(key)} appears more than once in {name}. "
                "Send each tag key once."
            )
        seen.add(key)


class _JsonRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _JsonRejected(f"the member name {shown_value(key)} appears more than once")
        document[key] = value
    return document


def _reject_constant(name: str) -> object:
    raise _JsonRejected(f"{name} is not a JSON number")

