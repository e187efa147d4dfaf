"""The PKCS#11 backend: AES-256 keys on HSM tokens, used through python-pkcs11.

See docs/kmi-backends.md for the configuration, the key-state convention and
the fleet behaviour.
"""

from hyok.kmi.pkcs11._manager import Pkcs11KeyManager
from hyok.kmi.pkcs11._objects import STATE_APPLICATION
from hyok.kmi.pkcs11._options import MemberOptions, TokenSelector

__all__ = ["STATE_APPLICATION", "MemberOptions", "Pkcs11KeyManager", "TokenSelector"]
