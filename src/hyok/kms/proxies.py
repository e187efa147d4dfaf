"""One pooled XKI proxy client per external key instance, built from the instance's settings.

:class:`ProxyPool` turns an :class:`~hyok.kms.domain.Instance` into a
:class:`~hyok.kms.xki_client.ProxyBinding` and keeps one
:class:`~hyok.kms.xki_client.XkiClient` (with its keep-alive connections)
per instance. When an instance's proxy settings change, the next call gets a
new client and the old one is closed.

:class:`ProxyNetwork` contains what the KMS deployment, not the instance,
decides: the private address of each VPC endpoint service, the trust roots
for proxy certificates and the call budget.

Example::

    pool = ProxyPool(ProxyNetwork(vpc_endpoints={"xki.vpc.example": "10.0.0.5:8443"}))
    client = pool.client(instance)
    result = await client.get_key_metadata(external_key_id, metadata)
    ...
    await pool.aclose()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from hyok.kms.domain import Connectivity, Instance
from hyok.kms.xki_client import (
    DEFAULT_TIMEOUT,
    ProxyBinding,
    ProxyBindingError,
    XkiClient,
)
from hyok.kms.xki_client import Connectivity as BindingConnectivity

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "InstanceNotConfiguredError",
    "ProxyNetwork",
    "ProxyPool",
    "UnknownVpcEndpointServiceError",
]

logger = logging.getLogger("hyok.kms.proxies")

DEFAULT_MAX_CONNECTIONS: Final = 64


class InstanceNotConfiguredError(Exception):
    """The instance has no usable XKI proxy configuration. ``message`` names the fault and fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownVpcEndpointServiceError(InstanceNotConfiguredError):
    """The instance names a VPC endpoint service that this KMS deployment does not map."""


@dataclass(frozen=True)
class ProxyNetwork:
    """The network settings with which this KMS deployment reaches XKI proxies.

    ``vpc_endpoints`` maps a VPC endpoint service name to the private
    ``host:port`` that the KMS dials for it; TLS still verifies the instance's
    endpoint name. ``ca_file`` (PEM) replaces the system's trusted roots for
    proxy certificates. ``timeout`` is the budget of one proxy call in seconds.
    """

    vpc_endpoints: Mapping[str, str] = field(default_factory=dict)
    ca_file: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def binding(self, instance: Instance) -> ProxyBinding:
        """Build the binding of ``instance``.

        Raises InstanceNotConfiguredError when the instance has no proxy
        settings, names an unmapped VPC endpoint service, or has settings that
        ProxyBinding rejects.
        """
        if instance.proxy_endpoint is None or instance.proxy_secret is None:
            raise InstanceNotConfiguredError(
                f"instance {instance.instance_id} has no XKI proxy configuration: call "
                "UpdateXkiProxyConfiguration first"
            )
        connect_address = None
        if instance.connectivity is Connectivity.VPC:
            service = instance.vpc_endpoint_service or ""
            connect_address = self.vpc_endpoints.get(service)
            if connect_address is None:
                raise UnknownVpcEndpointServiceError(
                    f"the VPC endpoint service {service!r} of instance {instance.instance_id} "
                    "is not mapped by this KMS deployment: add it to [proxy.vpc_endpoints] "
                    "in the KMS configuration, or use connectivity PUBLIC_ENDPOINT"
                )
        try:
            return ProxyBinding(
                endpoint=instance.proxy_endpoint,
                uri_path=instance.proxy_uri_path or "",
                region=instance.region,
                access_key_id=instance.proxy_access_key_id or "",
                secret=instance.proxy_secret,
                connectivity=BindingConnectivity(str(instance.connectivity)),
                ca_file=self.ca_file,
                server_certificate_sha256=instance.tls_fingerprint,
                connect_address=connect_address,
            )
        except ProxyBindingError as exc:
            raise InstanceNotConfiguredError(
                f"the XKI proxy configuration of instance {instance.instance_id} is invalid: "
                f"{exc.message}"
            ) from None


class ProxyPool:
    """The XKI proxy clients of all instances, one per instance, reused between calls.

    Not thread-safe: use it from the event loop only.
    """

    def __init__(self, network: ProxyNetwork | None = None) -> None:
        self.network = network or ProxyNetwork()
        self._clients: dict[str, tuple[Instance, XkiClient]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"ProxyPool(clients={len(self._clients)})"

    def client(self, instance: Instance) -> XkiClient:
        """Return the client of ``instance``, creating or replacing it as its settings require.

        Raises InstanceNotConfiguredError (see :meth:`ProxyNetwork.binding`),
        and ConfigError when the proxy CA file cannot be used.
        """
        entry = self._clients.get(instance.instance_id)
        if entry is not None and entry[0].same_proxy_configuration(instance):
            return entry[1]
        binding = self.network.binding(instance)
        client = XkiClient(
            binding, timeout=self.network.timeout, max_connections=self.network.max_connections
        )
        self._clients[instance.instance_id] = (instance, client)
        if entry is not None:
            self._close_later(entry[1])
        return client

    def discard(self, instance_id: str) -> None:
        """Close and forget the client of an instance, if there is one."""
        entry = self._clients.pop(instance_id, None)
        if entry is not None:
            self._close_later(entry[1])

    def _close_later(self, client: XkiClient) -> None:
        # In-flight calls on the old client finish; its pool closes after them.
        task = asyncio.get_running_loop().create_task(client.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close every client."""
        clients = [client for _instance, client in self._clients.values()]
        self._clients.clear()
        for client in clients:
            await client.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
