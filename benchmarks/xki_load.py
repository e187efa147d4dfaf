"""Load test of the XKI proxy: encrypt and decrypt against a trivial app on the same stack.

For each worker count, the harness writes a data directory with ``hyok xki
init`` defaults, with the rate limit off and the audit log in the directory.
It starts the real proxy (``hyok xki serve``) and the floor app
(``floor_app.py``) as subprocesses on 127.0.0.1 and waits for ``/healthz``.
Then it measures each operation over keep-alive TLS connections and stops
both servers. All traffic stays on loopback, and every run ends after
``--duration`` seconds or ``--requests`` requests.

Example::

    .venv/bin/python benchmarks/xki_load.py --duration 20 --workers 1,2 --profile

Figures per worker count and operation: throughput, p50 and p99 latency,
errors, CPU time of the servers and of the client, peak RSS of the server's
process tree, and the ratio of encrypt and decrypt throughput to the floor's.
Client and servers share the machine's CPUs, so the client's CPU share is
printed next to the servers'. Plaintexts and the SigV4 secret never appear in
the output. The request files that wrk reads contain Base64 plaintexts of
random test data, and each is deleted when its run ends.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import functools
import http.client
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from hyok.common.sigv4 import Credential, sign
from hyok.xki.bootstrap import InitOptions, initialise

BENCHMARKS_DIR: Final = Path(__file__).resolve().parent
WRK_SCRIPT: Final = BENCHMARKS_DIR / "wrk" / "xks.lua"
FLOOR_APP: Final = BENCHMARKS_DIR / "floor_app.py"
# The body every floor response carries; floor_app.FLOOR_BODY must be equal.
FLOOR_BODY: Final = b'{"status":"ok"}'
HOST: Final = "127.0.0.1"
REGION: Final = "cn-hangzhou"
OPERATIONS: Final = ("encrypt", "decrypt", "floor")
CIPHERTEXT_METADATA: Final = b"hyok/1"
PRINCIPAL_ARN: Final = "acs:ram::1234567890123456:role/hyok-load-test"
KEY_ARN: Final = "acs:kms:cn-hangzhou:1234567890123456:key/key-hyok-load-test"
# SigV4 signatures are valid for 5 minutes, and pre-signed requests are signed
# once before each run, so one run must end well within that.
MAX_DURATION: Final = 240
STARTUP_SECONDS: Final = 30.0
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


# Requests ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sealed:
    """One encrypt result, kept to build decrypt requests and to check them."""

    plaintext: bytes
    aad: bytes
    ciphertext: bytes
    iv: bytes
    tag: bytes


@dataclass(frozen=True)
class Prepared:
    """A complete signed HTTP/1.1 request and the check of its response body.

    ``check`` returns None for a correct body, or a description of what is
    wrong that contains no plaintext.
    """

    raw: bytes
    check: Callable[[bytes], str | None]
    plaintext: bytes = b""
    aad: bytes = b""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a Base64 string")
    return binascii.a2b_base64(value, strict_mode=True)


def _metadata(operation: str) -> dict[str, str]:
    return {
        "awsPrincipalArn": PRINCIPAL_ARN,
        "kmsKeyArn": KEY_ARN,
        "kmsOperation": operation,
        "kmsRequestId": str(uuid.uuid4()),
    }


def _dump(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode("ascii")


def parse_encrypt_response(body: bytes, plaintext_length: int) -> Sealed | str:
    """Parse an encrypt response. Return its fields, or a description of what is wrong."""
    try:
        document = json.loads(body)
        ciphertext = _unb64(document["ciphertext"])
        iv = _unb64(document["initializationVector"])
        tag = _unb64(document["authenticationTag"])
        metadata = _unb64(document["ciphertextMetadata"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return "encrypt response is not a valid XKS Encrypt body"
    if len(ciphertext) != plaintext_length or len(iv) != 12 or len(tag) != 16:
        return (f"encrypt response has {len(ciphertext)} ciphertext, {len(iv)} IV and "
                f"{len(tag)} tag bytes; expected {plaintext_length}, 12 and 16")
    if metadata != CIPHERTEXT_METADATA:
        return "encrypt response has unexpected ciphertextMetadata"
    return Sealed(b"", b"", ciphertext, iv, tag)


def _check_decrypt(expected: bytes) -> Callable[[bytes], str | None]:
    def check(body: bytes) -> str | None:
        try:
            plaintext = _unb64(json.loads(body)["plaintext"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return "decrypt response is not a valid XKS Decrypt body"
        return None if plaintext == expected else "decrypt response has the wrong plaintext"

    return check


def _check_floor(body: bytes) -> str | None:
    return None if body == FLOOR_BODY else "floor response differs from the fixed body"


class RequestFactory:
    """Build signed XKS requests for one server port."""

    def __init__(self, port: int, key_id: str, credential: Credential, *,
                 plaintext_bytes: int, aad_bytes: int) -> None:
        self.port = port
        self.key_id = key_id
        self._credential = credential
        self._plaintext_bytes = plaintext_bytes
        self._aad_bytes = aad_bytes

    def _render(self, operation: str, body: bytes) -> bytes:
        path = f"/kms/xks/v1/keys/{self.key_id}/{operation}"
        headers = {"Content-Type": "application/json"}
        added = sign("POST", f"https://{HOST}:{self.port}{path}", headers, body,
                     self._credential, region=REGION, now=datetime.now(UTC))
        lines = [f"POST {path} HTTP/1.1", f"Host: {added['Host']}",
                 "Content-Type: application/json", f"X-Amz-Date: {added['X-Amz-Date']}",
                 f"Authorization: {added['Authorization']}", f"Content-Length: {len(body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body

    def encrypt(self, *, floor: bool = False) -> Prepared:
        """Build a request to encrypt fresh random data.

        With ``floor``, the request's check expects the floor's body instead.
        """
        plaintext = os.urandom(self._plaintext_bytes)
        aad = os.urandom(self._aad_bytes)
        body = _dump({
            "requestMetadata": _metadata("Encrypt"),
            "plaintext": _b64(plaintext),
            "additionalAuthenticatedData": _b64(aad),
            "encryptionAlgorithm": "AES_GCM",
        })

        def check(response: bytes) -> str | None:
            result = parse_encrypt_response(response, len(plaintext))
            return result if isinstance(result, str) else None

        return Prepared(self._render("encrypt", body), _check_floor if floor else check,
                        plaintext, aad)

    def decrypt(self, sealed: Sealed) -> Prepared:
        body = _dump({
            "requestMetadata": _metadata("Decrypt"),
            "ciphertext": _b64(sealed.ciphertext),
            "ciphertextMetadata": _b64(CIPHERTEXT_METADATA),
            "additionalAuthenticatedData": _b64(sealed.aad),
            "initializationVector": _b64(sealed.iv),
            "authenticationTag": _b64(sealed.tag),
            "encryptionAlgorithm": "AES_GCM",
        })
        return Prepared(self._render("decrypt", body), _check_decrypt(sealed.plaintext))


# Python client ----------------------------------------------------------------


@dataclass
class ClientRun:
    """Figures of one load run, as the client measured them."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    checked: int = 0
    check_failures: Counter[str] = field(default_factory=Counter)
    client_cpu_seconds: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    if b"\r\ntransfer-encoding: chunked" in lower:
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    match = re.search(rb"\r\ncontent-length: *([0-9]+)", lower)
    return status, await reader.readexactly(int(match.group(1)) if match else 0)


