"""One translated sentence per KMS error code, shown above the API's own message.

The KMS API writes its error messages in English, with the values and the
fix, so they stay as they are. In a console language other than English,
an error box first states in that language what the code means, then gives
the code and the API's message. Codes not listed here show only the code
and the message.
"""

from __future__ import annotations

from typing import Final

from hyok.console.web import N_

__all__ = ["ERROR_SUMMARIES"]

ERROR_SUMMARIES: Final[dict[str, str]] = {
    "Forbidden.NoPermission": N_(
        "You are not allowed to do this. The key policy or an identity policy must allow it."
    ),
    "Forbidden.KeyNotFound": N_("The key was not found."),
    "Forbidden.AliasNotFound": N_("The alias was not found."),
    "Forbidden.ResourceNotFound": N_("The resource was not found."),
    "Forbidden.DKMSInstanceNotFound": N_("The instance was not found or is not shared with you."),
    "Forbidden.DKMSInstanceStateInvalid": N_("The instance is not connected to its XKI proxy."),
    "InvalidParameter": N_("A value is not valid."),
    "InvalidParameter.TagKey": N_("A tag key is not valid."),
    "InvalidParameter.TagValue": N_("A tag value is not valid."),
    "MissingParameter": N_("A required value is missing."),
    "Duplicate.TagKey": N_("A tag key appears twice."),
    "AliasAlreadyExists": N_("The alias exists already."),
    "Rejected.ShareQuotaExceedLimit": N_("The instance's access management quota is used up."),
    "Rejected.LimitExceeded": N_("A limit of the account or the key is reached."),
    "Rejected.Disabled": N_("The key is disabled."),
    "Rejected.PendingDeletion": N_("The key is scheduled for deletion."),
    "Rejected.Unavailable": N_("The external key or its key manager is unavailable."),
    "Rejected.StateModifiedFailed": N_("The key cannot change to that state."),
    "Rejected.Throttling": N_("Too many requests. Wait a moment and try again."),
    "DeleteConflict.KmsInstanceShare.Key": N_(
        "The account still has keys in the shared instance."
    ),
    "InternalFailure": N_(
        "The KMS failed. Try again, and report the request ID if the failure persists."
    ),
    "ServiceUnavailableTemporary": N_("The KMS is unavailable for now. Try again later."),
}
