"""Throughput and peak memory of ``hyok encrypt-file`` and ``hyok decrypt-file`` on a large file.

The harness writes a file of random bytes (1 MiB chunks of ``os.urandom``)
into a temporary directory, starts ``hyok up`` there on free loopback ports,
creates a KMS key on its external key, and then runs, each as a child
process whose time and peak RSS ``os.wait4`` reports:

- ``aes-gcm``: the baseline, plain AES-256-GCM of ``cryptography`` over the
  same bytes in a Python process of its own (this file with ``--baseline``):
  read 1 MiB, encrypt, write, with no format, no KMS and no CLI;
- ``encrypt-file`` and ``decrypt-file``: the real CLI, as a user runs it,
  against the KMS of ``hyok up``; the decrypted file is compared with the
  input;
- the same two commands on an empty file, which measures what a command
  costs before the first byte (interpreter, imports, TLS, one KMS call);
- unless ``--no-sdk``: the AWS Encryption SDK for Python streaming the same
  bytes in its own process (``--sdk``), with suite 0x0478 (the suite hyok
  writes) and 0x0578 (the same with an ECDSA P-384 signature), to record why
  hyok encodes the frames itself.

Child processes keep the measurements comparable: every row pays its own
interpreter start, and ``ru_maxrss`` of one child is that child's alone.
Each row starts after ``sync``, with no unwritten data of an earlier row.
hyok's modules are byte-compiled first, as pip compiles an installed
package, so that no row compiles them from source when the environment
sets PYTHONDONTWRITEBYTECODE.

Writing 2 GiB into the page cache needs 2 GiB of free memory, and on a
virtual machine that returns freed memory to its host (virtio-balloon free
page reporting), the host must supply each page again on first use. On
such a machine, one plain copy of a 2 GiB file took from 0.7 to 5.5 seconds
of system time in four runs in a row. Memory freed a moment earlier had
not been returned yet and cost little. So just before each row a helper
process writes to 4 GiB of memory (``--cushion-mib``) and exits, which
frees it, and each row deletes its own output of the previous round.
With that, the same rows varied by tens of percent instead of five times.
The order of the rows turns from round to round, and the summary takes
the best and the median of the rounds.

Throughput is the input size divided by the wall time. The "streaming" rows
subtract the empty-file run, so they show the frame loop without the fixed
start-up cost. Everything runs on 127.0.0.1 and is deleted at the end.

Example::

    .venv/bin/python benchmarks/file_crypto.py --size-mib 2048
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

HYOK: Final = [sys.executable, "-m", "hyok.cli"]
CHUNK: Final = 1 << 20
READY_LINE: Final = "Press Ctrl-C to stop."


@dataclass
class Row:
    """One measured run."""

    name: str
    seconds: float
    cpu_seconds: float
    user_seconds: float
    peak_rss_mib: float
    size_bytes: int

    @property
    def mb_per_second(self) -> float:
        return self.size_bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0


def run_child(
    name: str, command: Sequence[str], size: int, *, cushion: int = 0, **options: Any
) -> Row:
    """Run ``command`` to completion; measure its wall time, CPU time and peak RSS.

    The page cache's dirty data are written out first, so that no row waits
    for the writes of the row before it: the kernel slows a writer down once
    too much unwritten data has piled up. With ``cushion`` bytes, a helper
    process first writes to that much memory and frees it as it exits, just
    before the child starts (see the module docstring).
    """
    os.sync()
    if cushion:
        # A process of its own: a child forked from a harness that had touched
        # the memory would report the harness's peak RSS as its own.
        subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--touch", str(cushion)], check=True
        )
    started = time.perf_counter()
    process = subprocess.Popen(command, **options)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{name} failed with exit code {process.returncode}: {command}")
    return Row(
        name=name,
        seconds=elapsed,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        user_seconds=usage.ru_utime,
        # Linux reports ru_maxrss in KiB.
        peak_rss_mib=usage.ru_maxrss / 1024,
        size_bytes=size,
    )


def touch_memory(size: int) -> None:
    """Map ``size`` bytes of anonymous memory and write every page of it; exiting frees them."""
    memory = mmap.mmap(-1, size)
    page = b"\x01" * CHUNK
    for offset in range(0, size - CHUNK + 1, CHUNK):
        memory[offset : offset + CHUNK] = page


# Child modes: the baseline and the AWS Encryption SDK.


def baseline(source: Path, destination: Path) -> None:
    """Encrypt ``source`` in 1 MiB chunks with AES-256-GCM, the floor the CLI is compared with."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    output = memoryview(bytearray(CHUNK + 16))
    counter = 0
    with source.open("rb", buffering=0) as reader, destination.open("wb", buffering=0) as writer:
        while count := reader.readinto(buffer):
            counter += 1
            nonce = counter.to_bytes(12, "big")
            sealed = output[: count + 16]
            aead.encrypt_into(nonce, view[:count], None, sealed)
            writer.write(sealed)