def _percentile_ms(sorted_seconds: Sequence[float], fraction: float) -> float:
    if not sorted_seconds:
        return 0.0
    index = min(len(sorted_seconds) - 1, max(0, math.ceil(fraction * len(sorted_seconds)) - 1))
    return sorted_seconds[index] * 1000


async def _drive_connection(port: int, context: ssl.SSLContext,
                            next_request: Callable[[], Prepared], stop_at: float,
                            budget: list[int], check_every: int, run: ClientRun) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            if writer is None or reader is None:
                try:
                    reader, writer = await asyncio.open_connection(HOST, port, ssl=context)
                except (OSError, ssl.SSLError):
                    run.errors += 1
                    await asyncio.sleep(0.05)
                    continue
            prepared = next_request()
            started = time.perf_counter()
            try:
                writer.write(prepared.raw)
                status, body = await _read_response(reader)
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
                run.errors += 1
                writer.close()
                reader = writer = None
                continue
            run.latencies.append(time.perf_counter() - started)
            run.requests += 1
            if status != 200:
                run.errors += 1
                run.check_failures[f"status {status}"] += 1
            elif run.requests % check_every == 0:
                run.checked += 1
                problem = prepared.check(body)
                if problem is not None:
                    run.check_failures[problem] += 1
    finally:
        if writer is not None:
            writer.close()


def run_python_client(port: int, context: ssl.SSLContext, next_request: Callable[[], Prepared],
                      *, seconds: float, connections: int, max_requests: int,
                      check_every: int) -> ClientRun:
    """Send requests over ``connections`` keep-alive connections until time or budget ends."""
    run = ClientRun()
    budget = [max_requests]

    async def drive() -> None:
        stop_at = time.perf_counter() + seconds
        tasks = [_drive_connection(port, context, next_request, stop_at, budget, check_every, run)
                 for _ in range(connections)]
        # A server that stops responding must not hold the run past its time.
        await asyncio.wait_for(asyncio.gather(*tasks), seconds + 30)

    cpu_before = time.process_time()
    started = time.perf_counter()
    _run_async(drive())
    run.seconds = time.perf_counter() - started
    run.client_cpu_seconds = time.process_time() - cpu_before
    ordered = sorted(run.latencies)
    run.p50_ms = _percentile_ms(ordered, 0.50)
    run.p99_ms = _percentile_ms(ordered, 0.99)
    return run


