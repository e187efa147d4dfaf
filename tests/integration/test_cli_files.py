"""``hyok encrypt-file`` and ``hyok decrypt-file`` against the whole chain of ``_kms``.

The commands run through click's CliRunner, and the standard input and
output cases as real ``python -m hyok.cli`` processes. Each tampering test
checks that decryption fails with one error line, exit code 1, no OUT and
no temporary file left beside it.
"""

from __future__ import annotations

import io
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hyok.cli.main import _register, cli
from hyok.files.format import TAG_LENGTH, read_header
from hyok.kms.domain import KeyState
from tests.integration._kms import KmsStack, kms_stack, postgres_server
from tests.integration._sdk import call
from tests.integration.test_cli_kms_calls import write_up_file

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

# The file commands add nothing database-specific, so SQLite suffices.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("kms_stack", ["sqlite"], indirect=True),
]

FRAME = 256
REGULAR_FRAME = 4 + 12 + FRAME + TAG_LENGTH


class Files:
    """Runs the two commands with one connection file, in one working directory."""

    def __init__(self, stack: KmsStack, directory: Path) -> None:
        _register()
        self.stack = stack
        self.directory = directory
        self.up_file = write_up_file(directory / "hyok-up.json", stack)
        self.key_id = new_key(stack)

    def run(self, args: Sequence[str], *, input: bytes | None = None) -> Result:
        result = CliRunner().invoke(cli, [*args, "--up-file", str(self.up_file)], input=input)
        assert self.stack.secret not in result.output
        return result

    def encrypt(self, source: Path, destination: Path, *extra: str) -> Result:
        args = ["encrypt-file", "--key-id", self.key_id, "--frame-size", str(FRAME), *extra]
        result = self.run([*args, str(source), str(destination)])
        assert result.exit_code == 0, result.output
        return result

    def decrypt(self, source: Path, destination: Path, *extra: str) -> Result:
        return self.run(["decrypt-file", *extra, str(source), str(destination)])

    def fails(self, source: Path, *extra: str) -> str:
        """Decrypt ``source`` expecting failure; check nothing was left; return the error."""
        out = self.directory / "failed.out"
        result = self.decrypt(source, out, *extra)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: "), result.stderr
        assert not out.exists()
        assert not list(self.directory.glob(".failed.out.*"))
        return result.stderr

    def sealed(self, data: bytes, name: str = "plain.bin", *extra: str) -> Path:
        plain = self.directory / name
        plain.write_bytes(data)
        sealed = self.directory / f"{name}.hyok"
        self.encrypt(plain, sealed, *extra)
        return sealed


def new_key(stack: KmsStack) -> str:
    query = {"DKMSInstanceId": stack.instance_id, "ExternalKeyId": "app-1"}
    return str(call(stack.sdk(), "CreateKey", query)["KeyMetadata"]["KeyId"])


@pytest.fixture
def files(kms_stack: KmsStack, tmp_path: Path) -> Files:
    return Files(kms_stack, tmp_path)


def header_length(path: Path) -> int:
    with path.open("rb") as stream:
        _, raw, _ = read_header(stream)
    return len(raw) + TAG_LENGTH


def changed(path: Path, data: bytes, name: str) -> Path:
    target = path.with_name(name)
    target.write_bytes(data)
    return target


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


# Round trips.


@pytest.mark.parametrize("size", [0, 1, FRAME - 1, FRAME, 2 * FRAME, 5 * FRAME + 3])
def test_round_trip_sizes(files: Files, size: int) -> None:
    data = os.urandom(size)
    sealed = files.sealed(data, "plain.bin", "--context", "purpose=test")
    out = files.directory / "plain.out"
    result = files.decrypt(sealed, out, "--context", "purpose=test")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == data
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
    assert sorted(p.name for p in files.directory.iterdir() if p.name.startswith(".")) == []


