"""Key-manager (KMI) backends behind one interface."""

from hyok.kmi.base import (
    Capabilities,
    EncryptResult,
    FleetMember,
    HealthStatus,
    KeyInfo,
    KeyManager,
    KeySpec,
    KeyState,
    KeyUsage,
)

__all__ = [
    "Capabilities",
    "EncryptResult",
    "FleetMember",
    "HealthStatus",
    "KeyInfo",
    "KeyManager",
    "KeySpec",
    "KeyState",
    "KeyUsage",
]