def _run_async(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def exchange(port: int, context: ssl.SSLContext, raws: Sequence[bytes]) -> list[tuple[int, bytes]]:
    """Send requests one after another on one connection and return every status and body."""

    async def send_all() -> list[tuple[int, bytes]]:
        reader, writer = await asyncio.open_connection(HOST, port, ssl=context)
        answers = []
        try:
            for raw in raws:
                writer.write(raw)
                answers.append(await asyncio.wait_for(_read_response(reader), 10))
        finally:
            writer.close()
        return answers

    result: list[tuple[int, bytes]] = _run_async(send_all())
    return result


# wrk client -------------------------------------------------------------------


def run_wrk(port: int, pool: Sequence[bytes], request_file: Path, *, seconds: int,
            connections: int, threads: int) -> ClientRun:
    """Run wrk with the pre-signed ``pool`` and return its figures."""
    with request_file.open("wb") as stream:
        for raw in pool:
            stream.write(b"%d\n" % len(raw) + raw)
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
               "--timeout", "5s", "-s", str(WRK_SCRIPT), f"https://{HOST}:{port}/",
               "--", str(request_file)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=False,
                                   timeout=seconds + 60)
    finally:
        request_file.unlink(missing_ok=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((text for text in completed.stdout.splitlines()
                 if text.startswith("xki-load-result ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed with exit code {completed.returncode}: "
                           f"{completed.stderr.strip()[-500:]}")
    values = {name: float(value) for name, value in
              (pair.split("=", 1) for pair in line.split()[1:])}
    errors = sum(values[name] for name in
                 ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    run = ClientRun(requests=int(values["requests"]), errors=int(errors),
                    seconds=values["duration_us"] / 1e6 or elapsed)
    run.client_cpu_seconds = ((after.ru_utime - before.ru_utime)
                              + (after.ru_stime - before.ru_stime))
    run.p50_ms = values["p50_us"] / 1000
    run.p99_ms = values["p99_us"] / 1000
    return run


# Processes --------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces, but the fields after it cannot.
    return text[text.rindex(")") + 2:].split()


def process_tree(pid: int) -> list[int]:
    """Return ``pid`` followed by the IDs of all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` and its descendants, in seconds."""
    ticks = 0
    for member in process_tree(pid):
        fields = _proc_stat(member)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def tree_peak_rss(pid: int) -> int:
    """Sum of VmHWM (peak resident set) over ``pid`` and its descendants, in bytes."""
    total = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmHWM:\s+([0-9]+) kB", status, re.MULTILINE)
        if match:
            total += int(match.group(1)) * 1024
    return total


def system_cpu_seconds() -> tuple[float, float]:
    """Busy and stolen CPU time of the whole machine so far, in seconds.

    Busy is the user, nice, system, irq and softirq time of every CPU. Stolen
    is the time the hypervisor gave to other guests while this one wanted to run.
    """
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """A server subprocess in its own session, with its output in a file."""

    def __init__(self, name: str, command: list[str], port: int, output: Path,
                 cwd: Path) -> None:
        self.name = name
        self.port = port
        self.output = output
        # The data directory's files provide every secret, not the caller's environment.
        env = {key: value for key, value in os.environ.items() if not key.startswith("HYOK_")}
        with output.open("wb") as stream:
            self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=stream,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, context: ssl.SSLContext) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.process.returncode} "
                                   f"during startup; its output:\n{self.output_tail()}")
            connection = http.client.HTTPSConnection(HOST, self.port, context=context, timeout=2)
            try:
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            finally:
                connection.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not respond to /healthz on port {self.port} "
                                   f"within {STARTUP_SECONDS:.0f} s; its output:\n"
                                   f"{self.output_tail()}")
            time.sleep(0.1)

    def output_tail(self) -> str:
        try:
            return self.output.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no output)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                # Workers that outlive their parent are in the session it leads.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


# Profiling --------------------------------------------------------------------

# Cost categories, matched from the innermost frame outwards. The first match wins.
_CATEGORIES: Final = (
    ("SigV4 verification", ("hyok/common/sigv4.py",)),
    ("audit log", ("hyok/xki/audit.py",)),
    ("metrics", ("hyok/xki/metrics.py", "prometheus_client/")),
    ("XKS JSON parse and build", ("hyok/xki/xks.py",)),
    ("file backend: AES-GCM, keystore check", ("hyok/kmi/", "cryptography/")),
    ("XKS app: routing and checks", ("hyok/xki/app.py", "hyok/common/ids.py")),
    ("TLS (OpenSSL, uvloop SSL)", ("SSL_", "ssl3_", "tls1", "tls13", "EVP_", "aesni", "gcm_",
                                   "ossl_", "sslproto", "ssl.py", "_ssl__")),
    ("uvicorn HTTP and ASGI", ("uvicorn/", "httptools")),
)


_PROCESS_FRAME: Final = re.compile(r'^process [0-9]+:"(?:[^"\\]|\\.)*"(?:;|$)')


def _category(stack: Sequence[str]) -> str:
    for frame in reversed(stack):
        for name, markers in _CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return "event loop, syscalls and other"


def summarise_profile(path: Path, cpu_seconds_per_request: float, top: int = 15
                      ) -> dict[str, Any]:
    """Read py-spy's raw (collapsed) output and return shares by category and by function."""
    categories: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        # py-spy puts a 'process PID:"command line"' frame at the root of each
        # stack, and a worker's command line contains semicolons.
        stack_text = _PROCESS_FRAME.sub("", stack_text)
        stack = [frame for frame in stack_text.split(";") if frame]
        if not stack:
            continue
        count = int(count_text)
        total += count
        categories[_category(stack)] += count
        own[stack[-1]] += count
    per_request_us = cpu_seconds_per_request * 1e6

    def rows(counter: Counter[str], limit: int) -> list[dict[str, Any]]:
        return [{"name": name, "share": count / total, "us_per_request": count / total
                 * per_request_us} for name, count in counter.most_common(limit)]

    return {"samples": total, "cpu_us_per_request": per_request_us,
            "categories": rows(categories, len(categories)) if total else [],
            "self": rows(own, top) if total else []}


# In-process handler cost ------------------------------------------------------


