"""External key management instance actions, called by the official SDK over TLS on loopback.

Per database (a SQLite file, then a fresh PostgreSQL schema) one uvicorn
server (``KmsHttpProtocol``) serves a ``KmsApp`` with every action, on a store with two
accounts and one root AccessKey each. The KMS reaches real hyok XKI proxies
on 127.0.0.1, all with certificates from one test CA that the KMS trusts:

- the *public* proxy has a certificate for the DNS name ``localhost``, and
  instances use the endpoint ``https://localhost:<port>``;
- the *VPC* proxy has a certificate for ``xki.vpc.internal`` only. The KMS
  maps the VPC endpoint service ``VPC_SERVICE`` to ``127.0.0.1:<port>``, so
  that name is never resolved, while TLS still verifies it;
- the VPC endpoint service ``MISMATCHED_SERVICE`` leads to the public proxy,
  whose certificate does not name ``xki.vpc.internal``.

Tests that stop a proxy, or change its credentials, start their own proxy
(``restartable``). The health monitor tests run the monitor in the test's
event loop with a proxy pool of its own, beside the server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
import uvicorn
from alibabacloud_kms20160120 import models as kms_models  # type: ignore[import-untyped]
from alibabacloud_kms20160120.client import Client  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.exceptions import ClientException  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.utils_models import (  # type: ignore[import-untyped]
    Config,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from hyok.common.secrets import Secret
from hyok.common.tls import create_ca, issue_server_certificate, server_ssl_context
from hyok.kms.api.actions import Services, build_handlers
from hyok.kms.api.app import KmsApp
from hyok.kms.domain import (
    InstanceErrorReason,
    InstanceStatus,
    Key,
    KeyVersion,
    new_key_id,
    new_key_version_id,
)
from hyok.kms.health import HEALTH_JOB, InstanceHealthMonitor
from hyok.kms.proxies import ProxyNetwork, ProxyPool
from hyok.kms.store import KmsStore
from hyok.xki.app import XksApp
from hyok.xki.credentials import StoredCredential
from hyok.xki.runtime import Proxy
from hyok.xki.settings import ProxySettings
from tests.integration._kms import (
    ACCOUNT_ID,
    OTHER_ACCOUNT_ID,
    REGION,
    open_test_store,
    postgres_server,
    seed_accounts,
    serve_kms,
)
from tests.integration._postgres import PostgresServer
from tests.integration._sdk import call, client_error, runtime
from tests.integration._server import serve_tls
from tests.integration._xks import (
    DataDir,
    RunningProxy,
    init_data_dir,
    keystore_entry,
    new_credential,
    run_proxy,
)

__all__ = ["postgres_server"]  # a pytest fixture, found by name

pytestmark = pytest.mark.integration

VPC_HOST = "xki.vpc.internal"
VPC_SERVICE = "com.hyok.test.vpce-xki"
MISMATCHED_SERVICE = "com.hyok.test.vpce-other"
UNMAPPED_SERVICE = "com.hyok.test.vpce-unknown"
# A call budget for a loaded test machine; the product default is 250 ms.
PROXY_TIMEOUT = 5.0
WRONG_SECRET = "V3JvbmdTZWNyZXRGb3JUaGVYa2lQcm94eTAxMjM0NTY3OA=="
SHORT_SECRET = "ShortProxySecret01234"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def certificate_fingerprint(pem_file: Path) -> str:
    """The SHA-256 fingerprint of a PEM certificate as ``AA:BB:...``."""
    certificate = x509.load_pem_x509_certificate(pem_file.read_bytes())
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


# --- XKI proxies --------------------------------------------------------------------


@dataclass
class Proxies:
    """The module's two running proxies, which share one data directory and credential."""

    directory: Path
    ca_file: Path
    public_cert: Path
    public_key: Path
    data: DataDir
    public: RunningProxy
    vpc: RunningProxy

    @property
    def public_port(self) -> int:
        return port_of(self.public.url)

    @property
    def vpc_port(self) -> int:
        return port_of(self.vpc.url)

    @property
    def credential(self) -> StoredCredential:
        return self.data.credentials["default"]


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxies]:
    directory = tmp_path_factory.mktemp("instance-proxies")
    ca = create_ca("hyok instance test CA", days=3)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    certificates: dict[str, tuple[Path, Path]] = {}
    for label, hostname in (("public", "localhost"), ("vpc", VPC_HOST)):
        cert_file, key_file = directory / f"{label}.pem", directory / f"{label}.key"
        issue_server_certificate(ca, hostnames=[hostname], days=2).write(cert_file, key_file)
        certificates[label] = (cert_file, key_file)

    data = init_data_dir(directory / "xki")
    with ExitStack() as stack:
        running: dict[str, RunningProxy] = {}
        for label, (cert_file, key_file) in certificates.items():
            settings = data.write_config(
                keystores=[keystore_entry("default")],
                server={"cert_file": str(cert_file), "key_file": str(key_file)},
            )
            running[label] = stack.enter_context(run_proxy(data, settings))
        yield Proxies(
            directory=directory,
            ca_file=ca_file,
            public_cert=certificates["public"][0],
            public_key=certificates["public"][1],
            data=data,
            public=running["public"],
            vpc=running["vpc"],
        )


