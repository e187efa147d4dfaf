"""PyKMIP's message classes, imported in one place without its import-time warning.

PyKMIP 0.11 calls ``sqlalchemy.ext.declarative.declarative_base``, which
SQLAlchemy 2 deprecates, when any of its modules is first imported. The
warning concerns PyKMIP's server database, not this client, so it is
ignored for that one import.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"kmip\.pie\.sqltypes")
    from kmip.core import attributes, enums, objects, primitives, utils  # type: ignore[import-untyped]
    from kmip.core.factories.attributes import AttributeFactory  # type: ignore[import-untyped]
    from kmip.core.messages import contents, messages, payloads  # type: ignore[import-untyped]
    from kmip.pie import objects as pie_objects  # type: ignore[import-untyped]
    from kmip.pie.factory import ObjectFactory  # type: ignore[import-untyped]

__all__ = [
    "AttributeFactory",
    "ObjectFactory",
    "attributes",
    "contents",
    "enums",
    "messages",
    "objects",
    "payloads",
    "pie_objects",
    "primitives",
    "utils",
]