def sdk_stream(mode: str, suite: str, frame: int, source: Path, destination: Path) -> None:
    """Stream ``source`` through the AWS Encryption SDK with a raw AES key as master key."""
    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import (
        Algorithm,
        CommitmentPolicy,
        EncryptionKeyType,
        WrappingAlgorithm,
    )
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider

    class Provider(RawMasterKeyProvider):  # type: ignore[misc]
        provider_id = "benchmark"

        def _get_raw_key(self, key_id: bytes) -> WrappingKey:
            return WrappingKey(
                wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
                wrapping_key=b"\x07" * 32,
                wrapping_key_type=EncryptionKeyType.SYMMETRIC,
            )

    provider = Provider()
    provider.add_master_key(b"benchmark-key")
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    options: dict[str, Any] = {"key_provider": provider}
    if mode == "encrypt":
        options["frame_length"] = frame
        options["algorithm"] = Algorithm[suite]
    with (
        source.open("rb") as reader,
        destination.open("wb") as writer,
        client.stream(mode=mode[0], source=reader, **options) as stream,
    ):
        # Reading one frame at a time is the SDK's fastest pattern: larger
        # reads slice and concatenate the buffered output repeatedly.
        while chunk := stream.read(frame):
            writer.write(chunk)


# The stack.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environment() -> dict[str, str]:
    """Return the children's environment, without AccessKey variables that override the file."""
    environment = dict(os.environ)
    for name in list(environment):
        if name.startswith("ALIBABA_CLOUD_") or name == "HYOK_DATA_DIR":
            del environment[name]
    return environment


