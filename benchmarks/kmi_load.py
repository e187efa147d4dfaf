"""Key-manager load test: each backend's raw rate next to the proxy's throughput on it.

For each backend (``file``, ``pkcs11``, and ``kmip`` when asked for) the
harness writes a proxy data directory with ``hyok.xki.bootstrap.initialise``:
a file keystore (kdf cost 10), a SoftHSMv2 token of its own in the data
directory, as ``hyok up --kmi pkcs11`` makes it, or a PyKMIP server of its
own, run as ``hyok up --kmi kmip`` runs it. Then it

1. opens the backend in this process, as the proxy opens it, and calls its
   ``encrypt`` and then its ``decrypt`` in a loop on one thread for
   ``--raw-seconds`` seconds each, ``--rounds`` times: the raw rate, with
   the latency of each call;
2. closes the backend, starts ``hyok xki serve`` on 127.0.0.1, encrypts a
   pool of plaintexts through it for the decrypt requests, checks a sample
   of decrypt responses, and runs wrk with pre-signed XKS requests for
   encrypt and decrypt as ``xki_load.py`` does, ``--rounds`` times;
3. stops the proxy and checks the sample again.

The report shows, per backend and operation, the median round of each: the
raw rate, p99 and CPU time per call, the proxy's throughput, p50, p99 and CPU
time per request, and the proxy's throughput as a share of the raw rate. Both
use the same plaintext and AAD sizes and the same key. The proxy calls the
SoftHSMv2 token on its event loop, as the data directory configures it, unless
``--pkcs11-calls threads`` is given.

Example::

    .venv/bin/python benchmarks/kmi_load.py --duration 15 --raw-seconds 5 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import ssl
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import xki_load as proxy_load
from hyok.kmi.base import KeyManager
from hyok.kmi.kmip.pykmip_server import PykmipServer, prepare_server, start_server
from hyok.kmi.registry import open_backend
from hyok.xki.backend_init import OWN_KMIP_DIRECTORY, KmipInit, Pkcs11Init
from hyok.xki.bootstrap import InitOptions, initialise
from hyok.xki.settings import load_settings
from kms_load import ProxyBench

BACKENDS: Final = ("file", "pkcs11", "kmip")
# The kmip backend needs a PyKMIP server and runs only when asked for.
DEFAULT_BACKENDS: Final = ("file", "pkcs11")
OPERATIONS: Final = ("encrypt", "decrypt")
# Distinct inputs the raw loop cycles through, like the proxy's request pool.
RAW_POOL: Final = 256


@dataclass(frozen=True)
class RawFigures:
    """One raw run: ``operation`` called in a loop on one thread of this process."""

    backend: str
    operation: str
    calls: int
    seconds: float
    per_second: float
    p50_us: float
    p99_us: float
    #: CPU time of this process per call, in µs.
    cpu_us: float


def _percentile_us(sorted_ns: Sequence[int], fraction: float) -> float:
    index = min(len(sorted_ns) - 1, max(0, round(fraction * len(sorted_ns)) - 1))
    return round(sorted_ns[index] / 1000, 1)


def measure_raw(
    manager: KeyManager, backend: str, key_id: str, operation: str, seconds: float,
    plaintext_bytes: int, aad_bytes: int,
) -> RawFigures:
    """Call the backend's ``operation`` for ``seconds`` seconds and time every call."""
    inputs = [(os.urandom(plaintext_bytes), os.urandom(aad_bytes)) for _ in range(RAW_POOL)]
    sealed = [(manager.encrypt(key_id, plaintext, aad), aad) for plaintext, aad in inputs]
    call: Callable[[int], object]
    if operation == "encrypt":
        def call(index: int) -> object:
            plaintext, aad = inputs[index]
            return manager.encrypt(key_id, plaintext, aad)
    else:
        def call(index: int) -> object:
            result, aad = sealed[index]
            return manager.decrypt(key_id, result.iv, result.ciphertext, result.tag, aad)

    durations: list[int] = []
    cpu_start = time.process_time()
    start = time.perf_counter_ns()
    end = start + int(seconds * 1e9)
    now = start
    while now < end:
        call(len(durations) % RAW_POOL)
        finished = time.perf_counter_ns()
        durations.append(finished - now)
        now = finished
    elapsed = (now - start) / 1e9
    cpu = time.process_time() - cpu_start
    durations.sort()
    return RawFigures(
        backend=backend, operation=operation, calls=len(durations), seconds=round(elapsed, 3),
        per_second=round(len(durations) / elapsed, 1), p50_us=_percentile_us(durations, 0.50),
        p99_us=_percentile_us(durations, 0.99),
        cpu_us=round(cpu / len(durations) * 1e6, 1),
    )


