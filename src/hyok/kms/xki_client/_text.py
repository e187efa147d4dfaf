"""Printable, length-limited text of values for error messages and logs."""

from __future__ import annotations


def _shown(value: object, limit: int = 80) -> str:
    """Quote a value for an error message: printable ASCII, cut to ``limit`` characters."""
    text = str(value)
    cut = text[:limit] + ("..." if len(text) > limit else "")
    return repr("".join(c if " " <= c <= "~" else "?" for c in cut))


def _printable(text: str, limit: int) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])