@dataclass
class RestartableProxy:
    """A proxy of one test, with its own data directory, that stops and starts on one port.

    :meth:`stop` aborts open connections first, as a crashed proxy would.
    Otherwise uvicorn's graceful shutdown waits for the TLS close of the
    KMS's idle keep-alive connections, which the KMS never reads.
    """

    data: DataDir
    settings: ProxySettings
    port: int = 0
    proxy: Proxy | None = None
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _spare: StoredCredential | None = None

    def start(self) -> None:
        self.proxy = Proxy(self.settings)
        server_settings = self.settings.server
        context = server_ssl_context(
            server_settings.cert_file,
            server_settings.key_file,
            min_version=server_settings.min_tls_version,
            client_ca_file=server_settings.client_ca_file,
        )
        config = uvicorn.Config(
            XksApp(self.proxy),
            host="127.0.0.1",
            port=self.port,
            loop="asyncio",
            lifespan="on",
            log_config=None,
            ssl_context_factory=lambda _config, _default: context,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="restartable-proxy")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive(), "the proxy's uvicorn exited during startup"
            assert time.monotonic() < deadline, "the proxy did not start within 10 s"
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        server, thread, proxy = self._server, self._thread, self.proxy
        if server is None or thread is None or proxy is None:
            return
        self._server = self._thread = self.proxy = None

        def abort_connections() -> None:
            for connection in list(server.server_state.connections):
                connection.transport.abort()

        loop = server.servers[0].get_loop()
        server.should_exit = True
        deadline = time.monotonic() + 10
        # A client may connect until the listener closes, so abort until the server ends.
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                loop.call_soon_threadsafe(abort_connections)
            except RuntimeError:  # the loop has closed
                break
            thread.join(0.05)
        thread.join(max(deadline - time.monotonic(), 0))
        proxy.close()
        assert not thread.is_alive(), "the proxy did not stop within 10 s"

    @property
    def credential(self) -> StoredCredential:
        return self.data.credentials["default"]

    def rotate_away_credential(self) -> None:
        """Replace the KMS's credential in the proxy by a new one, as an operator might."""
        assert self.proxy is not None
        self._spare = new_credential()
        credentials = self.data.credential_file("default")
        credentials.add(self._spare)
        credentials.remove(self.credential.access_key_id)
        self.proxy.reload_changed_credentials()

    def restore_credential(self) -> None:
        assert self.proxy is not None
        assert self._spare is not None
        credentials = self.data.credential_file("default")
        credentials.add(self.credential)
        credentials.remove(self._spare.access_key_id)
        self.proxy.reload_changed_credentials()


@pytest.fixture
def restartable(tmp_path: Path, proxies: Proxies) -> Iterator[RestartableProxy]:
    data = init_data_dir(tmp_path / "xki")
    settings = data.write_config(
        keystores=[keystore_entry("default")],
        server={"cert_file": str(proxies.public_cert), "key_file": str(proxies.public_key)},
    )
    running = RestartableProxy(data, settings)
    running.start()
    try:
        yield running
    finally:
        running.stop()


HEALTHY_BODY = json.dumps(
    {
        "xksProxyFleetSize": 1,
        "xksProxyVendor": "hyok tests",
        "xksProxyModel": "scripted",
        "ekmVendor": "hyok tests",
        "ekmFleetDetails": [{"id": "hsm-1", "model": "scripted", "healthStatus": "ACTIVE"}],
    }
).encode()


@dataclass
class ScriptedHealth:
    """An XKS peer whose health response a test sets: status, body and delay.

    It checks no signature, so any credential passes.
    """

    status: int = 200
    body: bytes = HEALTHY_BODY
    delay: float = 0.0
    port: int = 0

    def answer(self, status: int, body: bytes, delay: float = 0.0) -> None:
        self.status, self.body, self.delay = status, body, delay

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body", False):
            pass
        if self.delay:
            await anyio.sleep(self.delay)
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


@pytest.fixture(scope="module")
def scripted(proxies: Proxies) -> Iterator[ScriptedHealth]:
    peer = ScriptedHealth()
    with serve_tls(
        peer, cert_file=proxies.public_cert, key_file=proxies.public_key, loop="asyncio"
    ) as url:
        peer.port = port_of(url)
        yield peer


# --- The KMS ------------------------------------------------------------------------


@dataclass
class Kms:
    """The running KMS of one database, and what a test needs to call it."""

    url: str
    port: int
    ca_file: Path
    store: KmsStore
    network: ProxyNetwork
    database: str
    access_key_id: str
    secret: str
    other_access_key_id: str
    other_secret: str

    def sdk(self, *, other_account: bool = False) -> Client:
        """An SDK client of the KMS, signing as the account (or the other account)."""
        return Client(
            Config(
                access_key_id=self.other_access_key_id if other_account else self.access_key_id,
                access_key_secret=self.other_secret if other_account else self.secret,
                endpoint=f"127.0.0.1:{self.port}",
                protocol="https",
                region_id=REGION,
                ca=str(self.ca_file),
            )
        )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def kms(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    proxies: Proxies,
    scripted: ScriptedHealth,
) -> Iterator[Kms]:
    # The KMS depends on every proxy, so that it stops first and closes its
    # keep-alive connections, which would hold up the proxies' shutdown.
    directory = tmp_path_factory.mktemp("kms-instances")
    with ExitStack() as stack:
        store = open_test_store(stack, request.param, directory, postgres_server)
        access_key_id, secret, other_id, other_secret = seed_accounts(store)

        network = ProxyNetwork(
            vpc_endpoints={
                VPC_SERVICE: f"127.0.0.1:{proxies.vpc_port}",
                MISMATCHED_SERVICE: f"127.0.0.1:{proxies.public_port}",
            },
            ca_file=proxies.ca_file,
            timeout=PROXY_TIMEOUT,
        )
        services = Services(store=store, proxies=ProxyPool(network), region=REGION)
        app = KmsApp(
            store,
            region=REGION,
            handlers=build_handlers(services),
            on_shutdown=[services.proxies.aclose],
            on_identity_change=services.access.forget,
        )
        url, ca_file = serve_kms(stack, directory, app)
        yield Kms(
            url=url,
            port=port_of(url),
            ca_file=ca_file,
            store=store,
            network=network,
            database=request.param,
            access_key_id=access_key_id,
            secret=secret,
            other_access_key_id=other_id,
            other_secret=other_secret,
        )


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads these variables; the requests must go straight to loopback.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


