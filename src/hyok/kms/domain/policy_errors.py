"""The two kinds of access policy, and the error that an invalid policy document raises.

Pure code, no I/O.
"""

from __future__ import annotations

import enum
from typing import Final

from hyok.common.errors import ValidationError

__all__ = [
    "IDENTITY_POLICY_CODE",
    "IDENTITY_POLICY_LENGTH_CODE",
    "KEY_POLICY_CODE",
    "PolicyDocumentError",
    "PolicyKind",
]

KEY_POLICY_CODE: Final = "InvalidParameter"
"""The KMS error code of an invalid key policy (CreateKey ``Policy``, SetKeyPolicy ``Policy``)."""
IDENTITY_POLICY_CODE: Final = "MalformedPolicyDocument"
"""The RAM error code of an invalid identity policy document (CreatePolicy ``PolicyDocument``)."""
IDENTITY_POLICY_LENGTH_CODE: Final = "InvalidParameter.PolicyDocument.Length"
"""The RAM error code of an identity policy document above the length limit."""


@enum.unique
class PolicyKind(enum.StrEnum):
    """The kind of a policy document, which decides its elements, limits and error codes."""

    IDENTITY = "identity"
    """A RAM identity policy, attached to a RAM user or role. It has no ``Principal``."""
    KEY = "key"
    """A KMS key policy, attached to one key. Every statement names its principals."""

    @property
    def error_code(self) -> str:
        """The error code for a document of this kind that breaks a rule other than the size."""
        return KEY_POLICY_CODE if self is PolicyKind.KEY else IDENTITY_POLICY_CODE

    @property
    def label(self) -> str:
        """The name of this kind in messages: ``key policy`` or ``identity policy``."""
        return f"{self.value} policy"


class PolicyDocumentError(ValidationError):
    """An invalid policy document, or an invalid input to a policy builder.

    ``code`` is the Alibaba Cloud error code to return, which depends on the
    kind of policy (:attr:`PolicyKind.error_code`). ``path`` locates the bad
    element in the document, such as ``Statement[2].Principal.RAM[0]``
    (indexes count from 0), or is empty when the whole document is at fault.
    The message names the element and states the fix. It quotes at most
    64 characters of a bad value and never a secret, because policies contain none.
    """

    http_status = 400

    def __init__(self, message: str, *, code: str, path: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.path = path
