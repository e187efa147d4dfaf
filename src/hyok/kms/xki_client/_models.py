"""The ``requestMetadata`` of an XKS request and the results of the XKI proxy operations."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestMetadata:
    """The ``requestMetadata`` object of an XKS request.

    ``principal_arn`` (``awsPrincipalArn`` on the wire) is the ARN of the KMS
    caller. GetKeyMetadata, Encrypt and Decrypt require it, and Encrypt and
    Decrypt also require ``kms_key_arn``. Health checks need neither.
    """

    kms_request_id: str
    kms_operation: str
    principal_arn: str | None = None
    kms_key_arn: str | None = None
    kms_via_service: str | None = None

    def to_wire(self) -> dict[str, str]:
        document = {
            "kmsRequestId": self.kms_request_id,
            "kmsOperation": self.kms_operation,
        }
        optional = {
            "awsPrincipalArn": self.principal_arn,
            "kmsKeyArn": self.kms_key_arn,
            "kmsViaService": self.kms_via_service,
        }
        document.update({name: value for name, value in optional.items() if value})
        return document


@enum.unique
class ExternalKeyStatus(enum.StrEnum):
    """State of a key in the proxy's key manager."""

    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


@dataclass(frozen=True, slots=True)
class KeyMetadataResult:
    """A GetKeyMetadata response. Spec and usages are kept as the proxy spells them."""

    key_spec: str
    key_usage: frozenset[str]
    key_status: ExternalKeyStatus


@dataclass(frozen=True, slots=True)
class EncryptOutput:
    """An Encrypt response, checked for sizes and, when requested, for its integrity value.

    ``ciphertext_metadata`` is empty when the proxy returned none.
    """

    ciphertext: bytes
    iv: bytes
    tag: bytes
    ciphertext_metadata: bytes

    def __repr__(self) -> str:
        return (
            f"EncryptOutput(ciphertext=<{len(self.ciphertext)} bytes>, iv=<{len(self.iv)} bytes>, "
            f"tag=<{len(self.tag)} bytes>, "
            f"ciphertext_metadata=<{len(self.ciphertext_metadata)} bytes>)"
        )


@enum.unique
class EkmHealthStatus(enum.StrEnum):
    """Health of one member of the key manager's fleet."""

    ACTIVE = "ACTIVE"
    DEGRADED = "DEGRADED"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class EkmFleetMember:
    """One ``ekmFleetDetails`` entry."""

    id: str
    model: str
    health_status: EkmHealthStatus


@dataclass(frozen=True, slots=True)
class HealthResult:
    """A GetHealthStatus response."""

    fleet_size: int
    proxy_vendor: str
    proxy_model: str
    ekm_vendor: str
    fleet: tuple[EkmFleetMember, ...]

    @property
    def serving(self) -> bool:
        """Whether at least one fleet member is ACTIVE or DEGRADED."""
        return any(member.health_status is not EkmHealthStatus.UNAVAILABLE for member in self.fleet)
