"""CSRF tokens of console forms and script requests.

A signed-in browser sends its token in the hidden form field ``csrf_token``
or the ``X-CSRF-Token`` header. The token is an HMAC of the session token,
so it needs no storage, changes with every session, and cannot be computed
without the HttpOnly session cookie. Before sign-in (the sign-in form and
the language switch) the token is a random value that the browser also
keeps in a cookie of its own, compared with the submitted one (a double
submit cookie). Every comparison takes constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "new_presession_token",
    "session_csrf_token",
    "tokens_match",
    "valid_token_shape",
]

CSRF_FIELD: Final = "csrf_token"
"""The hidden form field that carries the token."""
CSRF_HEADER: Final = "x-csrf-token"
"""The header that carries the token of a script request."""

_PURPOSE: Final = b"hyok console CSRF token v1"
_TOKEN_BYTES: Final = 32
_MAX_TOKEN_LENGTH: Final = 64
_TOKEN_CHARACTERS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)


def session_csrf_token(session_token: str) -> str:
    """Return the CSRF token that belongs to a session token."""
    digest = hmac.new(session_token.encode("ascii"), _PURPOSE, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_presession_token() -> str:
    """Return a random token for forms shown before sign-in."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def valid_token_shape(value: str) -> bool:
    """Return whether ``value`` has the shape of a CSRF or session token (URL-safe Base64)."""
    return 0 < len(value) <= _MAX_TOKEN_LENGTH and _TOKEN_CHARACTERS.issuperset(value)


def tokens_match(expected: str, submitted: str | None) -> bool:
    """Compare a submitted token with the expected one in constant time."""
    if not submitted or not valid_token_shape(submitted) or not valid_token_shape(expected):
        return False
    return hmac.compare_digest(expected.encode("ascii"), submitted.encode("ascii"))