class _Channel:
    """ASGI receive and send callables that replay one request body and keep the response."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 0
        self.response = b""

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.response = message.get("body", b"")


def asgi_request(raw: bytes) -> tuple[dict[str, Any], bytes]:
    """Build the ASGI scope uvicorn passes for one raw HTTP/1.1 request, and split off the body."""
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *header_lines = head.split(b"\r\n")
    method, path, _ = request_line.split(b" ")
    headers = []
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
             "http_version": "1.1", "scheme": "https", "method": method.decode("ascii"),
             "path": path.decode("ascii"), "raw_path": path, "query_string": b"",
             "root_path": "", "headers": headers, "client": (HOST, 50000),
             "server": (HOST, 443), "state": {}}
    return scope, body


async def _call_many(app: Any, requests: Sequence[Prepared], count: int, repeats: int
                     ) -> dict[str, Any]:
    channel = _Channel()
    scopes = [asgi_request(item.raw) for item in requests]
    per_request: list[float] = []
    errors = 0
    problems: Counter[str] = Counter()
    for _ in range(repeats):
        started = time.process_time()
        for index in range(count):
            scope, channel.body = scopes[index % len(scopes)]
            await app(dict(scope), channel.receive, channel.send)
            if channel.status != 200:
                errors += 1
        per_request.append((time.process_time() - started) / count)
        # The last response of each repeat is checked in full.
        problem = requests[(count - 1) % len(requests)].check(channel.response)
        if problem is not None:
            problems[problem] += 1
    ordered = sorted(per_request)
    return {"requests": count * repeats, "errors": errors, "check_failures": dict(problems),
            "us_per_request_min": round(ordered[0] * 1e6, 1),
            "us_per_request_median": round(ordered[len(ordered) // 2] * 1e6, 1)}


async def _with_lifespan(app: Any, body: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``body`` between the lifespan startup and shutdown of ``app``."""
    messages: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    started = asyncio.Event()

    async def receive() -> dict[str, str]:
        return await messages.get()

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                     receive, send))
    await messages.put({"type": "lifespan.startup"})
    await asyncio.wait_for(started.wait(), STARTUP_SECONDS)
    try:
        return await body()
    finally:
        await messages.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(task, 10)


# The load test ----------------------------------------------------------------


@dataclass
class Figures:
    """The figures of one operation at one worker count."""

    workers: int
    operation: str
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    server_cpu_seconds: float
    server_cpu_us_per_request: float
    server_cores: float
    client_cores: float
    other_cores: float
    steal_cores: float
    peak_rss_bytes: int
    check_failures: dict[str, int]
    checked: int
    ratio_to_floor: float | None = None


@dataclass
class Options:
    duration: int
    warmup: int
    connections: int
    workers: list[int]
    client: str
    client_threads: int
    signing: str
    operations: list[str]
    requests: int
    rounds: int
    pool: int
    plaintext_bytes: int
    aad_bytes: int
    verify: int
    check_every: int
    profile: bool
    perf: bool
    in_process: int
    work_dir: Path | None
    json: str | None


