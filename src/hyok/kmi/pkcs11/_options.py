"""What a fleet member connects to and how it behaves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hyok.common.secrets import Secret

__all__ = ["MemberOptions", "TokenSelector"]


@dataclass(frozen=True, slots=True)
class TokenSelector:
    """Which token a fleet member uses: by token label or by slot ID, with its PIN."""

    label: str | None
    slot: int | None
    pin: Secret
    #: Where the PIN comes from, for error messages, such as "environment variable HSM_PIN".
    pin_source: str

    def describe(self) -> str:
        return f"token {self.label!r}" if self.label is not None else f"slot {self.slot}"


@dataclass(frozen=True, slots=True)
class MemberOptions:
    """Settings shared by the members of one backend."""

    key_attribute: Literal["label", "id"] = "label"
    max_sessions: int = 8
    state_cache_seconds: float = 1.0
    parallel_calls: bool = False
