"""A real PyKMIP server for the KMIP backend tests, one per test module.

The fixture ``pykmip`` writes certificates and a configuration with
:func:`hyok.kmi.kmip.pykmip_server.prepare_server`, runs the server as a
child process on a free port of 127.0.0.1, and stops it after the module.
:class:`Pykmip` can restart it on the same files, and sends requests that
the backend never sends (importing a key with known material, revoking,
creating a key without activating it) to set up hard cases.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hyok.kmi.kmip import KmipKeyManager, ServerAddress, tls_context
from hyok.kmi.kmip import _protocol as kmip
from hyok.kmi.kmip._connection import ConnectionPool
from hyok.kmi.kmip._pykmip import AttributeFactory, ObjectFactory, enums, payloads, pie_objects
from hyok.kmi.kmip.pykmip_server import PykmipServer, ServerFiles, prepare_server, start_server
from tests.conftest import register_sensitive

__all__ = ["Pykmip", "free_port", "open_manager", "pykmip"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Pykmip:
    """A PyKMIP server process and its files."""

    files: ServerFiles
    server: PykmipServer
    _pool: ConnectionPool | None = field(default=None, repr=False)

    @property
    def address(self) -> ServerAddress:
        return ServerAddress("127.0.0.1", self.files.port)

    def restart(self) -> None:
        """Stop the server and start it again on the same database and port."""
        self.stop()
        self.server = start_server(self.files)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self.server.stop()

    def _send(self, request: tuple[Any, Any]) -> Any:
        if self._pool is None:
            context = tls_context(
                self.files.ca_file, self.files.client_cert_file, self.files.client_key_file, None
            )
            self._pool = ConnectionPool(
                self.address, context, max_connections=1, connect_timeout=5.0
            )
        try:
            return self._pool.call(*request, deadline=time.monotonic() + 10.0)
        except Exception:
            self._pool.drop_idle()
            raise

    def import_key(self, key_id: str, material: bytes, *, activate: bool = True) -> str:
        """Register an AES key with known material, named ``key_id``; return its UID."""
        register_sensitive(material)
        masks = [enums.CryptographicUsageMask.ENCRYPT, enums.CryptographicUsageMask.DECRYPT]
        key = ObjectFactory().convert(
            pie_objects.SymmetricKey(
                enums.CryptographicAlgorithm.AES, len(material) * 8, material, masks
            )
        )
        factory = AttributeFactory()
        template = kmip.objects.TemplateAttribute(
            attributes=[
                factory.create_attribute(enums.AttributeType.NAME, key_id),
                factory.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_USAGE_MASK, masks),
            ]
        )
        payload = payloads.RegisterRequestPayload(
            object_type=enums.ObjectType.SYMMETRIC_KEY,
            template_attribute=template,
            managed_object=key,
        )
        uid = str(self._send((enums.Operation.REGISTER, payload)).unique_identifier)
        if activate:
            self._send(kmip.activate(uid))
        return uid

    def create_pre_active(self, key_id: str) -> str:
        """Create an AES-256 key named ``key_id`` and leave it Pre-Active."""
        masks = kmip.usage_mask_items(["DECRYPT", "ENCRYPT"])
        return str(self._send(kmip.create_aes_key(key_id, masks)).unique_identifier)

    def revoke(self, uid: str) -> None:
        """Move an Active object to Deactivated."""
        self._send(kmip.revoke(uid))

    def uid_of(self, key_id: str) -> str:
        uids = kmip.located_uids(self._send(kmip.locate(key_id, kmip.symmetric_key_type(), 10)))
        assert len(uids) == 1, uids
        return uids[0]


@pytest.fixture(scope="module")
def pykmip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pykmip]:
    """Start a PyKMIP server for the test module."""
    directory: Path = tmp_path_factory.mktemp("pykmip") / "server"
    files = prepare_server(directory, free_port())
    running = Pykmip(files, start_server(files))
    yield running
    running.stop()


def open_manager(server: Pykmip, **options: Any) -> KmipKeyManager:
    files = server.files
    context = tls_context(files.ca_file, files.client_cert_file, files.client_key_file, None)
    return KmipKeyManager(server.address, context, **options)