# --- Calls --------------------------------------------------------------------------


def public_settings(proxies: Proxies, **changes: str | None) -> dict[str, str]:
    """UpdateXkiProxyConfiguration parameters for the public proxy; None removes one."""
    credential = proxies.credential.credential
    query: dict[str, str | None] = {
        "Connectivity": "PUBLIC_ENDPOINT",
        "XkiProxyUriEndpoint": f"https://localhost:{proxies.public_port}",
        "XkiProxyUriPath": "/kms/xks/v1",
        "XkiProxyAccessKeyId": credential.access_key_id,
        "XkiProxySecretAccessKey": credential.secret.reveal(),
    }
    query.update(changes)
    return {name: value for name, value in query.items() if value is not None}


def vpc_settings(proxies: Proxies, **changes: str | None) -> dict[str, str]:
    """UpdateXkiProxyConfiguration parameters for the VPC proxy; None removes one."""
    base: dict[str, str | None] = {
        "Connectivity": "VPC_ENDPOINT_SERVICE",
        "XkiProxyUriEndpoint": f"https://{VPC_HOST}:{proxies.vpc_port}",
        "VpcEndpointServiceName": VPC_SERVICE,
    }
    base.update(changes)
    return public_settings(proxies, **base)


def create(client: Client, **query: str) -> str:
    body = call(client, "CreateKmsInstance", query)
    instance_id: str = body["KmsInstanceId"]
    assert body["KmsInstanceArn"] == f"acs:kms:{REGION}:{ACCOUNT_ID}:keystore/{instance_id}"
    return instance_id


def update(client: Client, instance_id: str, settings: dict[str, str]) -> dict[str, Any]:
    return call(client, "UpdateXkiProxyConfiguration", {"KmsInstanceId": instance_id, **settings})


def connect(client: Client, instance_id: str) -> Any:
    request = kms_models.ConnectKmsInstanceRequest(kms_instance_id=instance_id)
    return client.connect_kms_instance_with_options(request, runtime())


def describe(client: Client, instance_id: str) -> dict[str, Any]:
    """GetKmsInstance through the generic call, which keeps the extension fields."""
    body = call(client, "GetKmsInstance", {"KmsInstanceId": instance_id})
    described: dict[str, Any] = body["KmsInstance"]
    return described


def connected_instance(client: Client, settings: dict[str, str]) -> str:
    instance_id = create(client, **settings)
    connect(client, instance_id)
    assert describe(client, instance_id)["Status"] == "Connected"
    return instance_id


def failed_connect(client: Client, instance_id: str) -> ClientException:
    error = client_error(lambda: connect(client, instance_id))
    assert error.code == "Forbidden.DKMSInstanceStateInvalid"
    assert error.status_code == 403
    return error


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


# --- Create, get and list -------------------------------------------------------------