@contextlib.contextmanager
def running_stack(data_dir: Path) -> Iterator[Path]:
    """Run ``hyok up`` in ``data_dir`` until the block ends; yield its hyok-up.json."""
    log_path = data_dir.parent / "up.log"
    ports = [str(free_port()) for _ in range(3)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *HYOK,
                "up",
                "--data-dir",
                str(data_dir),
                "--kms-port",
                ports[0],
                "--xki-port",
                ports[1],
                "--xki-admin-port",
                ports[2],
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_environment(),
        )
    try:
        deadline = time.monotonic() + 120
        while READY_LINE not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"hyok up did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield data_dir / "hyok-up.json"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def create_key(up_file: Path) -> str:
    external_key_id = json.loads(up_file.read_text())["external_key_id"]
    completed = subprocess.run(
        [
            *HYOK,
            "kms",
            "create-key",
            "--external-key-id",
            external_key_id,
            "--up-file",
            str(up_file),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=clean_environment(),
    )
    return str(json.loads(completed.stdout)["KeyMetadata"]["KeyId"])


def write_random_file(path: Path, size: int) -> None:
    with path.open("wb") as stream:
        remaining = size
        while remaining > 0:
            stream.write(os.urandom(min(CHUNK, remaining)))
            remaining -= CHUNK


def same_contents(first: Path, second: Path) -> bool:
    with first.open("rb") as a, second.open("rb") as b:
        while True:
            left, right = a.read(CHUNK), b.read(CHUNK)
            if left != right:
                return False
            if not left:
                return True


# The measurements.


def compile_hyok() -> None:
    """Byte-compile hyok's modules into their ``__pycache__``, as pip does at installation."""
    import compileall

    import hyok

    compileall.compile_dir(Path(hyok.__file__).parent, quiet=1)


def measure(options: argparse.Namespace, work: Path) -> list[Row]:
    size = options.size_mib << 20
    cushion = options.cushion_mib << 20
    compile_hyok()
    source = work / "input.bin"
    empty = work / "empty.bin"
    sealed = work / "input.hyok"
    opened = work / "input.out"
    scratch = work / "scratch.out"
    print(f"writing {options.size_mib} MiB of random bytes to {source}", file=sys.stderr)
    write_random_file(source, size)
    empty.write_bytes(b"")

    rows: list[Row] = []
    environment = clean_environment()
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "env": environment}
    this = [sys.executable, str(Path(__file__).resolve())]
    with running_stack(work / "stack") as up_file:
        key_id = create_key(up_file)
        encrypt = [
            *HYOK,
            "encrypt-file",
            "--key-id",
            key_id,
            "--up-file",
            str(up_file),
            "--frame-size",
            str(options.frame_size),
        ]
        # Every row writes a new file, as a user does. Replacing a file with
        # --force costs more: on ext4 the rename over it forces the new data to disk.
        decrypt = [*HYOK, "decrypt-file", "--up-file", str(up_file)]
        # Each row: its name, its command and the output it writes.
        plan = [
            ("aes-gcm", [*this, "--baseline", str(source), str(scratch)], scratch),
            ("encrypt-file", [*encrypt, str(source), str(sealed)], sealed),
            ("decrypt-file", [*decrypt, str(sealed), str(opened)], opened),
        ]
        for round_number in range(options.rounds):
            suffix = f" #{round_number + 1}" if options.rounds > 1 else ""
            print(f"round {round_number + 1} of {options.rounds}", file=sys.stderr)
            # The order turns each round, so that no row always follows the
            # same one. decrypt-file reads the file of the latest encrypt-file.
            shift = round_number % len(plan)
            for name, command, output in plan[shift:] + plan[:shift]:
                # Each row first deletes its own output of an earlier round,
                # so that every row starts with as much just-freed memory (see
                # the module docstring).
                output.unlink(missing_ok=True)
                rows.append(run_child(f"{name}{suffix}", command, size, cushion=cushion, **quiet))
                if output is opened and not same_contents(source, opened):
                    raise SystemExit("decrypt-file did not return the original bytes")
        scratch.unlink(missing_ok=True)
        opened.unlink(missing_ok=True)
        rows.append(
            run_child("encrypt-file, empty input", [*encrypt, str(empty), str(scratch)], 0, **quiet)
        )
        rows.append(
            run_child(
                "decrypt-file, empty input", [*decrypt, str(scratch), str(opened)], 0, **quiet
            )
        )
        sealed.unlink()

    if options.sdk:
        for suite in (
            "AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
            "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384",
        ):
            label = "0x0478" if suite.endswith("COMMIT_KEY") else "0x0578"
            for mode, inputs in (("encrypt", (source, sealed)), ("decrypt", (sealed, opened))):
                command = [*this, "--sdk", mode, suite, str(options.frame_size), *map(str, inputs)]
                row = run_child(
                    f"aws-encryption-sdk {label} {mode}", command, size, cushion=cushion, **quiet
                )
                rows.append(row)
            if not same_contents(source, opened):
                raise SystemExit("the AWS Encryption SDK did not return the original bytes")
            sealed.unlink()
            opened.unlink()
    return rows


def _rounds(rows: Sequence[Row], name: str) -> list[Row]:
    """Return the runs of the row ``name``, one per round."""
    return [row for row in rows if row.name == name or row.name.startswith(f"{name} #")]


