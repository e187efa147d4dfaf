"""``hyok encrypt-file`` and ``hyok decrypt-file``: envelope encryption of files of any size.

encrypt-file requests one data key per file from the KMS (GenerateDataKey),
encrypts the file in frames of the AWS Encryption SDK message format
(:mod:`hyok.files`), and stores the KMS CiphertextBlob of the data key in
the header. decrypt-file sends that blob to KMS Decrypt and decrypts the
frames. The --context entries are the message's encryption context, and the
KMS binds the data key to them as the EncryptionContext of both calls. The
calls go through DirectKmsClient rather than the official SDK, whose import
alone would cost each run about 0.35 s.

Output to a file goes to a temporary file in the destination directory,
mode 0600, which is renamed to OUT only after the whole message was
written or verified. A failure removes it. docs/file-format.md describes the
format and these choices.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Final

import click

from hyok.cli._common import CliError
from hyok.cli._kms_api import ConnectionOptions, connection_options, resolve_target
from hyok.cli._kms_direct import DirectKmsClient, KmsApiError
from hyok.files.format import (
    DATA_KEY_LENGTH,
    DEFAULT_FRAME_LENGTH,
    MAX_FRAME_LENGTH,
    PROVIDER_ID,
    RESERVED_CONTEXT_PREFIX,
    EncryptedDataKey,
    InvalidMessageError,
    MessageHeader,
)
from hyok.files.stream import ProgressCallback, decrypt_message, encrypt_message, wipe

__all__ = [
    "COMMANDS",
    "MAX_CONTEXT_ENTRIES",
    "MAX_CONTEXT_JSON_LENGTH",
    "MAX_CONTEXT_NAME_LENGTH",
    "MAX_CONTEXT_VALUE_LENGTH",
    "PROGRESS_MIN_BYTES",
    "decrypt_file",
    "encrypt_file",
]

#: Limits of --context. The KMS accepts an EncryptionContext of at most 8,192
#: characters of JSON; the per-entry limits keep each entry readable.
MAX_CONTEXT_ENTRIES: Final = 32
MAX_CONTEXT_NAME_LENGTH: Final = 128
MAX_CONTEXT_VALUE_LENGTH: Final = 1024
MAX_CONTEXT_JSON_LENGTH: Final = 8192
#: The maximum length of a key reference that the KMS accepts: an ARN with a 255-character alias.
_MAX_KEY_REFERENCE_LENGTH: Final = len("acs:kms:") + 64 + 1 + 16 + 1 + 255
_KEY_REFERENCE: Final = re.compile(r"[!-~]+")
#: Frame sizes must be multiples of 128 bytes, which the AWS Encryption SDK
#: for Python requires when it writes messages, so one size works in both.
_FRAME_MULTIPLE: Final = 128
#: Inputs at least this large get a progress bar when standard error is a terminal.
PROGRESS_MIN_BYTES: Final = 64 << 20
_COPY_CHUNK: Final = 1 << 20
#: Error codes of KMS Decrypt for a CiphertextBlob that was changed: a changed
#: key ID names a key that does not exist, and other changes fail the blob's checks.
_DAMAGED_BLOB_CODES: Final = frozenset({"Forbidden.KeyNotFound", "InvalidParameter"})
_STDIO: Final = "-"


# Options and their checks.


def _parse_context(values: Sequence[str], param_hint: str) -> dict[str, str]:
    """Turn ``NAME=VALUE`` options into an encryption context, checking every limit."""
    if len(values) > MAX_CONTEXT_ENTRIES:
        raise click.BadParameter(
            f"{len(values)} entries given; at most {MAX_CONTEXT_ENTRIES} are allowed",
            param_hint=param_hint,
        )
    context: dict[str, str] = {}
    for item in values:
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise click.BadParameter(
                f"{item!r} is not NAME=VALUE; write it as, for example, purpose=backup",
                param_hint=param_hint,
            )
        if len(name) > MAX_CONTEXT_NAME_LENGTH:
            raise click.BadParameter(
                f"the name {name[:40]!r}... has {len(name)} characters; at most "
                f"{MAX_CONTEXT_NAME_LENGTH} are allowed",
                param_hint=param_hint,
            )
        if len(value) > MAX_CONTEXT_VALUE_LENGTH:
            raise click.BadParameter(
                f"the value of {name!r} has {len(value)} characters; at most "
                f"{MAX_CONTEXT_VALUE_LENGTH} are allowed",
                param_hint=param_hint,
            )
        if name.startswith(RESERVED_CONTEXT_PREFIX):
            raise click.BadParameter(
                f"the name {name!r} starts with {RESERVED_CONTEXT_PREFIX!r}, which the message "
                "format reserves; choose another name",
                param_hint=param_hint,
            )
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise click.BadParameter(
                f"the entry {name!r} contains bytes that are not valid UTF-8 text",
                param_hint=param_hint,
            ) from None
        if name in context:
            raise click.BadParameter(
                f"the name {name!r} is given twice; give each name once", param_hint=param_hint
            )
        context[name] = value
    # The SDK may send non-ASCII characters escaped, so the longer form counts.
    encoded = json.dumps(context, ensure_ascii=True, separators=(",", ":"))
    if len(encoded) > MAX_CONTEXT_JSON_LENGTH:
        raise click.BadParameter(
            f"the entries make {len(encoded)} characters of JSON; the KMS accepts at most "
            f"{MAX_CONTEXT_JSON_LENGTH}",
            param_hint=param_hint,
        )
    return context


def _check_key_id(key_id: str) -> str:
    if len(key_id) > _MAX_KEY_REFERENCE_LENGTH or not _KEY_REFERENCE.fullmatch(key_id):
        raise click.BadParameter(
            f"{key_id[:80]!r} is not a key ID, ARN or alias/NAME: give 1 to "
            f"{_MAX_KEY_REFERENCE_LENGTH} printable ASCII characters without spaces",
            param_hint="--key-id",
        )
    return key_id


def _check_frame_size(_ctx: Any, _param: Any, value: int) -> int:
    if value % _FRAME_MULTIPLE:
        raise click.BadParameter(
            f"{value} is not a multiple of {_FRAME_MULTIPLE} bytes; try {DEFAULT_FRAME_LENGTH}"
        )
    return value


_force_option = click.option(
    "--force",
    is_flag=True,
    help="Replace OUT if it exists. Without it, an existing OUT is an error.",
)
_fsync_option = click.option(
    "--fsync",
    is_flag=True,
    help=(
        "Force OUT to disk before it is renamed into place, so that it survives a power "
        "failure right after the command ends (use it before deleting IN). It limits the "
        "speed to the disk's write rate."
    ),
)


# Files.


@dataclass(frozen=True)
class _Paths:
    source: Path | None
    """None for standard input."""
    destination: Path | None
    """None for standard output."""


def _check_paths(source: str, destination: str, *, force: bool) -> _Paths:
    """Check IN and OUT before any KMS call: IN readable, OUT new (or --force), OUT != IN."""
    input_path = None if source == _STDIO else Path(source)
    output_path = None if destination == _STDIO else Path(destination)
    if input_path is not None:
        try:
            mode = input_path.stat().st_mode
        except FileNotFoundError:
            raise click.BadParameter(
                f"the file {input_path} does not exist", param_hint="IN"
            ) from None
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {input_path}: {exc.strerror}", param_hint="IN"
            ) from None
        if stat.S_ISDIR(mode):
            raise click.BadParameter(f"{input_path} is a directory", param_hint="IN")
    if output_path is None:
        return _Paths(input_path, None)

    if output_path.is_dir():
        raise click.BadParameter(
            f"{output_path} is a directory; give the path of the file to write", param_hint="OUT"
        )
    if input_path is not None and _same_file(input_path, output_path):
        raise click.BadParameter(
            f"{output_path} is the input file; write to another file, then rename it",
            param_hint="OUT",
        )
    if output_path.exists() and not force:
        raise click.BadParameter(
            f"{output_path} exists; pass --force to replace it, or choose another path",
            param_hint="OUT",
        )
    if not output_path.parent.is_dir():
        raise click.BadParameter(
            f"the directory {output_path.parent} does not exist", param_hint="OUT"
        )
    return _Paths(input_path, output_path)


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return first.resolve() == second.resolve()


@contextlib.contextmanager
def _open_source(path: Path | None) -> Iterator[tuple[BinaryIO, int | None]]:
    """Open IN, or standard input; also yield the size of a regular file, else None."""
    if path is None:
        yield sys.stdin.buffer, None
        return
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise CliError(f"cannot open {path}: {exc.strerror}") from None
    with stream:
        info = os.fstat(stream.fileno())
        yield stream, info.st_size if stat.S_ISREG(info.st_mode) else None


@contextlib.contextmanager
def _staged_output(destination: Path, *, force: bool, fsync: bool) -> Iterator[BinaryIO]:
    """Yield a temporary file beside ``destination``; rename it there only if the block succeeds.

    The file has mode 0600 from the start. On any failure, interruption
    included, it is removed and ``destination`` is left as it was. With
    ``fsync`` its data reach the disk before the rename; without, the
    kernel writes them back later, as ``cp`` leaves a copy.
    """
    try:
        descriptor, name = tempfile.mkstemp(
            prefix=f".{destination.name}.", suffix=".part", dir=destination.parent
        )
    except OSError as exc:
        raise CliError(
            f"cannot create a temporary file in {destination.parent}: {exc.strerror}"
        ) from None
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            yield stream
            stream.flush()
            if fsync:
                os.fsync(stream.fileno())
        _publish(temporary, destination, force=force)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def _publish(temporary: Path, destination: Path, *, force: bool) -> None:
    if force:
        os.replace(temporary, destination)
        return
    # A hard link fails if OUT appeared meanwhile, so nothing is overwritten.
    try:
        os.link(temporary, destination)
    except FileExistsError:
        raise CliError(
            f"{destination} was created by someone else while this command ran; pass --force "
            "to replace it"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # Some file systems have no hard links; check again and rename.
        if destination.exists():
            raise CliError(f"{destination} exists; pass --force to replace it") from None
        os.replace(temporary, destination)
        return
    temporary.unlink()


@contextlib.contextmanager
def _progress(total: int | None, description: str) -> Iterator[ProgressCallback | None]:
    """Yield a callback that advances a progress bar on standard error, or None for no bar.

    A bar appears only for inputs of at least PROGRESS_MIN_BYTES and only
    when standard error is a terminal, so pipes and logs stay clean.
    """
    if total is None or total < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda count: bar.advance(task, count)


def _write_error(destination: Path | None, exc: OSError) -> CliError:
    where = "standard output" if destination is None else str(destination)
    return CliError(f"cannot write to {where}: {exc.strerror}")


# KMS calls.


def _decode_data_key(body: Mapping[str, Any], client: DirectKmsClient) -> bytearray:
    text = body.get("Plaintext")
    try:
        key = bytearray(base64.b64decode(text or "", validate=True))
    except (binascii.Error, TypeError):
        raise CliError(f"the KMS at {client.url} returned a Plaintext that is not Base64") from None
    if len(key) != DATA_KEY_LENGTH:
        length = len(key)
        wipe(key)
        raise CliError(
            f"the KMS at {client.url} returned a data key of {length} bytes, not {DATA_KEY_LENGTH}"
        )
    return key


def _context_parameter(context: Mapping[str, str]) -> dict[str, str]:
    """Return the EncryptionContext parameter of a KMS call, none for an empty context."""
    if not context:
        return {}
    return {"EncryptionContext": json.dumps(dict(context), separators=(",", ":"))}


def _generate_data_key(
    client: DirectKmsClient, key_id: str, context: Mapping[str, str]
) -> tuple[bytearray, EncryptedDataKey]:
    """Call GenerateDataKey for a 256-bit key bound to ``context``."""
    body = client.call(
        "GenerateDataKey", {"KeyId": key_id, "KeySpec": "AES_256", **_context_parameter(context)}
    )
    data_key = _decode_data_key(body, client)
    blob = body.get("CiphertextBlob")
    try:
        ciphertext = base64.b64decode(blob or "", validate=True)
    except (binascii.Error, TypeError):
        ciphertext = b""
    if not ciphertext:
        wipe(data_key)
        raise CliError(f"the KMS at {client.url} returned no valid CiphertextBlob")
    key_info = str(body.get("KeyId") or key_id).encode("utf-8")
    return data_key, EncryptedDataKey(PROVIDER_ID, key_info, ciphertext)


def _unwrapper(
    client_factory: Callable[[], DirectKmsClient], expected: Mapping[str, str]
) -> Callable[[MessageHeader], bytearray]:
    """Return the ``unwrap`` function of decrypt_message: check the context, call KMS Decrypt."""

    def unwrap(header: MessageHeader) -> bytearray:
        context = header.encryption_context
        for name, value in expected.items():
            if name not in context:
                raise CliError(
                    f"the file's encryption context has no entry {name!r}, which --context "
                    "requires; it was encrypted for another purpose"
                )
            if context[name] != value:
                raise CliError(
                    f"the file's encryption context has {name}={context[name]!r}, but --context "
                    f"requires {name}={value!r}"
                )
        keys = [key for key in header.encrypted_data_keys if key.provider_id == PROVIDER_ID]
        if not keys:
            providers = ", ".join(sorted({key.provider_id for key in header.encrypted_data_keys}))
            raise CliError(
                f"the file has no data key from the hyok KMS (key provider {PROVIDER_ID!r}); "
                f"its data keys belong to: {providers}"
            )
        failure: CliError | None = None
        with client_factory() as client:
            for key in keys:
                parameters = {
                    "CiphertextBlob": base64.b64encode(key.ciphertext).decode("ascii"),
                    **_context_parameter(context),
                }
                try:
                    body = client.call("Decrypt", parameters)
                except CliError as exc:
                    failure = exc
                    continue
                return _decode_data_key(body, client)
        assert failure is not None
        key_name = keys[-1].key_info.decode("utf-8", "replace")
        if not isinstance(failure, KmsApiError):
            # The KMS was not reached, or did not respond.
            raise CliError(
                f"cannot decrypt the data key of key {key_name}: {failure.format_message()}"
            )
        text = f"the KMS did not decrypt the data key of key {key_name}: {failure.format_message()}"
        if failure.code in _DAMAGED_BLOB_CODES:
            text += (
                f". If the file was encrypted under key {key_name}, its header (the encrypted "
                "data key or the encryption context) is damaged"
            )
        raise CliError(text)

    return unwrap


# Commands.


@click.command("encrypt-file")
@click.option("--key-id", required=True, metavar="KEY", help="Key ID, ARN or alias/NAME.")
@click.option(
    "--context",
    "context",
    multiple=True,
    metavar="NAME=VALUE",
    help=(
        f"Encryption context entry, stored in the file and bound to the data key by the KMS; "
        f"repeat for several (up to {MAX_CONTEXT_ENTRIES})."
    ),
)
@click.option(
    "--frame-size",
    type=click.IntRange(_FRAME_MULTIPLE, MAX_FRAME_LENGTH),
    default=DEFAULT_FRAME_LENGTH,
    show_default=True,
    callback=_check_frame_size,
    help="Plaintext bytes per frame, a multiple of 128.",
)
@_force_option
@_fsync_option
@click.argument("source", metavar="IN")
@click.argument("destination", metavar="OUT")
@connection_options
def encrypt_file(
    *,
    connection: ConnectionOptions,
    key_id: str,
    context: tuple[str, ...],
    frame_size: int,
    force: bool,
    fsync: bool,
    source: str,
    destination: str,
) -> None:
    """Encrypt the file IN to OUT under a new data key from KEY.

    '-' as IN reads standard input, and '-' as OUT writes standard output.
    OUT is written to a temporary file (mode 0600) beside it and renamed
    when complete. The format is the AWS Encryption SDK's framed message
    format (version 2, suite 0x0478); see docs/file-format.md.
    """
    entries = _parse_context(context, "--context")
    key_id = _check_key_id(key_id)
    paths = _check_paths(source, destination, force=force)

    with DirectKmsClient(resolve_target(connection)) as client:
        data_key, encrypted_key = _generate_data_key(client, key_id, entries)
    try:
        with _open_source(paths.source) as (reader, size):

            def run(sink: BinaryIO) -> int:
                with _progress(size, "Encrypting") as on_progress:
                    return encrypt_message(
                        reader,
                        sink,
                        data_key=data_key,
                        encrypted_data_key=encrypted_key,
                        encryption_context=entries,
                        frame_length=frame_size,
                        on_progress=on_progress,
                    )

            try:
                if paths.destination is None:
                    run(sys.stdout.buffer)
                    sys.stdout.buffer.flush()
                    return
                with _staged_output(paths.destination, force=force, fsync=fsync) as sink:
                    count = run(sink)
            except OSError as exc:
                raise _write_error(paths.destination, exc) from None
    finally:
        wipe(data_key)
    key_name = encrypted_key.key_info.decode("utf-8", "replace")
    click.echo(f"Encrypted {count} bytes to {paths.destination} under key {key_name}.", err=True)


@click.command("decrypt-file")
@click.option(
    "--context",
    "context",
    multiple=True,
    metavar="NAME=VALUE",
    help=(
        "Encryption context entry that the file must contain; repeat for several. "
        "The file's whole context is sent to the KMS either way."
    ),
)
@_force_option
@_fsync_option
@click.argument("source", metavar="IN")
@click.argument("destination", metavar="OUT")
@connection_options
def decrypt_file(
    *,
    connection: ConnectionOptions,
    context: tuple[str, ...],
    force: bool,
    fsync: bool,
    source: str,
    destination: str,
) -> None:
    """Decrypt the file IN, written by encrypt-file, to OUT.

    Nothing reaches OUT until the whole file has been verified: the
    plaintext goes to a temporary file (mode 0600) beside OUT, which is
    renamed to OUT at the end and removed on any failure. With '-' as OUT,
    the plaintext is verified into an unnamed temporary file in $TMPDIR
    first and copied to standard output only when the whole file is intact,
    so a damaged file prints nothing. '-' as IN reads standard input.
    """
    expected = _parse_context(context, "--context")
    paths = _check_paths(source, destination, force=force)
    # The client is built only when the header has been read and checked.
    unwrap = _unwrapper(lambda: DirectKmsClient(resolve_target(connection)), expected)

    with _open_source(paths.source) as (reader, size):

        def run(sink: BinaryIO) -> None:
            with _progress(size, "Decrypting") as on_progress:
                decrypt_message(reader, sink, unwrap=unwrap, on_progress=on_progress)

        try:
            if paths.destination is None:
                _decrypt_to_stdout(run)
                return
            with _staged_output(paths.destination, force=force, fsync=fsync) as sink:
                run(sink)
        except InvalidMessageError as exc:
            raise CliError(f"cannot decrypt {source}: {exc.message}") from None
        except OSError as exc:
            raise _write_error(paths.destination, exc) from None
    click.echo(f"Decrypted {source} to {paths.destination}.", err=True)


def _decrypt_to_stdout(run: Callable[[BinaryIO], None]) -> None:
    # Standard output cannot be taken back, so the plaintext is verified in
    # full first. TemporaryFile has no name where the system supports it.
    spool: IO[bytes]
    try:
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CliError(
            f"cannot create a temporary file in {tempfile.gettempdir()} to verify the "
            f"plaintext before printing it: {exc.strerror}; set TMPDIR to a writable directory"
        ) from None
    with spool:
        run(spool)
        spool.seek(0)
        shutil.copyfileobj(spool, sys.stdout.buffer, _COPY_CHUNK)
        sys.stdout.buffer.flush()


#: The commands that ``hyok`` registers at its top level.
COMMANDS: Final = (encrypt_file, decrypt_file)