class BackendBench(ProxyBench):
    """The proxy of ``xki_load.py`` on one backend, without the floor app."""

    def __init__(self, options: proxy_load.Options, backend: str, root: Path,
                 backend_threads: int | None = None, pkcs11_calls: str = "event-loop") -> None:
        # Bench.__init__ always writes a file keystore, so this sets up the same
        # attributes on a data directory with the chosen backend.
        self.options = options
        self.workers = 1
        self.backend = backend
        self.directory = root / backend
        port = proxy_load.free_port()
        pkcs11 = Pkcs11Init(own_softhsm_token=True) if backend == "pkcs11" else None
        kmip = None
        #: The PyKMIP server of the kmip backend, as ``hyok up --kmi kmip`` runs it.
        self.pykmip: PykmipServer | None = None
        if backend == "kmip":
            files = prepare_server(self.directory / OWN_KMIP_DIRECTORY, proxy_load.free_port())
            self.pykmip = start_server(files)
            kmip = KmipInit(own_server=True, port=files.port)
        result = initialise(InitOptions(
            directory=self.directory, host=proxy_load.HOST, port=port,
            admin_port=proxy_load.free_port(), region=proxy_load.REGION, kdf_cost=10,
            pkcs11=pkcs11, kmip=kmip,
        ))
        self.key_id = result.key_id
        self.config = result.config_path
        self._adjust_config()
        if backend == "kmip":
            # A PyKMIP call takes 10 to 20 ms and stalls past the default 180 ms
            # retry deadline on a busy machine, which would end the raw loop; the
            # proxy's request deadline still bounds every proxied request.
            text = self.config.read_text()
            self.config.write_text(text.replace(
                'type = "kmip"\n', 'type = "kmip"\nretry_deadline_ms = 2000\n', 1))
        if backend == "pkcs11" and pkcs11_calls == "threads":
            # initialise() writes event_loop_calls = true for its own SoftHSMv2 token.
            text = self.config.read_text()
            self.config.write_text(text.replace("event_loop_calls = true",
                                                "event_loop_calls = false", 1))
        if backend_threads is not None:
            text = self.config.read_text()
            self.config.write_text(text.replace(
                "request_deadline_ms = ", f"backend_threads = {backend_threads}\n"
                "request_deadline_ms = ", 1))
        self.context = ssl.create_default_context(cafile=str(result.ca_file))
        sizes = {"plaintext_bytes": options.plaintext_bytes, "aad_bytes": options.aad_bytes}
        self.proxy_requests = proxy_load.RequestFactory(
            port, result.key_id, result.credential.credential, **sizes)
        self.sealed = []
        self.servers = []
        self.tls = "unknown"
        self.figures = []
        self.verification = {}
        self.profiles = {}

    def raw(self, rounds: int, seconds: float) -> list[RawFigures]:
        """Measure the backend's encrypt and decrypt in this process, ``rounds`` times each."""
        settings = load_settings(self.config)
        name = settings.keystores[0].backend
        manager = open_backend(name, settings.backends[name])
        sizes = (self.options.plaintext_bytes, self.options.aad_bytes)
        figures = []
        try:
            if self.options.warmup:
                measure_raw(manager, self.backend, self.key_id, "encrypt",
                            self.options.warmup, *sizes)
            for _ in range(rounds):
                for operation in OPERATIONS:
                    figures.append(measure_raw(manager, self.backend, self.key_id, operation,
                                               seconds, *sizes))
        finally:
            manager.close()
        return figures

    def check_decrypts(self, stage: str) -> None:
        """Decrypt a sample of the pool through the proxy and compare the plaintexts."""
        sample = [self.proxy_requests.decrypt(item) for item in self.sealed[:self.options.verify]]
        answers = proxy_load.exchange(self.proxy.port, self.context, [i.raw for i in sample])
        failures: Counter[str] = Counter()
        for item, (status, body) in zip(sample, answers, strict=True):
            problem = item.check(body) if status == 200 else f"status {status}"
            if problem is not None:
                failures[problem] += 1
        self.verification[stage] = {"decrypt_checked": len(sample),
                                    "failures": sum(failures.values()),
                                    "messages": dict(failures)}