def test_fsync_round_trip(files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(descriptor: int) -> None:
        synced.append(descriptor)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    data = os.urandom(3 * FRAME)
    sealed = files.sealed(data, "plain.bin")
    assert synced == []

    sealed_synced = files.directory / "synced.hyok"
    files.encrypt(files.directory / "plain.bin", sealed_synced, "--fsync")
    assert len(synced) == 1
    out = files.directory / "plain.out"
    result = files.decrypt(sealed, out, "--fsync")
    assert result.exit_code == 0, result.output
    assert len(synced) == 2
    assert out.read_bytes() == data


def test_ciphertext_names_key_and_context(files: Files) -> None:
    sealed = files.sealed(b"x" * 1000, "plain.bin", "--context", "team=ledger")
    with sealed.open("rb") as stream:
        header, _, _ = read_header(stream)
    assert dict(header.encryption_context) == {"team": "ledger"}
    (key,) = header.encrypted_data_keys
    assert (key.provider_id, key.key_info.decode()) == ("hyok-kms", files.key_id)
    assert header.frame_length == FRAME


def test_stdin_and_stdout_through_processes(files: Files) -> None:
    data = os.urandom(3 * FRAME + 17)
    base = [sys.executable, "-m", "hyok.cli"]
    where = ["--up-file", str(files.up_file)]
    encrypted = subprocess.run(
        [
            *base,
            "encrypt-file",
            "--key-id",
            files.key_id,
            "--frame-size",
            str(FRAME),
            *where,
            "-",
            "-",
        ],
        input=data,
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert encrypted.stdout[:1] == b"\x02"
    decrypted = subprocess.run(
        [*base, "decrypt-file", *where, "-", "-"],
        input=encrypted.stdout,
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert decrypted.stdout == data

    damaged = flip(encrypted.stdout, len(encrypted.stdout) - 30)
    refused = subprocess.run(
        [*base, "decrypt-file", *where, "-", "-"],
        input=damaged,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert refused.returncode == 1
    assert refused.stdout == b""
    assert b"failed authentication" in refused.stderr


# Tampering.


def test_flipped_byte_in_frame(files: Files) -> None:
    sealed = files.sealed(os.urandom(3 * FRAME))
    data = sealed.read_bytes()
    offset = header_length(sealed) + REGULAR_FRAME + 40
    message = files.fails(changed(sealed, flip(data, offset), "frame.hyok"))
    assert "frame 2 failed authentication" in message


def test_flipped_byte_in_header(files: Files) -> None:
    sealed = files.sealed(os.urandom(FRAME))
    data = sealed.read_bytes()
    # Byte 10 is inside the message ID, which salts both derived keys.
    message = files.fails(changed(sealed, flip(data, 10), "id.hyok"))
    assert "key commitment does not match" in message
    # The last bytes of the header body are the commitment key; the tag follows.
    tag_offset = header_length(sealed) - 1
    message = files.fails(changed(sealed, flip(data, tag_offset), "tag.hyok"))
    assert "header failed authentication" in message


def test_flipped_byte_in_data_key(files: Files) -> None:
    sealed = files.sealed(os.urandom(FRAME))
    data = sealed.read_bytes()
    with sealed.open("rb") as stream:
        header, raw, _ = read_header(stream)
    blob = header.encrypted_data_keys[0].ciphertext
    offset = raw.index(blob) + len(blob) // 2
    message = files.fails(changed(sealed, flip(data, offset), "edk.hyok"))
    assert "the KMS did not decrypt the data key" in message
    assert "CiphertextBlob" in message
    assert "its header (the encrypted data key or the encryption context) is damaged" in message


def test_truncated_file(files: Files) -> None:
    sealed = files.sealed(os.urandom(2 * FRAME + 10))
    data = sealed.read_bytes()
    end_of_regular = header_length(sealed) + 2 * REGULAR_FRAME
    message = files.fails(changed(sealed, data[:end_of_regular], "cut.hyok"))
    assert "without a final frame: the file is truncated" in message
    message = files.fails(changed(sealed, data[:-5], "short.hyok"))
    assert "ends inside frame 3" in message
    message = files.fails(changed(sealed, data[:50], "header.hyok"))
    assert "ends inside the message header" in message


def test_reordered_frames(files: Files) -> None:
    sealed = files.sealed(os.urandom(3 * FRAME))
    data = sealed.read_bytes()
    start = header_length(sealed)
    first = data[start : start + REGULAR_FRAME]
    second = data[start + REGULAR_FRAME : start + 2 * REGULAR_FRAME]
    swapped = data[:start] + second + first + data[start + 2 * REGULAR_FRAME :]
    message = files.fails(changed(sealed, swapped, "swapped.hyok"))
    assert "found frame 2 where frame 1 belongs" in message
    # Swapping only the sealed contents keeps the numbering, but not the tags.
    prefix = 4 + 12
    moved = (
        data[:start]
        + first[:prefix]
        + second[prefix:]
        + second[:prefix]
        + first[prefix:]
        + data[start + 2 * REGULAR_FRAME :]
    )
    message = files.fails(changed(sealed, moved, "moved.hyok"))
    assert "frame 1 failed authentication" in message


def test_appended_data(files: Files) -> None:
    sealed = files.sealed(os.urandom(FRAME + 1))
    message = files.fails(changed(sealed, sealed.read_bytes() + b"\x00", "longer.hyok"))
    assert "continues after the final frame" in message


def test_wrong_encryption_context(files: Files) -> None:
    sealed = files.sealed(os.urandom(10), "plain.bin", "--context", "team=ledger")
    message = files.fails(sealed, "--context", "team=payroll")
    assert "has team='ledger', but --context requires team='payroll'" in message
    message = files.fails(sealed, "--context", "stage=prod")
    assert "no entry 'stage'" in message
    # A context changed in the header no longer matches the one the KMS bound.
    data = sealed.read_bytes()
    forged = data.replace(b"ledger", b"ledgex", 1)
    message = files.fails(changed(sealed, forged, "context.hyok"))
    assert "the KMS did not decrypt the data key" in message


def test_disabled_key(files: Files, kms_stack: KmsStack) -> None:
    sealed = files.sealed(os.urandom(10))
    kms_stack.set_key_state(files.key_id, KeyState.DISABLED)
    try:
        message = files.fails(sealed)
        assert "Disabled" in message
        plain = files.directory / "more.bin"
        plain.write_bytes(b"more")
        refused = files.run(
            ["encrypt-file", "--key-id", files.key_id, str(plain), str(files.directory / "o")]
        )
        assert refused.exit_code == 1
        assert "Disabled" in refused.stderr
        assert not (files.directory / "o").exists()
    finally:
        kms_stack.set_key_state(files.key_id, KeyState.ENABLED)


def test_failure_keeps_existing_output(files: Files) -> None:
    sealed = files.sealed(os.urandom(2 * FRAME))
    damaged = changed(sealed, flip(sealed.read_bytes(), len(sealed.read_bytes()) - 1), "bad.hyok")
    out = files.directory / "kept.txt"
    out.write_bytes(b"previous contents")
    result = files.decrypt(damaged, out, "--force")
    assert result.exit_code == 1
    assert out.read_bytes() == b"previous contents"
    assert not list(files.directory.glob(".kept.txt.*"))


def test_not_an_encrypted_file(files: Files) -> None:
    plain = files.directory / "plain.txt"
    plain.write_bytes(b"hello, world")
    assert "not a file encrypted by 'hyok encrypt-file'" in files.fails(plain)
    empty = files.directory / "empty"
    empty.write_bytes(b"")
    assert "the input is empty" in files.fails(empty)


# Input checks.


def test_refuses_existing_output_and_same_file(files: Files) -> None:
    plain = files.directory / "plain.bin"
    plain.write_bytes(b"data")
    out = files.directory / "out.hyok"
    out.write_bytes(b"keep")
    args = ["encrypt-file", "--key-id", files.key_id]
    refused = files.run([*args, str(plain), str(out)])
    assert refused.exit_code == 2
    assert "exists; pass --force to replace it" in refused.stderr
    assert out.read_bytes() == b"keep"
    same = files.run([*args, "--force", str(plain), str(files.directory / "." / "plain.bin")])
    assert same.exit_code == 2
    assert "is the input file" in same.stderr
    assert plain.read_bytes() == b"data"
    files.run([*args, "--force", str(plain), str(out)])
    assert out.read_bytes()[:1] == b"\x02"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--context", "novalue"], "is not NAME=VALUE"),
        (["--context", "a=1", "--context", "a=2"], "is given twice"),
        (["--context", "aws-crypto-public-key=x"], "which the message format reserves"),
        (["--context", "n" * 129 + "=v"], "at most 128 are allowed"),
        (["--context", "n=" + "v" * 1025], "at most 1024 are allowed"),
        ([f"--context=k{i}=v" for i in range(33)], "at most 32 are allowed"),
        (["--key-id", "key with spaces"], "is not a key ID, ARN or alias/NAME"),
        (["--frame-size", "1000"], "is not a multiple of 128 bytes"),
        (["--frame-size", "64"], "128<=x<=16777216"),
    ],
)
def test_rejects_bad_options(files: Files, options: list[str], expected: str) -> None:
    plain = files.directory / "plain.bin"
    plain.write_bytes(b"data")
    result = files.run(
        ["encrypt-file", "--key-id", files.key_id, *options, str(plain), str(plain) + ".out"]
    )
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert not Path(str(plain) + ".out").exists()


def test_missing_input(files: Files) -> None:
    result = files.decrypt(files.directory / "nothing", files.directory / "out")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_stdin_through_cli_runner(files: Files) -> None:
    data = os.urandom(FRAME * 2 + 5)
    sealed = files.directory / "stdin.hyok"
    result = files.run(
        ["encrypt-file", "--key-id", files.key_id, "--frame-size", str(FRAME), "-", str(sealed)],
        input=data,
    )
    assert result.exit_code == 0, result.output
    decrypted = files.run(["decrypt-file", str(sealed), "-"])
    assert decrypted.exit_code == 0, decrypted.output
    assert decrypted.stdout_bytes == data
    assert io.BytesIO(decrypted.stdout_bytes).read() == data


def test_connection_options_checked_first(files: Files, tmp_path: Path) -> None:
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"data")
    junk = tmp_path / "junk.pem"
    junk.write_text("junk\n")
    args = ["encrypt-file", "--key-id", files.key_id, "--ca-cert", str(junk)]
    result = files.run([*args, str(plain), str(tmp_path / "out.hyok")])
    assert result.exit_code == 1
    assert f"the file {junk} named by --ca-cert contains no valid PEM certificate" in result.stderr
    assert "Traceback" not in result.output

    # --endpoint skips the default hyok-up.json, and the error explains how to use it.
    env = {"HYOK_DATA_DIR": str(files.up_file.parent)}
    default = files.up_file.parent / "hyok-up.json"
    assert default == files.up_file
    result = CliRunner().invoke(
        cli,
        [*args[:3], "--endpoint", f"127.0.0.1:{files.stack.port}", str(plain), str(tmp_path / "x")],
        env=env,
    )
    assert result.exit_code == 1
    assert f"add --up-file {default} to sign with its AccessKey" in result.stderr


def test_unreachable_kms_on_decrypt(files: Files, tmp_path: Path) -> None:
    sealed = files.sealed(b"data")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": files.stack.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": files.stack.secret,
    }
    result = CliRunner().invoke(
        cli,
        ["decrypt-file", "--endpoint", f"127.0.0.1:{port}", str(sealed), str(tmp_path / "o")],
        env=env,
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot decrypt the data key of key ")
    assert "connection refused" in result.stderr