def test_create_without_proxy_configuration(kms: Kms) -> None:
    client = kms.sdk()
    named = create(client, InstanceName="payments HSM")
    unnamed = create(client)

    response = client.get_kms_instance_with_options(
        kms_models.GetKmsInstanceRequest(kms_instance_id=named), runtime()
    )
    typed = response.body.kms_instance
    assert typed.instance_id == named
    assert typed.instance_name == "payments HSM"
    assert typed.status == "Uninitialized"
    assert typed.key_num == 0
    assert typed.product_type == "external_key_management"
    assert typed.secret_num == "0"
    assert typed.vpc_num == 0
    created = datetime.strptime(typed.create_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60

    described = describe(client, unnamed)
    assert described["InstanceName"] == unnamed
    assert described["KmsInstanceArn"].endswith(f":keystore/{unnamed}")
    for absent in ("XkiProxy", "ErrorReason", "ErrorDetail", "LastHealthCheckTime"):
        assert absent not in described


def test_list_instances_pages(kms: Kms) -> None:
    client = kms.sdk(other_account=True)
    before = client.list_kms_instances_with_options(
        kms_models.ListKmsInstancesRequest(), runtime()
    ).body
    assert before.page_number == 1
    assert before.page_size == 20
    created = [
        call(client, "CreateKmsInstance", {"InstanceName": f"list {index}"})["KmsInstanceId"]
        for index in range(3)
    ]

    listed: list[str] = []
    for number in (1, 2, 3, 4):
        page = client.list_kms_instances_with_options(
            kms_models.ListKmsInstancesRequest(page_number=number, page_size=2), runtime()
        ).body
        assert page.page_number == number
        assert page.page_size == 2
        assert page.total_count == before.total_count + 3
        items = page.kms_instances.kms_instance if page.kms_instances else []
        for item in items:
            assert item.kms_instance_arn == (
                f"acs:kms:{REGION}:{OTHER_ACCOUNT_ID}:keystore/{item.kms_instance_id}"
            )
        listed += [item.kms_instance_id for item in items]
    assert listed[-3:] == created
    assert len(listed) == before.total_count + 3


def test_key_num_counts_keys(kms: Kms) -> None:
    client = kms.sdk()
    instance_id = create(client)
    now = datetime.now(UTC)
    with kms.store.session() as session:
        for _ in range(2):
            key_id, version_id = new_key_id(), new_key_version_id()
            session.keys.create(
                Key(
                    key_id=key_id,
                    account_id=ACCOUNT_ID,
                    region=REGION,
                    instance_id=instance_id,
                    external_key_id="app-1",
                    origin="EXTERNAL",
                    protection_level="HSM",
                    creator=ACCOUNT_ID,
                    created_at=now,
                    primary_key_version_id=version_id,
                    policy='{"Version": "1"}',
                ),
                KeyVersion(key_id=key_id, key_version_id=version_id, created_at=now),
            )
    assert describe(client, instance_id)["KeyNum"] == 2


# --- Connecting through both connectivity modes ---------------------------------------


def test_public_endpoint_connects(kms: Kms, proxies: Proxies) -> None:
    client = kms.sdk()
    settings = public_settings(proxies)
    instance_id = create(client, InstanceName="public", **settings)
    described = describe(client, instance_id)
    assert described["Status"] == "Uninitialized"
    assert described["XkiProxy"] == {
        "Connectivity": "PUBLIC_ENDPOINT",
        "UriEndpoint": f"https://localhost:{proxies.public_port}",
        "UriPath": "/kms/xks/v1",
        "AccessKeyId": settings["XkiProxyAccessKeyId"],
    }

    response = connect(client, instance_id)

    request_id = response.body.request_id
    connected = describe(client, instance_id)
    assert connected["Status"] == "Connected"
    assert "ErrorReason" not in connected
    checked = datetime.strptime(connected["LastHealthCheckTime"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs((datetime.now(UTC) - checked.replace(tzinfo=UTC)).total_seconds()) < 60
    # The proxy audited the health request with the caller's request ID and principal.
    event = proxies.public.audit.for_request(request_id)
    assert event["operation"] == "GetHealthStatus"
    assert event["kmsOperation"] == "ConnectKmsInstance"
    assert event["principal"] == f"acs:ram::{ACCOUNT_ID}:root"
    assert event["outcome"] == "ok"
    assert_no_secret(json.dumps(connected), settings["XkiProxySecretAccessKey"])


def test_vpc_endpoint_service_connects(kms: Kms, proxies: Proxies) -> None:
    client = kms.sdk()
    instance_id = create(client, **vpc_settings(proxies))

    connect(client, instance_id)

    described = describe(client, instance_id)
    assert described["Status"] == "Connected"
    assert described["XkiProxy"]["Connectivity"] == "VPC_ENDPOINT_SERVICE"
    assert described["XkiProxy"]["UriEndpoint"] == f"https://{VPC_HOST}:{proxies.vpc_port}"
    assert described["XkiProxy"]["VpcEndpointServiceName"] == VPC_SERVICE
    # The VPC proxy's certificate names only the private DNS name, so a public
    # binding to localhost at the same port fails its TLS check.
    update(
        client,
        instance_id,
        public_settings(proxies, XkiProxyUriEndpoint=(f"https://localhost:{proxies.vpc_port}")),
    )
    assert describe(client, instance_id)["Status"] == "Connecting"
    failed_connect(client, instance_id)
    assert describe(client, instance_id)["ErrorReason"] == "TlsFailure"


def test_vpc_certificate_must_name_endpoint(kms: Kms, proxies: Proxies) -> None:
    client = kms.sdk()
    settings = vpc_settings(
        proxies,
        VpcEndpointServiceName=MISMATCHED_SERVICE,
        XkiProxyUriEndpoint=f"https://{VPC_HOST}:{proxies.public_port}",
    )
    instance_id = create(client, **settings)

    error = failed_connect(client, instance_id)

    assert "TlsFailure" in error.data["Message"]
    described = describe(client, instance_id)
    assert described["Status"] == "Error"
    assert described["ErrorReason"] == "TlsFailure"
    assert "certificate" in described["ErrorDetail"]


def test_connect_accepts_and_ignores_vpc_parameters(kms: Kms, proxies: Proxies) -> None:
    client = kms.sdk()
    instance_id = create(client, **public_settings(proxies))
    request = kms_models.ConnectKmsInstanceRequest(
        kms_instance_id=instance_id,
        kmprovider="Aliyun",
        vpc_id="vpc-bp1example",
        zone_ids="cn-hangzhou-k,cn-hangzhou-j",
        v_switch_ids="vsw-bp1example",
    )
    client.connect_kms_instance_with_options(request, runtime())
    call(client, "ConnectKmsInstance", {"KmsInstanceId": instance_id, "ProductType": "kms_ddi"})
    assert describe(client, instance_id)["Status"] == "Connected"


def test_tls_fingerprint_pins_certificate(kms: Kms, proxies: Proxies) -> None:
    client = kms.sdk()
    fingerprint = certificate_fingerprint(proxies.public_cert)
    instance_id = create(
        client, **public_settings(proxies, XkiProxyTlsCertificateFingerprint=fingerprint)
    )
    connect(client, instance_id)
    described = describe(client, instance_id)
    assert described["Status"] == "Connected"
    assert described["XkiProxy"]["TlsCertificateFingerprint"] == (
        fingerprint.replace(":", "").lower()
    )

    update(
        client, instance_id, public_settings(proxies, XkiProxyTlsCertificateFingerprint="0f" * 32)
    )
    error = failed_connect(client, instance_id)

    assert "TlsFailure" in error.data["Message"]
    assert "XkiProxyTlsCertificateFingerprint" in error.data["Message"]
    described = describe(client, instance_id)
    assert described["Status"] == "Error"
    assert described["ErrorReason"] == "TlsFailure"
    assert "fingerprint" in described["ErrorDetail"] or "pinned" in described["ErrorDetail"]


# --- Failed connection checks ----------------------------------------------------------


def test_wrong_proxy_secret_is_credentials_rejected(
    kms: Kms, proxies: Proxies, sensitive: Callable[[str], None]
) -> None:
    sensitive(WRONG_SECRET)
    client = kms.sdk()
    instance_id = create(client, **public_settings(proxies, XkiProxySecretAccessKey=WRONG_SECRET))

    error = failed_connect(client, instance_id)

    message = error.data["Message"]
    assert "CredentialsRejected" in message
    assert "XkiProxySecretAccessKey" in message
    assert_no_secret(json.dumps(error.data), WRONG_SECRET)
    described = describe(client, instance_id)
    assert described["Status"] == "Error"
    assert described["ErrorReason"] == "CredentialsRejected"
    assert "AuthenticationFailedException" in described["ErrorDetail"]
    assert "LastHealthCheckTime" in described
    assert_no_secret(json.dumps(described), WRONG_SECRET)


def test_wrong_path_is_uri_path_invalid(kms: Kms, proxies: Proxies) -> None:
    client = kms.sdk()
    settings = public_settings(proxies, XkiProxyUriPath="/no-such-store/kms/xks/v1")
    instance_id = create(client, **settings)

    error = failed_connect(client, instance_id)

    assert "UriPathInvalid" in error.data["Message"]
    described = describe(client, instance_id)
    assert described["Status"] == "Error"
    assert described["ErrorReason"] == "UriPathInvalid"
    assert "InvalidUriPathException" in described["ErrorDetail"]


def test_stopped_proxy_is_disconnected(kms: Kms, restartable: RestartableProxy) -> None:
    client = kms.sdk()
    credential = restartable.credential.credential
    settings = {
        "Connectivity": "PUBLIC_ENDPOINT",
        "XkiProxyUriEndpoint": f"https://localhost:{restartable.port}",
        "XkiProxyUriPath": "/kms/xks/v1",
        "XkiProxyAccessKeyId": credential.access_key_id,
        "XkiProxySecretAccessKey": credential.secret.reveal(),
    }
    instance_id = connected_instance(client, settings)

    restartable.stop()
    error = failed_connect(client, instance_id)

    assert "ProxyUnreachable" in error.data["Message"]
    described = describe(client, instance_id)
    assert described["Status"] == "Disconnected"
    assert described["ErrorReason"] == "ProxyUnreachable"
    assert "could not be established" in described["ErrorDetail"]

    restartable.start()
    connect(client, instance_id)
    assert describe(client, instance_id)["Status"] == "Connected"


def test_connect_needs_proxy_configuration(kms: Kms) -> None:
    client = kms.sdk()
    instance_id = create(client)
    error = failed_connect(client, instance_id)
    assert "UpdateXkiProxyConfiguration" in error.data["Message"]
    assert describe(client, instance_id)["Status"] == "Uninitialized"


def scripted_settings(proxies: Proxies, scripted: ScriptedHealth) -> dict[str, str]:
    return public_settings(proxies, XkiProxyUriEndpoint=f"https://localhost:{scripted.port}")


UNAVAILABLE_FLEET = json.dumps(
    {
        "xksProxyFleetSize": 2,
        "xksProxyVendor": "hyok tests",
        "xksProxyModel": "scripted",
        "ekmVendor": "hyok tests",
        "ekmFleetDetails": [
            {"id": "hsm-1", "model": "scripted", "healthStatus": "UNAVAILABLE"},
            {"id": "hsm-2", "model": "scripted", "healthStatus": "UNAVAILABLE"},
        ],
    }
).encode()


@pytest.mark.parametrize(
    ("status", "body", "reason", "detail"),
    [
        (200, b"<html>not XKS</html>", "InvalidResponse", "not a JSON object"),
        (200, UNAVAILABLE_FLEET, "ProxyFailure", "no member of its key manager fleet"),
        (
            500,
            b'{"errorName": "InternalException", "errorMessage": "proxy-side detail"}',
            "ProxyFailure",
            "InternalException (HTTP 500)",
        ),
        (
            429,
            b'{"errorName": "ThrottlingException", "errorMessage": "slow down"}',
            "ProxyFailure",
            "ThrottlingException",
        ),
    ],
    ids=["not-json", "fleet-unavailable", "internal-error", "throttled"],
)
def test_scripted_proxy_failures(
    kms: Kms,
    proxies: Proxies,
    scripted: ScriptedHealth,
    status: int,
    body: bytes,
    reason: str,
    detail: str,
) -> None:
    client = kms.sdk()
    scripted.answer(200, HEALTHY_BODY)
    instance_id = connected_instance(client, scripted_settings(proxies, scripted))
    scripted.answer(status, body)
    try:
        error = failed_connect(client, instance_id)
    finally:
        scripted.answer(200, HEALTHY_BODY)

    assert reason in error.data["Message"]
    described = describe(client, instance_id)
    assert described["Status"] == "Error"
    assert described["ErrorReason"] == reason
    assert detail in described["ErrorDetail"]
    # The proxy's errorMessage goes to the KMS log only, never to the caller.
    assert "proxy-side detail" not in json.dumps(error.data)
    assert "proxy-side detail" not in described["ErrorDetail"]


@pytest.mark.anyio
async def test_monitor_reports_slow_proxy_as_timed_out(
    kms: Kms, proxies: Proxies, scripted: ScriptedHealth
) -> None:
    client = kms.sdk()
    scripted.answer(200, HEALTHY_BODY)
    settings = scripted_settings(proxies, scripted)
    instance_id = await in_thread(lambda: connected_instance(client, settings))
    # A monitor with a short call budget, so the test waits less than a second.
    network = ProxyNetwork(ca_file=proxies.ca_file, timeout=0.3)
    services = Services(store=kms.store, proxies=ProxyPool(network), region=REGION)
    monitor = InstanceHealthMonitor(services)
    scripted.answer(200, HEALTHY_BODY, delay=1.0)
    try:
        checked = await monitor.check_now(instance_id)
    finally:
        scripted.answer(200, HEALTHY_BODY)
        await services.proxies.aclose()

    assert checked is not None
    assert checked.status is InstanceStatus.ERROR
    assert checked.error_reason is InstanceErrorReason.TIMED_OUT
    assert "timed out after 300 ms" in checked.error_detail


# --- Updating and disconnecting ---------------------------------------------------------


def test_update_configures_and_resets_connected(kms: Kms, proxies: Proxies) -> None:
    client = kms.sdk()
    instance_id = create(client)
    update(client, instance_id, public_settings(proxies))
    assert describe(client, instance_id)["Status"] == "Uninitialized"
    connect(client, instance_id)

    # The same settings again change nothing.
    update(client, instance_id, public_settings(proxies))
    assert describe(client, instance_id)["Status"] == "Connected"

    update(client, instance_id, vpc_settings(proxies))
    described = describe(client, instance_id)
    assert described["Status"] == "Connecting"
    assert described["XkiProxy"]["VpcEndpointServiceName"] == VPC_SERVICE
    connect(client, instance_id)
    assert describe(client, instance_id)["Status"] == "Connected"


def test_disconnect_keeps_instance_disconnected(kms: Kms, proxies: Proxies) -> None:
    client = kms.sdk()
    instance_id = connected_instance(client, public_settings(proxies))

    call(client, "DisconnectKmsInstance", {"KmsInstanceId": instance_id})
    call(client, "DisconnectKmsInstance", {"KmsInstanceId": instance_id})

    described = describe(client, instance_id)
    assert described["Status"] == "Disconnected"
    assert "ErrorReason" not in described
    update(client, instance_id, public_settings(proxies, XkiProxyUriPath="/x/kms/xks/v1"))
    assert describe(client, instance_id)["Status"] == "Disconnected"
    bare = create(client)
    call(client, "DisconnectKmsInstance", {"KmsInstanceId": bare})
    assert describe(client, bare)["Status"] == "Disconnected"


# --- Accounts -----------------------------------------------------------------------------


def test_other_account_instance_not_found(kms: Kms, proxies: Proxies) -> None:
    owner = kms.sdk()
    instance_id = create(owner, **public_settings(proxies))
    other = kms.sdk(other_account=True)

    attempts: list[tuple[str, dict[str, str]]] = [
        ("GetKmsInstance", {"KmsInstanceId": instance_id}),
        ("ConnectKmsInstance", {"KmsInstanceId": instance_id}),
        ("DisconnectKmsInstance", {"KmsInstanceId": instance_id}),
        ("UpdateXkiProxyConfiguration", {"KmsInstanceId": instance_id, **public_settings(proxies)}),
        ("GetKmsInstance", {"KmsInstanceId": "kst-doesnotexist0000000"}),
    ]
    for action, query in attempts:
        error = client_error(lambda action=action, query=query: call(other, action, query))
        assert error.code == "Forbidden.DKMSInstanceNotFound", action
        assert error.status_code == 403
        assert query["KmsInstanceId"] in error.data["Message"]
        assert OTHER_ACCOUNT_ID in error.data["Message"]

    listed = other.list_kms_instances_with_options(
        kms_models.ListKmsInstancesRequest(page_size=100), runtime()
    ).body
    items = listed.kms_instances.kms_instance if listed.kms_instances else []
    assert instance_id not in [item.kms_instance_id for item in items]
    assert describe(owner, instance_id)["Status"] == "Uninitialized"


# --- Parameter checks ----------------------------------------------------------------------


def parameter_cases(
    proxies: Proxies, instance_id: str
) -> list[tuple[str, dict[str, str], str, str]]:
    """(action, query, code, parameter named in the message) for every rejected parameter."""
    endpoint = f"https://localhost:{proxies.public_port}"

    def updated(**changes: str | None) -> dict[str, str]:
        return {"KmsInstanceId": instance_id, **public_settings(proxies, **changes)}

    def updated_vpc(**changes: str | None) -> dict[str, str]:
        return {"KmsInstanceId": instance_id, **vpc_settings(proxies, **changes)}

    missing, invalid = "MissingParameter", "InvalidParameter"
    update_action = "UpdateXkiProxyConfiguration"
    return [
        ("GetKmsInstance", {}, missing, "KmsInstanceId"),
        ("GetKmsInstance", {"KmsInstanceId": "kst-" + "a" * 61}, invalid, "KmsInstanceId"),
        ("GetKmsInstance", {"KmsInstanceId": "key-abc"}, invalid, "KmsInstanceId"),
        ("GetKmsInstance", {"KmsInstanceId": "kst-UPPER"}, invalid, "KmsInstanceId"),
        ("ConnectKmsInstance", {}, missing, "KmsInstanceId"),
        ("DisconnectKmsInstance", {}, missing, "KmsInstanceId"),
        ("CreateKmsInstance", {"InstanceName": "n" * 129}, invalid, "InstanceName"),
        ("CreateKmsInstance", {"InstanceName": ""}, invalid, "InstanceName"),
        ("CreateKmsInstance", {"InstanceName": "bad\x00name"}, invalid, "InstanceName"),
        ("CreateKmsInstance", {"Connectivity": "PUBLIC_ENDPOINT"}, missing, "XkiProxyUriEndpoint"),
        (update_action, {"KmsInstanceId": instance_id}, missing, "Connectivity"),
        (update_action, updated(Connectivity=None), missing, "Connectivity"),
        (update_action, updated(Connectivity="INTERNET"), invalid, "Connectivity"),
        (update_action, updated(Connectivity="public"), invalid, "Connectivity"),
        (update_action, updated(XkiProxyUriEndpoint=None), missing, "XkiProxyUriEndpoint"),
        (
            update_action,
            updated(XkiProxyUriEndpoint="https://" + "a" * 2041),
            invalid,
            "XkiProxyUriEndpoint",
        ),
        (
            update_action,
            updated(XkiProxyUriEndpoint=endpoint.replace("https", "http")),
            invalid,
            "XkiProxyUriEndpoint",
        ),
        (
            update_action,
            updated(XkiProxyUriEndpoint=endpoint + "/kms"),
            invalid,
            "XkiProxyUriEndpoint",
        ),
        (
            update_action,
            updated(XkiProxyUriEndpoint="https://bad_host.example"),
            invalid,
            "XkiProxyUriEndpoint",
        ),
        (update_action, updated(XkiProxyUriPath=None), missing, "XkiProxyUriPath"),
        (update_action, updated(XkiProxyUriPath="/kms/xks/v2"), invalid, "XkiProxyUriPath"),
        (update_action, updated(XkiProxyUriPath="kms/xks/v1"), invalid, "XkiProxyUriPath"),
        (
            update_action,
            updated(XkiProxyUriPath="/" + "a" * 117 + "/kms/xks/v1"),
            invalid,
            "XkiProxyUriPath",
        ),
        (
            update_action,
            updated_vpc(VpcEndpointServiceName=None),
            missing,
            "VpcEndpointServiceName",
        ),
        (
            update_action,
            updated(VpcEndpointServiceName=VPC_SERVICE),
            invalid,
            "VpcEndpointServiceName",
        ),
        (
            update_action,
            updated_vpc(VpcEndpointServiceName="-bad service"),
            invalid,
            "VpcEndpointServiceName",
        ),
        (
            update_action,
            updated_vpc(VpcEndpointServiceName="s" * 256),
            invalid,
            "VpcEndpointServiceName",
        ),
        (update_action, updated(XkiProxyAccessKeyId=None), missing, "XkiProxyAccessKeyId"),
        (
            update_action,
            updated(XkiProxyAccessKeyId="lowercase-access-key-id"),
            invalid,
            "XkiProxyAccessKeyId",
        ),
        (update_action, updated(XkiProxyAccessKeyId="A" * 31), invalid, "XkiProxyAccessKeyId"),
        (update_action, updated(XkiProxySecretAccessKey=None), missing, "XkiProxySecretAccessKey"),
        (
            update_action,
            updated(XkiProxySecretAccessKey=SHORT_SECRET),
            invalid,
            "XkiProxySecretAccessKey",
        ),
        (
            update_action,
            updated(XkiProxySecretAccessKey="A" * 65),
            invalid,
            "XkiProxySecretAccessKey",
        ),
        (update_action, updated(XkiProxySecretAccessKey=""), invalid, "XkiProxySecretAccessKey"),
        (
            update_action,
            updated(XkiProxyTlsCertificateFingerprint="ab" * 31),
            invalid,
            "XkiProxyTlsCertificateFingerprint",
        ),
        (
            update_action,
            updated(XkiProxyTlsCertificateFingerprint="zz" * 32),
            invalid,
            "XkiProxyTlsCertificateFingerprint",
        ),
        (
            update_action,
            updated(XkiProxyTlsCertificateFingerprint="ab:" * 32 + "ab"),
            invalid,
            "XkiProxyTlsCertificateFingerprint",
        ),
        ("ListKmsInstances", {"PageSize": "0"}, invalid, "PageSize"),
        ("ListKmsInstances", {"PageSize": "101"}, invalid, "PageSize"),
        ("ListKmsInstances", {"PageSize": "ten"}, invalid, "PageSize"),
        ("ListKmsInstances", {"PageNumber": "0"}, invalid, "PageNumber"),
        ("ListKmsInstances", {"PageNumber": "-1"}, invalid, "PageNumber"),
    ]


def test_parameter_errors(kms: Kms, proxies: Proxies, sensitive: Callable[[str], None]) -> None:
    sensitive(SHORT_SECRET)
    client = kms.sdk()
    instance_id = create(client, InstanceName="parameter checks")
    secret = proxies.credential.credential.secret.reveal()

    for action, query, code, parameter in parameter_cases(proxies, instance_id):
        error = client_error(lambda action=action, query=query: call(client, action, query))
        case = f"{action} {sorted(query)} -> {error.code}: {error.data['Message']}"
        assert error.code == code, case
        assert error.status_code == 400, case
        assert parameter in error.data["Message"], case
        assert_no_secret(json.dumps(error.data), secret, SHORT_SECRET)

    # Nothing was changed by the rejected updates.
    described = describe(client, instance_id)
    assert described["Status"] == "Uninitialized"
    assert "XkiProxy" not in described


@pytest.mark.parametrize(
    "endpoint",
    ["https://127.0.0.1:{port}", "https://[::1]:{port}", "https://10.0.0.5"],
)
def test_ip_literal_endpoint_refused(kms: Kms, proxies: Proxies, endpoint: str) -> None:
    client = kms.sdk()
    settings = public_settings(
        proxies, XkiProxyUriEndpoint=endpoint.format(port=proxies.public_port)
    )
    error = client_error(lambda: call(client, "CreateKmsInstance", settings))
    assert error.code == "InvalidParameter"
    assert "XkiProxyUriEndpoint" in error.data["Message"]
    assert "IP address" in error.data["Message"]


def test_unmapped_vpc_endpoint_service_refused(kms: Kms, proxies: Proxies) -> None:
    client = kms.sdk()
    instance_id = create(client)
    settings = vpc_settings(proxies, VpcEndpointServiceName=UNMAPPED_SERVICE)
    error = client_error(lambda: update(client, instance_id, settings))
    assert error.code == "InvalidParameter"
    message = error.data["Message"]
    assert UNMAPPED_SERVICE in message
    assert "KMS operator must map it" in message


# --- Health monitor ---------------------------------------------------------------------


async def in_thread(function: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(function)


def restartable_settings(proxy: RestartableProxy) -> dict[str, str]:
    credential = proxy.credential.credential
    return {
        "Connectivity": "PUBLIC_ENDPOINT",
        "XkiProxyUriEndpoint": f"https://localhost:{proxy.port}",
        "XkiProxyUriPath": "/kms/xks/v1",
        "XkiProxyAccessKeyId": credential.access_key_id,
        "XkiProxySecretAccessKey": credential.secret.reveal(),
    }


@pytest.mark.anyio
async def test_monitor_moves_connected_to_error_and_back(
    kms: Kms, restartable: RestartableProxy
) -> None:
    client = kms.sdk()
    instance_id = await in_thread(
        lambda: connected_instance(client, restartable_settings(restartable))
    )
    services = Services(store=kms.store, proxies=ProxyPool(kms.network), region=REGION)
    monitor = InstanceHealthMonitor(services, interval=3600)
    try:
        healthy = await monitor.check_now(instance_id)
        assert healthy is not None
        assert healthy.status is InstanceStatus.CONNECTED

        await in_thread(restartable.rotate_away_credential)
        rejected = await monitor.check_now(instance_id)
        assert rejected is not None
        assert rejected.status is InstanceStatus.ERROR
        assert rejected.error_reason is InstanceErrorReason.CREDENTIALS_REJECTED
        described = await in_thread(lambda: describe(client, instance_id))
        assert described["ErrorReason"] == "CredentialsRejected"

        await in_thread(restartable.restore_credential)
        recovered = await monitor.check_now(instance_id)
        assert recovered is not None
        assert recovered.status is InstanceStatus.CONNECTED
        assert recovered.error_reason is None

        await in_thread(restartable.stop)
        down = await monitor.check_now(instance_id)
        assert down is not None
        assert down.status is InstanceStatus.DISCONNECTED
        assert down.error_reason is InstanceErrorReason.PROXY_UNREACHABLE

        await in_thread(restartable.start)
        checked = await monitor.run_once()
        assert checked is not None
        assert checked >= 1
        described = await in_thread(lambda: describe(client, instance_id))
        assert described["Status"] == "Connected"
        assert "ErrorReason" not in described
    finally:
        await services.proxies.aclose()


@pytest.mark.anyio
async def test_monitor_rounds_in_background(
    kms: Kms, proxies: Proxies, restartable: RestartableProxy
) -> None:
    client = kms.sdk()
    watched = await in_thread(lambda: connected_instance(client, restartable_settings(restartable)))
    disconnected = await in_thread(lambda: connected_instance(client, public_settings(proxies)))
    await in_thread(lambda: call(client, "DisconnectKmsInstance", {"KmsInstanceId": disconnected}))
    waiting = await in_thread(lambda: create(client, **public_settings(proxies)))
    services = Services(store=kms.store, proxies=ProxyPool(kms.network), region=REGION)
    monitor = InstanceHealthMonitor(services, interval=0.2)

    async def wait_for(status: str) -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while True:
            described: dict[str, Any] = await in_thread(lambda: describe(client, watched))
            if described["Status"] == status or time.monotonic() > deadline:
                return described
            await anyio.sleep(0.1)

    await monitor.start()
    try:
        await monitor.start()  # a second start changes nothing
        await in_thread(restartable.stop)
        assert (await wait_for("Disconnected"))["ErrorReason"] == "ProxyUnreachable"
        await in_thread(restartable.start)
        assert "ErrorReason" not in await wait_for("Connected")
    finally:
        await monitor.stop()
        await services.proxies.aclose()
    await monitor.stop()  # stopping twice is harmless

    # An operator's disconnect and an instance never connected are left alone.
    assert (await in_thread(lambda: describe(client, disconnected)))["Status"] == "Disconnected"
    untouched = await in_thread(lambda: describe(client, waiting))
    assert untouched["Status"] == "Uninitialized"
    assert "LastHealthCheckTime" not in untouched


@pytest.mark.anyio
async def test_monitor_update_needs_new_check(kms: Kms, proxies: Proxies) -> None:
    client = kms.sdk()
    instance_id = await in_thread(lambda: connected_instance(client, public_settings(proxies)))
    await in_thread(lambda: update(client, instance_id, vpc_settings(proxies)))
    services = Services(store=kms.store, proxies=ProxyPool(kms.network), region=REGION)
    monitor = InstanceHealthMonitor(services)
    try:
        checked = await monitor.check_now(instance_id)
        assert checked is not None
        assert checked.status is InstanceStatus.CONNECTED
        assert checked.vpc_endpoint_service == VPC_SERVICE
        assert await monitor.check_now("kst-doesnotexist0000000") is None
    finally:
        await services.proxies.aclose()


@pytest.mark.anyio
async def test_monitor_round_needs_job_lock(kms: Kms) -> None:
    services = Services(store=kms.store, proxies=ProxyPool(kms.network), region=REGION)
    monitor = InstanceHealthMonitor(services)
    try:
        with kms.store.try_job_lock(HEALTH_JOB) as held:
            assert held is True
            result = await monitor.run_once()
        if kms.database == "postgresql":
            # Another session (standing in for another KMS node) holds the lock.
            assert result is None
        else:
            assert result is not None
        assert await monitor.run_once() is not None
    finally:
        await services.proxies.aclose()


def test_monitor_interval_must_be_positive(kms: Kms) -> None:
    services = Services(store=kms.store, proxies=ProxyPool(kms.network), region=REGION)
    with pytest.raises(ValueError, match="interval must be more than 0"):
        InstanceHealthMonitor(services, interval=0)


def test_stored_secret_is_encrypted(kms: Kms, proxies: Proxies) -> None:
    client = kms.sdk()
    instance_id = create(client, **public_settings(proxies))
    secret = proxies.credential.credential.secret.reveal()
    with kms.store.session(read_only=True) as session:
        stored = session.instances.get(instance_id)
        raw = session.connection.exec_driver_sql(
            f"SELECT proxy_secret_ciphertext FROM instances WHERE instance_id = '{instance_id}'"
        ).scalar_one()
    assert stored is not None
    assert stored.proxy_secret == Secret(secret)
    assert secret.encode() not in bytes(raw)