def _median(items: Sequence[Any], key: Callable[[Any], float]) -> Any:
    ordered = sorted(items, key=key)
    return ordered[(len(ordered) - 1) // 2]


def run(options: proxy_load.Options, backends: Sequence[str], raw_seconds: float,
        backend_threads: int | None = None, pkcs11_calls: str = "event-loop") -> dict[str, Any]:
    """Measure every backend and return the report."""
    report: dict[str, Any] = {
        "machine": proxy_load.machine(),
        "settings": {"backends": list(backends), "raw_seconds": raw_seconds,
                     "backend_threads": backend_threads, "pkcs11_calls": pkcs11_calls,
                     "duration": options.duration, "warmup": options.warmup,
                     "rounds": options.rounds, "connections": options.connections,
                     "client_threads": options.client_threads, "pool": options.pool,
                     "plaintext_bytes": options.plaintext_bytes,
                     "aad_bytes": options.aad_bytes},
        "rows": [], "raw_rounds": [], "proxy_rounds": [], "verification": {},
    }
    with contextlib.ExitStack() as stack:
        if options.work_dir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hyok-kmi-")))
        else:
            root = options.work_dir
            root.mkdir(parents=True, exist_ok=True)
        for backend in backends:
            bench = BackendBench(options, backend, root, backend_threads, pkcs11_calls)
            raw = bench.raw(options.rounds, raw_seconds)
            try:
                bench.start()
                bench.seal_pool()
                bench.check_decrypts("before load")
                for _ in range(options.rounds):
                    for operation in OPERATIONS:
                        bench.measure(operation)
                bench.check_decrypts("after load")
            finally:
                bench.stop()
                if bench.pykmip is not None:
                    bench.pykmip.stop()
            report["verification"][backend] = bench.verification
            report["raw_rounds"] += [asdict(item) for item in raw]
            report["proxy_rounds"] += [{"backend": backend, **asdict(item)}
                                       for item in bench.figures]
            for operation in OPERATIONS:
                raw_median = _median([item for item in raw if item.operation == operation],
                                     lambda item: item.per_second)
                proxy_median = _median(
                    [item for item in bench.figures if item.operation == operation],
                    lambda item: item.requests_per_second)
                report["rows"].append({
                    "backend": backend, "operation": operation,
                    "raw_per_second": raw_median.per_second, "raw_p99_us": raw_median.p99_us,
                    "raw_cpu_us": raw_median.cpu_us,
                    "proxy_per_second": proxy_median.requests_per_second,
                    "proxy_p50_ms": proxy_median.p50_ms, "proxy_p99_ms": proxy_median.p99_ms,
                    "proxy_errors": proxy_median.errors,
                    "proxy_server_cores": proxy_median.server_cores,
                    "proxy_client_cores": proxy_median.client_cores,
                    "proxy_cpu_us": proxy_median.server_cpu_us_per_request,
                    "proxy_to_raw": round(proxy_median.requests_per_second
                                          / raw_median.per_second, 3),
                })
    return report


def render_text(report: dict[str, Any]) -> str:
    machine = report["machine"]
    settings = report["settings"]
    lines = [
        f"{machine['cpu_model']}, {machine['cpus']} CPUs, Python {machine['python']}, "
        f"{machine['wrk']}",
        f"raw: {settings['raw_seconds']} s per run on one thread in this process; proxy: wrk, "
        f"{settings['connections']} connections, {settings['duration']} s per run; "
        f"{settings['plaintext_bytes']} B plaintext, {settings['aad_bytes']} B AAD; median of "
        f"{settings['rounds']} round(s); PKCS#11 calls: {settings['pkcs11_calls']}; "
        f"backend_threads: {settings['backend_threads'] or 'derived from the backends'}",
        f"{'backend':<8} {'operation':<9} {'raw/s':>9} {'raw p99 us':>10} {'raw cpu us':>10} "
        f"{'proxy/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'proxy/raw':>9} "
        f"{'cores':>5} {'cpu us/req':>10}",
    ]
    for row in report["rows"]:
        lines.append(
            f"{row['backend']:<8} {row['operation']:<9} {row['raw_per_second']:>9.0f} "
            f"{row['raw_p99_us']:>10.1f} {row['raw_cpu_us']:>10.1f} "
            f"{row['proxy_per_second']:>9.0f} {row['proxy_p50_ms']:>7.2f} "
            f"{row['proxy_p99_ms']:>7.2f} {row['proxy_errors']:>6} {row['proxy_to_raw']:>9.0%} "
            f"{row['proxy_server_cores']:>5.2f} {row['proxy_cpu_us']:>10.0f}"
        )
    for backend, stages in report["verification"].items():
        for stage, result in stages.items():
            lines.append(f"check {backend} {stage}: {result['decrypt_checked']} decrypts, "
                         f"{result['failures']} failures {result['messages'] or ''}".rstrip())
    return "\n".join(lines)


def _backends(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"use a comma-separated subset of {','.join(BACKENDS)}")
    return names


def parse_arguments(
    argv: Sequence[str] | None,
) -> tuple[proxy_load.Options, list[str], float, int | None, str]:
    parser = argparse.ArgumentParser(
        description="Measure each key-manager backend's raw rate and the proxy's throughput "
                    "on it in one run. Options not listed here take xki_load.py's defaults.")
    parser.add_argument("--backends", type=_backends, default=list(DEFAULT_BACKENDS),
                        help="comma-separated backends of file, pkcs11 and kmip (default "
                             "file,pkcs11; kmip runs a PyKMIP server of its own)")
    parser.add_argument("--raw-seconds", type=float, default=5.0,
                        help="seconds per raw run, 0.5 to 120 (default 5)")
    shared = parser.add_argument_group("proxy load, as in xki_load.py")
    for flag, default in (("--duration", 10), ("--warmup", 1), ("--connections", 16),
                          ("--client-threads", 1), ("--rounds", 1), ("--pool", 256),
                          ("--plaintext-bytes", 32), ("--aad-bytes", 32), ("--verify", 50)):
        shared.add_argument(flag, type=int, default=default, help=f"(default {default})")
    parser.add_argument("--work-dir", type=Path,
                        help="keep data directories and logs here (default: a temporary "
                             "directory, deleted at the end)")
    parser.add_argument("--backend-threads", type=int, default=None,
                        help="set the proxy's backend_threads, 1 to 256 (default: unset, so "
                             "the proxy derives it from the backends)")
    parser.add_argument("--pkcs11-calls", choices=("event-loop", "threads"),
                        default="event-loop",
                        help="how the proxy calls the SoftHSMv2 token: on its event loop, as "
                             "'hyok up --kmi pkcs11' configures it, or in its thread pool "
                             "(default event-loop)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    args = parser.parse_args(argv)
    if not 0.5 <= args.raw_seconds <= 120:
        parser.error("--raw-seconds must be 0.5 to 120")
    if args.backend_threads is not None and not 1 <= args.backend_threads <= 256:
        parser.error("--backend-threads must be 1 to 256")
    if "pkcs11" in args.backends and shutil.which("softhsm2-util") is None:
        parser.error("the pkcs11 backend runs on SoftHSMv2, which is not installed: "
                     "apt-get install -y softhsm2, or pass --backends file")
    proxy_argv = ["--workers", "1", "--operations", "encrypt,decrypt"]
    for name in ("duration", "warmup", "connections", "client_threads", "rounds", "pool",
                 "plaintext_bytes", "aad_bytes", "verify"):
        proxy_argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.work_dir is not None:
        proxy_argv += ["--work-dir", str(args.work_dir)]
    options = proxy_load.parse_options(proxy_argv)
    options.json = args.json
    return options, args.backends, args.raw_seconds, args.backend_threads, args.pkcs11_calls


def main(argv: Sequence[str] | None = None) -> int:
    options, backends, raw_seconds, backend_threads, pkcs11_calls = parse_arguments(argv)
    report = run(options, backends, raw_seconds, backend_threads, pkcs11_calls)
    print(render_text(report))
    if options.json:
        Path(options.json).write_text(json.dumps(report, indent=2) + "\n")
    failures = sum(stage["failures"] for stages in report["verification"].values()
                   for stage in stages.values())
    errors = sum(row["proxy_errors"] for row in report["rows"])
    return 1 if failures or errors else 0


if __name__ == "__main__":
    sys.exit(main())
