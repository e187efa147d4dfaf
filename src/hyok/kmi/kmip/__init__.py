"""The KMIP backend: AES-256 keys on a KMIP server, used over TLS with a client certificate.

See docs/kmi-backends.md for the configuration, the key-state convention and
what the backend needs of a server.
"""

from hyok.kmi.kmip._connection import ServerAddress, tls_context
from hyok.kmi.kmip._manager import KmipKeyManager
from hyok.kmi.kmip._objects import MARKER_PREFIX

__all__ = ["MARKER_PREFIX", "KmipKeyManager", "ServerAddress", "tls_context"]