class Bench:
    """One worker count: its data directory, the proxy, the floor app and their figures."""

    def __init__(self, options: Options, workers: int, root: Path) -> None:
        self.options = options
        self.workers = workers
        self.directory = root / f"workers-{workers}"
        port = free_port()
        result = initialise(InitOptions(directory=self.directory, host=HOST, port=port,
                                        admin_port=free_port(), region=REGION, kdf_cost=10))
        self.config = result.config_path
        self._adjust_config()
        self.context = ssl.create_default_context(cafile=str(result.ca_file))
        credential = result.credential.credential
        sizes = {"plaintext_bytes": options.plaintext_bytes, "aad_bytes": options.aad_bytes}
        self.proxy_requests = RequestFactory(port, result.key_id, credential, **sizes)
        self.floor_requests = RequestFactory(free_port(), result.key_id, credential, **sizes)
        self.sealed: list[Sealed] = []
        self.servers: list[Server] = []
        self.tls = "unknown"
        self.figures: list[Figures] = []
        self.verification: dict[str, dict[str, Any]] = {}
        self.profiles: dict[str, Any] = {}

    def _adjust_config(self) -> None:
        text = self.config.read_text()
        replacements = (
            (r"(?m)^rate_limit = .*$", "rate_limit = 0"),
            (r'(?m)^file = "logs/audit.log"$', f"file = {json.dumps(str(self.audit_log))}"),
            (r"(?m)^(port = [0-9]+\n)(cert_file)", rf"\1workers = {self.workers}\n\2"),
        )
        for pattern, replacement in replacements:
            text, count = re.subn(pattern, replacement, text)
            if count != 1:
                raise RuntimeError(f"the xki.toml written by initialise has no line matching "
                                   f"{pattern!r}; update xki_load.py")
        self.config.write_text(text)

    @property
    def audit_log(self) -> Path:
        return self.directory / "logs" / "audit.log"

    def start(self) -> None:
        hyok = Path(sys.executable).with_name("hyok")
        serve = ([str(hyok)] if hyok.exists() else [sys.executable, "-m", "hyok.cli"])
        self.proxy = Server("proxy", [*serve, "xki", "serve", "--config", str(self.config),
                                      "--log-level", "warning"],
                            self.proxy_requests.port, self.directory / "proxy.log",
                            self.directory)
        self.servers.append(self.proxy)
        self.floor = Server("floor app", [sys.executable, str(FLOOR_APP), "--config",
                                          str(self.config), "--port",
                                          str(self.floor_requests.port)],
                            self.floor_requests.port, self.directory / "floor.log",
                            self.directory)
        self.servers.append(self.floor)
        self.proxy.wait_healthy(self.context)
        self.floor.wait_healthy(self.context)
        with socket.create_connection((HOST, self.proxy.port), timeout=5) as raw, \
                self.context.wrap_socket(raw, server_hostname=HOST) as tls:
            cipher = tls.cipher()
            self.tls = f"{tls.version()} {cipher[0] if cipher else ''}".strip()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    # Requests and checks -------------------------------------------------

    def seal_pool(self) -> None:
        """Encrypt the decrypt pool through the proxy, checking every response."""
        prepared = [self.proxy_requests.encrypt() for _ in range(self.options.pool)]
        answers = exchange(self.proxy.port, self.context, [item.raw for item in prepared])
        for item, (status, body) in zip(prepared, answers, strict=True):
            if status != 200:
                raise RuntimeError(f"encrypt returned status {status} while preparing the "
                                   f"decrypt requests: {_error_name(body)}")
            result = parse_encrypt_response(body, len(item.plaintext))
            if isinstance(result, str):
                raise RuntimeError(result)
            self.sealed.append(Sealed(item.plaintext, item.aad, result.ciphertext, result.iv,
                                      result.tag))

    def verify(self, stage: str) -> None:
        """Check a sample of each operation: status 200 and a correct body.

        Encrypt results are decrypted again and must give back their plaintext.
        """
        count = self.options.verify
        encrypts = [self.proxy_requests.encrypt() for _ in range(count)]
        answers = exchange(self.proxy.port, self.context, [item.raw for item in encrypts])
        failures: Counter[str] = Counter()
        round_trip = []
        for item, (status, body) in zip(encrypts, answers, strict=True):
            result = parse_encrypt_response(body, len(item.plaintext)) if status == 200 else (
                f"status {status}: {_error_name(body)}")
            if isinstance(result, str):
                failures[result] += 1
            else:
                round_trip.append(self.proxy_requests.decrypt(
                    Sealed(item.plaintext, item.aad, result.ciphertext, result.iv, result.tag)))
        decrypts = round_trip + [self.proxy_requests.decrypt(sealed)
                                 for sealed in self.sealed[:count]]
        floors = [self.floor_requests.encrypt(floor=True) for _ in range(count)]
        checks = ((self.proxy.port, decrypts), (self.floor.port, floors))
        for port, items in checks:
            for item, (status, body) in zip(items, exchange(port, self.context,
                                                            [i.raw for i in items]), strict=True):
                problem = item.check(body) if status == 200 else (
                    f"status {status}: {_error_name(body)}")
                if problem is not None:
                    failures[problem] += 1
        self.verification[stage] = {
            "encrypt_checked": len(encrypts),
            "decrypt_checked": len(decrypts),
            "encrypt_round_trips": len(round_trip),
            "floor_checked": len(floors),
            "failures": sum(failures.values()),
        }
        if failures:
            self.verification[stage]["messages"] = dict(failures)

    def _next_request(self, operation: str) -> Callable[[], Prepared]:
        """Return the request source of one run: a pre-signed pool in turn, or fresh requests."""
        make: Callable[[], Prepared]
        if operation == "encrypt":
            make = self.proxy_requests.encrypt
        elif operation == "floor":
            make = functools.partial(self.floor_requests.encrypt, floor=True)
        else:
            sealed = _cycle(self.sealed)

            def make() -> Prepared:
                return self.proxy_requests.decrypt(next(sealed))
        if self.options.signing == "fresh":
            return make
        pool = [make() for _ in range(self.options.pool)]
        return _cycle(pool).__next__

    # Load runs -----------------------------------------------------------

    def _server_for(self, operation: str) -> Server:
        return self.floor if operation == "floor" else self.proxy

    def _load(self, operation: str, seconds: int, max_requests: int) -> ClientRun:
        server = self._server_for(operation)
        options = self.options
        if options.client == "wrk":
            next_request = self._next_request(operation)
            pool = [next_request().raw for _ in range(options.pool)]
            return run_wrk(server.port, pool, self.directory / f"{operation}.requests",
                           seconds=seconds, connections=options.connections,
                           threads=options.client_threads)
        return run_python_client(server.port, self.context, self._next_request(operation),
                                 seconds=seconds, connections=options.connections,
                                 max_requests=max_requests, check_every=options.check_every)

    def measure(self, operation: str) -> Figures:
        server = self._server_for(operation)
        options = self.options
        if options.warmup:
            self._load(operation, options.warmup, options.requests)
        cpu_before = tree_cpu_seconds(server.process.pid)
        busy_before, steal_before = system_cpu_seconds()
        run = self._load(operation, options.duration, options.requests)
        cpu = tree_cpu_seconds(server.process.pid) - cpu_before
        busy_after, steal_after = system_cpu_seconds()
        seconds = run.seconds or 1e-9
        other = (busy_after - busy_before) - cpu - run.client_cpu_seconds
        figures = Figures(
            workers=self.workers, operation=operation, requests=run.requests,
            errors=run.errors, seconds=round(seconds, 3),
            requests_per_second=round(run.requests / seconds, 1),
            p50_ms=round(run.p50_ms, 3), p99_ms=round(run.p99_ms, 3),
            server_cpu_seconds=round(cpu, 2),
            server_cpu_us_per_request=round(cpu / max(run.requests, 1) * 1e6, 1),
            server_cores=round(cpu / seconds, 2),
            client_cores=round(run.client_cpu_seconds / seconds, 2),
            other_cores=round(max(other, 0.0) / seconds, 2),
            steal_cores=round((steal_after - steal_before) / seconds, 2),
            peak_rss_bytes=tree_peak_rss(server.process.pid),
            check_failures=dict(run.check_failures), checked=run.checked,
        )
        self.figures.append(figures)
        return figures

    def profile(self, operation: str) -> None:
        """Run ``operation`` once more under py-spy and summarise where the server spends CPU."""
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(py_spy).exists():
            raise RuntimeError("py-spy is not installed; install it with "
                               "'.venv/bin/pip install py-spy' or run without --profile")
        server = self._server_for(operation)
        output = self.directory / f"py-spy-{operation}.txt"
        command = [py_spy, "record", "--pid", str(server.process.pid), "--subprocesses",
                   "--function", "--rate", "250", "--format", "raw", "--output", str(output),
                   "--duration", str(self.options.duration + 1), "--nonblocking"]
        run, cpu = self._load_under(command, operation, output)
        summary = summarise_profile(output, cpu / max(run.requests, 1))
        summary["requests_per_second"] = round(run.requests / (run.seconds or 1e-9), 1)
        self.profiles[f"py-spy {operation}"] = summary

    def perf_profile(self, operation: str) -> None:
        """Run ``operation`` once more under perf and summarise the server's CPU by library."""
        server = self._server_for(operation)
        output = self.directory / f"perf-{operation}.data"
        pids = ",".join(str(pid) for pid in process_tree(server.process.pid))
        command = ["perf", "record", "--quiet", "-e", "cpu-clock", "-F", "999", "-p", pids,
                   "-o", str(output), "--", "sleep", str(self.options.duration + 1)]
        run, cpu = self._load_under(command, operation, output)
        report = subprocess.run(
            ["perf", "report", "-i", str(output), "--stdio", "--sort", "dso", "--no-children",
             "-n"], capture_output=True, text=True, check=False, timeout=120)
        shares, samples = [], 0
        for line in report.stdout.splitlines():
            match = re.match(r"\s*([0-9.]+)%\s+([0-9]+)\s+(\S.*?)\s*$", line)
            if match:
                shares.append((match.group(3), float(match.group(1)) / 100))
                samples += int(match.group(2))
        per_request_us = cpu / max(run.requests, 1) * 1e6
        self.profiles[f"perf {operation}"] = {
            "samples": samples, "cpu_us_per_request": per_request_us,
            "requests_per_second": round(run.requests / (run.seconds or 1e-9), 1),
            "categories": [{"name": name, "share": share, "us_per_request": share * per_request_us}
                           for name, share in shares[:12]],
            "self": [],
        }

    def _load_under(self, command: list[str], operation: str, output: Path
                    ) -> tuple[ClientRun, float]:
        """Run one load of ``operation`` while the profiler ``command`` samples the server."""
        server = self._server_for(operation)
        log_path = output.with_suffix(".log")
        with log_path.open("wb") as log:
            profiler = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            try:
                time.sleep(1.0)  # the profiler attaches to every process before the load starts
                cpu_before = tree_cpu_seconds(server.process.pid)
                run = self._load(operation, self.options.duration, self.options.requests)
                cpu = tree_cpu_seconds(server.process.pid) - cpu_before
                profiler.wait(timeout=self.options.duration + 60)
            finally:
                if profiler.poll() is None:
                    profiler.terminate()
                    profiler.wait(10)
        if profiler.returncode != 0 or not output.exists():
            raise RuntimeError(f"{command[0]} failed with exit code {profiler.returncode}; "
                               f"see {log_path}")
        return run, cpu

    def in_process(self) -> dict[str, Any]:
        """Call the proxy's ASGI app and the floor app directly, without TLS, HTTP or sockets.

        Each operation runs ``--in-process`` requests ``--rounds`` times (at
        least 3) in this process, and the figures are CPU time per request.
        """
        from floor_app import app as floor_app
        from hyok.xki.app import XksApp
        from hyok.xki.runtime import Proxy
        from hyok.xki.settings import load_settings

        proxy = Proxy(load_settings(self.config))
        app = XksApp(proxy)
        count, repeats = self.options.in_process, max(3, self.options.rounds)

        async def measure_all() -> dict[str, Any]:
            encrypts = [self.proxy_requests.encrypt() for _ in range(self.options.pool)]
            channel = _Channel()
            for item in encrypts:
                scope, channel.body = asgi_request(item.raw)
                await app(scope, channel.receive, channel.send)
                result = parse_encrypt_response(channel.response, len(item.plaintext))
                if channel.status != 200 or isinstance(result, str):
                    raise RuntimeError(f"in-process encrypt failed with status {channel.status}")
                self.sealed.append(Sealed(item.plaintext, item.aad, result.ciphertext,
                                          result.iv, result.tag))
            results = {}
            for operation in self.options.operations:
                pool = [self._next_request(operation)() for _ in range(self.options.pool)]
                target = floor_app if operation == "floor" else app
                results[operation] = await _call_many(target, pool, count, repeats)
            return results

        try:
            results: dict[str, Any] = _run_async(_with_lifespan(app, measure_all))
        finally:
            proxy.close()
        return results

    def audit_outcomes(self) -> dict[str, int]:
        """Count the proxy's audit lines and those whose outcome is not ok."""
        lines = failures = 0
        with self.audit_log.open("rb") as stream:
            for line in stream:
                lines += 1
                if b'"event":"xks"' in line and b'"outcome":"ok"' not in line:
                    failures += 1
        return {"lines": lines, "not_ok": failures}


