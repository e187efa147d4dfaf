"""Names of JSON value types, for error messages about a value of the wrong type."""

from __future__ import annotations

__all__ = ["json_type_name"]


def json_type_name(value: object) -> str:
    """Return the JSON type of a value decoded by :mod:`json`: object, array, string and so on."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