def best(rows: Sequence[Row], name: str) -> Row:
    return min(_rounds(rows, name), key=lambda row: row.seconds)


def _median(rows: Sequence[Row], name: str, field: str) -> float:
    """Return the median of ``field`` over the rounds of the row ``name``."""
    return statistics.median(getattr(row, field) for row in _rounds(rows, name))


def report(rows: Sequence[Row], options: argparse.Namespace) -> list[str]:
    lines = [
        f"input: {options.size_mib} MiB, frame size {options.frame_size} bytes, "
        f"{options.rounds} round(s), {os.cpu_count()} CPUs",
        f"{'run':<42} {'wall s':>8} {'CPU s':>8} {'user s':>8} {'MB/s':>8} {'peak RSS MiB':>13}",
    ]
    for row in rows:
        lines.append(
            f"{row.name:<42} {row.seconds:8.2f} {row.cpu_seconds:8.2f} {row.user_seconds:8.2f} "
            f"{row.mb_per_second:8.0f} {row.peak_rss_mib:13.1f}"
        )
    base = best(rows, "aes-gcm")
    base_cpu = base.size_bytes / base.cpu_seconds / 1e6
    lines.append(
        f"best of the rounds, against aes-gcm at {base.mb_per_second:.0f} MB/s of wall time "
        f"and {base_cpu:.0f} MB/s of CPU time:"
    )
    for command in ("encrypt-file", "decrypt-file"):
        row = best(rows, command)
        floor = best(rows, f"{command}, empty input")
        streaming = row.size_bytes / max(row.seconds - floor.seconds, 1e-9) / 1e6
        # CPU time is steadier than wall time when other processes share the cores.
        cpu = row.size_bytes / max(row.cpu_seconds - floor.cpu_seconds, 1e-9) / 1e6
        lines.append(
            f"  {command}: wall {row.mb_per_second:.0f} MB/s end to end "
            f"({row.mb_per_second / base.mb_per_second:.0%}), {streaming:.0f} MB/s streaming "
            f"({streaming / base.mb_per_second:.0%}); CPU {cpu:.0f} MB/s streaming "
            f"({cpu / base_cpu:.0%}); peak RSS {row.peak_rss_mib:.1f} MiB, "
            f"{row.peak_rss_mib - floor.peak_rss_mib:+.1f} MiB over the empty-input run"
        )
    names = ("aes-gcm", "encrypt-file", "decrypt-file")
    # User time leaves out the kernel's page-cache work, the noisiest part here.
    for label, field in (("wall time", "seconds"), ("user CPU time", "user_seconds")):
        medians = ", ".join(f"{name} {_median(rows, name, field):.2f} s" for name in names)
        lines.append(f"median {label} of the rounds: {medians}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=2048, help="input size in MiB")
    parser.add_argument("--frame-size", type=int, default=1 << 20, help="frame size in bytes")
    parser.add_argument("--rounds", type=int, default=10, help="runs of each command")
    parser.add_argument(
        "--no-sdk", dest="sdk", action="store_false", help="skip the AWS Encryption SDK rows"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="directory for the files (default: a temporary directory)",
    )
    parser.add_argument(
        "--cushion-mib",
        type=int,
        default=4096,
        help="memory to touch and free before each row, in MiB (0 for none)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument(
        "--baseline", nargs=2, type=Path, metavar=("IN", "OUT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--sdk", dest="sdk_child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--touch", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)

    if options.baseline:
        baseline(*options.baseline)
        return
    if options.touch:
        touch_memory(options.touch)
        return
    if options.sdk_child:
        mode, suite, frame, source, destination = options.sdk_child
        sdk_stream(mode, suite, int(frame), Path(source), Path(destination))
        return

    if options.work_dir is not None:
        options.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hyok-file-bench-", dir=options.work_dir))
    try:
        rows = measure(options, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = report(rows, options)
    print("\n".join(lines))
    if options.json is not None:
        document = {"rows": [asdict(row) for row in rows], "summary": lines}
        options.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