def _cycle(items: Sequence[Any]) -> Iterator[Any]:
    while True:
        yield from items


def _error_name(body: bytes) -> str:
    try:
        return str(json.loads(body).get("errorName", "no errorName"))[:60]
    except (ValueError, AttributeError):
        return "body is not JSON"


# Report -----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("hyok", "uvicorn", "httptools", "uvloop", "cryptography"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    wrk = "not installed"
    if shutil.which("wrk"):
        result = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        wrk = (result.stdout or result.stderr).split(" [", 1)[0].strip()
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "openssl": ssl.OPENSSL_VERSION,
            "packages": versions, "wrk": wrk}


def median_figures(figures: Sequence[Figures]) -> list[Figures]:
    """Pick, per worker count and operation, the round with the median throughput."""
    groups: dict[tuple[int, str], list[Figures]] = {}
    for item in figures:
        groups.setdefault((item.workers, item.operation), []).append(item)
    chosen = []
    for group in groups.values():
        ordered = sorted(group, key=lambda item: item.requests_per_second)
        chosen.append(ordered[(len(ordered) - 1) // 2])
    floors = {item.workers: item.requests_per_second for item in chosen
              if item.operation == "floor"}
    for item in chosen:
        floor = floors.get(item.workers)
        if floor and item.operation != "floor":
            item.ratio_to_floor = round(item.requests_per_second / floor, 3)
    return chosen


def render_in_process(results: dict[str, Any]) -> list[str]:
    lines = ["in-process: ASGI apps called directly in one process, without TLS, HTTP "
             "parsing or sockets; CPU time per request, best and median repeat",
             f"{'operation':<9} {'best us':>8} {'median us':>9} {'requests':>9} {'errors':>6}"]
    for operation, item in results.items():
        lines.append(f"{operation:<9} {item['us_per_request_min']:>8.1f} "
                     f"{item['us_per_request_median']:>9.1f} {item['requests']:>9} "
                     f"{item['errors']:>6}")
        for message, count in item["check_failures"].items():
            lines.append(f"  {count} x {message}")
    return lines


def _render_header(report: dict[str, Any]) -> list[str]:
    info, settings = report["machine"], report["settings"]
    packages = info["packages"]
    lines = [
        "XKI proxy load test",
        f"machine: {info['cpus']} CPUs ({info['cpu_model']}), Linux {info['kernel']}, "
        f"Python {info['python']}, {info['openssl']}",
        f"stack: uvicorn {packages['uvicorn']}, httptools {packages['httptools']}, "
        f"uvloop {packages['uvloop']}, cryptography {packages['cryptography']}",
    ]
    if "in_process" in report:
        return lines

    client = settings["client"]
    if client == "wrk":
        client += f" ({info['wrk']}, {settings['client_threads']} thread)"
    lines.append(f"client: {client}, {settings['signing']} signing, "
                 f"{settings['connections']} keep-alive TLS connections")
    lines.append(f"TLS negotiated by this script's client: {report.get('tls', 'unknown')}")
    lines.append(f"runs: {settings['duration']} s each after {settings['warmup']} s of "
                 f"warm-up, {settings['rounds']} round(s), median round shown; client and "
                 "servers share the CPUs")
    return lines


def _render_table(results: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        f"{'workers':>7} {'operation':<9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'errors':>6} {'vs floor':>8} {'server':>6} {'client':>6} {'other':>6} {'steal':>6} "
        f"{'us/req':>6} {'peak RSS':>9}",
    ]
    for item in results:
        ratio = f"{item['ratio_to_floor']:.2f}" if item["ratio_to_floor"] is not None else "-"
        lines.append(
            f"{item['workers']:>7} {item['operation']:<9} {item['requests_per_second']:>8.0f} "
            f"{item['p50_ms']:>7.2f} {item['p99_ms']:>7.2f} {item['errors']:>6} {ratio:>8} "
            f"{item['server_cores']:>6.2f} {item['client_cores']:>6.2f} "
            f"{item['other_cores']:>6.2f} {item['steal_cores']:>6.2f} "
            f"{item['server_cpu_us_per_request']:>6.0f} {item['peak_rss_bytes'] / 2**20:>5.1f} MiB"
        )
    lines.append("")
    lines.append("server, client, other, steal: CPU cores used on average by the server's "
                 "processes, the load generator, the rest of the machine, and other guests "
                 "of the hypervisor (steal)")
    lines.append("us/req: server CPU time per request; peak RSS: sum of VmHWM over the "
                 "server's processes since they started")
    return lines


def _render_checks(report: dict[str, Any]) -> list[str]:
    lines = []
    for workers, stages in report["verification"].items():
        for stage, result in stages.items():
            lines.append(
                f"verified (workers {workers}, {stage}): {result['encrypt_checked']} encrypt, "
                f"{result['decrypt_checked']} decrypt ({result['encrypt_round_trips']} of them "
                f"round trips of those encrypts), {result['floor_checked']} floor responses; "
                f"{result['failures']} failures")
            for message, count in result.get("messages", {}).items():
                lines.append(f"  {count} x {message}")
    for workers, audit in report["audit"].items():
        lines.append(f"audit log (workers {workers}): {audit['lines']} lines, "
                     f"{audit['not_ok']} with an outcome other than ok")
    return lines


def _render_profiles(profiles: dict[str, Any]) -> list[str]:
    lines = []
    for key, summary in profiles.items():
        lines.append("")
        lines.append(f"{key}: {summary['samples']} samples at "
                     f"{summary['requests_per_second']:.0f} req/s, "
                     f"{summary['cpu_us_per_request']:.0f} us of server CPU per request")
        for row in summary["categories"]:
            lines.append(f"  {row['share']:>6.1%} {row['us_per_request']:>6.1f} us  {row['name']}")

        if summary["self"]:
            lines.append("  top functions by own time:")
        for row in summary["self"]:
            lines.append(f"  {row['share']:>6.1%} {row['us_per_request']:>6.1f} us  {row['name']}")
    return lines


def render_text(report: dict[str, Any]) -> str:
    lines = _render_header(report)
    lines.append("")
    if "in_process" in report:
        lines += render_in_process(report["in_process"])
        return "\n".join(lines)

    lines += _render_table(report["results"])
    lines += _render_checks(report)
    lines += _render_profiles(report["profiles"])
    return "\n".join(lines)


# Command line -----------------------------------------------------------------


def _positive_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(value < 1 or value > 64 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of worker counts from 1 to 64")
    return values


def _operations(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [value for value in values if value not in OPERATIONS]
    if not values or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown operation {', '.join(unknown) or text!r}; use {', '.join(OPERATIONS)}")
    return values


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="Load-test the XKI proxy and a trivial app on the same server stack.")
    parser.add_argument("--duration", type=int, default=10,
                        help=f"seconds per measured run, 1 to {MAX_DURATION} (default 10)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="seconds of unmeasured load before each run (default 1)")
    parser.add_argument("--connections", type=int, default=16,
                        help="keep-alive TLS connections (default 16)")
    parser.add_argument("--workers", type=_positive_list, default=[1, 2],
                        help="comma-separated proxy worker counts, each tested in turn "
                             "(default 1,2)")
    parser.add_argument("--client", choices=("wrk", "python"), default="wrk",
                        help="load generator: wrk with pre-signed requests, or the asyncio "
                             "client of this script (default wrk)")
    parser.add_argument("--client-threads", type=int, default=1,
                        help="wrk threads (default 1)")

    parser.add_argument("--signing", choices=("presigned", "fresh"), default="presigned",
                        help="sign a pool before each run, or each request as it is sent "
                             "(python client only; default presigned)")
    parser.add_argument("--operations", type=_operations, default=list(OPERATIONS),
                        help="comma-separated subset of encrypt,decrypt,floor (default all)")

    parser.add_argument("--requests", type=int, default=10**9,
                        help="maximum requests per run (python client only; default no limit)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every operation this many times and report the median "
                             "(default 1)")
    parser.add_argument("--pool", type=int, default=256,
                        help="distinct pre-signed requests per operation (default 256)")
    parser.add_argument("--plaintext-bytes", type=int, default=32,
                        help="plaintext size of encrypt requests (default 32)")
    parser.add_argument("--aad-bytes", type=int, default=32,
                        help="AAD size of encrypt and decrypt requests (default 32)")

    parser.add_argument("--verify", type=int, default=50,
                        help="responses per operation checked before and after the runs "
                             "(default 50)")
    parser.add_argument("--check-every", type=int, default=20,
                        help="python client: check the body of every Nth response (default 20)")

    parser.add_argument("--profile", action="store_true",
                        help="run every operation once more under py-spy and print where "
                             "the server spends its CPU, by function")
    parser.add_argument("--perf", action="store_true",
                        help="run every operation once more under Linux perf and print the "
                             "server's CPU time by library (Python, kernel, OpenSSL, ...)")
    parser.add_argument("--in-process", type=int, default=0, metavar="N",
                        help="instead of the load test, call the proxy's and the floor's "
                             "ASGI apps N times per operation in this process, without TLS, "
                             "HTTP or sockets, and print the CPU time per request")

    parser.add_argument("--work-dir", type=Path,
                        help="keep data directories, logs and profiles here (default: a "
                             "temporary directory, deleted at the end)")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the figures as JSON to FILE ('-' for standard "
                             "output, which moves the text report to standard error)")
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    return Options(**vars(args))


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 1 <= args.duration <= MAX_DURATION or not 0 <= args.warmup <= 30:
        parser.error(f"--duration must be 1 to {MAX_DURATION} and --warmup 0 to 30 seconds")
    if not 1 <= args.connections <= 1024 or not 1 <= args.client_threads <= args.connections:
        parser.error("--connections must be 1 to 1024, and --client-threads 1 to --connections")
    if args.client == "wrk" and not args.in_process:
        if args.signing == "fresh":
            parser.error("wrk sends only pre-signed requests; use --client python with "
                         "--signing fresh")
        if args.requests != 10**9:
            parser.error("wrk runs for --duration only; use --client python with --requests")
        if shutil.which("wrk") is None:
            parser.error("wrk is not installed; install it with 'apt-get install -y wrk' "
                         "or use --client python")
    if args.perf and shutil.which("perf") is None:
        parser.error("perf is not installed; install it with 'apt-get install -y linux-perf' "
                     "or run without --perf")
    for name in ("requests", "rounds", "pool", "plaintext_bytes", "verify", "check_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.aad_bytes < 0:
        parser.error("--aad-bytes must not be negative")
    # Pre-signed requests expire after 5 minutes, and a request costs up to about 100 us here.
    if not 0 <= args.in_process * max(3, args.rounds) <= 2_000_000:
        parser.error("--in-process times --rounds must be 0 to 2,000,000 requests, so that "
                     "the signatures stay valid until the last one")


def run(options: Options) -> dict[str, Any]:
    """Run every worker count and return the report."""
    report: dict[str, Any] = {"machine": machine(), "settings": {
        key: (str(value) if isinstance(value, Path) else value)
        for key, value in asdict(options).items()}, "verification": {}, "audit": {},
        "profiles": {}}
    figures: list[Figures] = []
    with contextlib.ExitStack() as stack:
        if options.work_dir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hyok-load-")))
        else:
            root = options.work_dir
            root.mkdir(parents=True, exist_ok=True)
        if options.in_process:
            bench = Bench(options, 1, root)
            report["in_process"] = bench.in_process()
            report["results"], report["rounds"] = [], []
            return report
        for workers in options.workers:
            bench = Bench(options, workers, root)
            try:
                bench.start()
                bench.seal_pool()
                bench.verify("before load")
                for _ in range(options.rounds):
                    for operation in options.operations:
                        bench.measure(operation)
                bench.verify("after load")
                for operation in options.operations if options.profile else ():
                    bench.profile(operation)
                for operation in options.operations if options.perf else ():
                    bench.perf_profile(operation)
            finally:
                bench.stop()
            figures.extend(bench.figures)
            report["verification"][str(workers)] = bench.verification
            report["audit"][str(workers)] = bench.audit_outcomes()
            report["tls"] = bench.tls
            for operation, summary in bench.profiles.items():
                report["profiles"][f"workers {workers} {operation}"] = summary
    report["results"] = [asdict(item) for item in median_figures(figures)]
    report["rounds"] = [asdict(item) for item in figures]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    report = run(options)
    text = render_text(report)
    if options.json == "-":
        print(text, file=sys.stderr)
        print(json.dumps(report, indent=2))
    else:
        print(text)
        if options.json:
            Path(options.json).write_text(json.dumps(report, indent=2) + "\n")
    failures = sum(stage["failures"] for stages in report["verification"].values()
                   for stage in stages.values())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
