"""Parameters that several action groups and the access checks read."""

from __future__ import annotations

import re
from typing import Final

from hyok.kms.api.errors import InvalidParameterError, shown_value
from hyok.kms.api.params import Params

__all__ = ["instance_id_parameter"]

_INSTANCE_ID: Final = re.compile(r"kst-[a-z0-9]{1,60}")
_MAX_INSTANCE_ID_LENGTH: Final = 64


def instance_id_parameter(params: Params, name: str) -> str:
    """Return the required instance ID parameter ``name``, checked against the ``kst-`` form."""
    instance_id = params.required_str(name, max_length=_MAX_INSTANCE_ID_LENGTH)
    if not _INSTANCE_ID.fullmatch(instance_id):
        raise InvalidParameterError(
            f"The parameter {name} value {shown_value(instance_id)} is not an instance ID. "
            "Pass an ID such as kst-... from ListKmsInstances.",
            parameter=name,
        )
    return instance_id
