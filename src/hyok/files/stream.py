"""Streaming encryption and decryption of framed messages in constant memory.

Both directions hold one frame of input and one frame of output at a time,
whatever the message size. Neither function calls the KMS: the caller
passes the data key (encrypt) or a function that unwraps it (decrypt).

Python cannot promise that a key leaves no copy in memory. The data key
arrives in a ``bytearray`` that these functions zero as soon as the frame
key is derived, but the derived key is an immutable ``bytes`` object, and
the cipher object keeps its own copy until it is garbage collected.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hyok.files.format import (
    DATA_KEY_LENGTH,
    IV_LENGTH,
    MAX_FRAME_COUNT,
    MAX_FRAME_LENGTH,
    MESSAGE_ID_LENGTH,
    SEQUENCE_NUMBER_END,
    TAG_LENGTH,
    EncryptedDataKey,
    InvalidMessageError,
    MessageHeader,
    derive_keys,
    frame_aad,
    frame_iv,
    header_auth_tag,
    read_header,
    verify_header,
)

__all__ = ["ProgressCallback", "decrypt_message", "encrypt_message", "wipe"]

#: Called after each frame with the number of plaintext bytes it carried.
ProgressCallback = Callable[[int], None]

_SEQUENCE: Final = struct.Struct(">I")
# encrypt_into and decrypt_into reuse one output buffer; older cryptography
# releases lack them, so the frame loops fall back to a new object per frame.
_HAS_INTO: Final = hasattr(AESGCM, "encrypt_into")
# The fields before a frame's ciphertext: sequence number and IV, and for the
# final frame a marker before them and the length after them.
_FRAME_FIELDS: Final = struct.Struct(f">I{IV_LENGTH}s")
_FINAL_FRAME_FIELDS: Final = struct.Struct(f">II{IV_LENGTH}sI")
_FINAL_FIELDS: Final = _FINAL_FRAME_FIELDS.size


def wipe(buffer: bytearray) -> None:
    """Overwrite ``buffer`` with zeros in place, keeping its length."""
    buffer[:] = bytes(len(buffer))


def _fill(source: BinaryIO, view: memoryview) -> int:
    """Read into ``view`` until it is full or the stream ends; return the bytes read."""
    filled = 0
    size = len(view)
    while filled < size:
        count = source.readinto(view[filled:])  # type: ignore[attr-defined]
        if not count:
            break
        filled += count
    return filled


def encrypt_message(
    source: BinaryIO,
    sink: BinaryIO,
    *,
    data_key: bytearray,
    encrypted_data_key: EncryptedDataKey,
    encryption_context: Mapping[str, str],
    frame_length: int,
    message_id: bytes | None = None,
    on_progress: ProgressCallback | None = None,
) -> int:
    """Encrypt everything ``source`` yields into one message on ``sink``; return the byte count.

    ``data_key`` is zeroed once the frame key is derived, also on failure.
    ``message_id`` is random unless given; only test vectors fix it, because
    a repeated message ID with the same data key repeats the frame keys.
    """
    try:
        if not 1 <= frame_length <= MAX_FRAME_LENGTH:
            raise ValueError(f"frame_length must be 1 to {MAX_FRAME_LENGTH}, not {frame_length}")
        if message_id is None:
            message_id = os.urandom(MESSAGE_ID_LENGTH)
        if len(message_id) != MESSAGE_ID_LENGTH:
            raise ValueError(f"message_id must have {MESSAGE_ID_LENGTH} bytes")
        encryption_key, commitment_key = derive_keys(data_key, message_id)
    finally:
        wipe(data_key)

    aead = AESGCM(encryption_key)
    del encryption_key
    header = MessageHeader(
        message_id=message_id,
        encryption_context=dict(encryption_context),
        encrypted_data_keys=(encrypted_data_key,),
        frame_length=frame_length,
        commitment_key=commitment_key,
    ).serialize()
    sink.write(header)
    sink.write(header_auth_tag(aead, header))

    buffer = bytearray(frame_length)
    try:
        return _encrypt_frames(source, sink, aead, message_id, buffer, on_progress)
    finally:
        wipe(buffer)


def _encrypt_frames(
    source: BinaryIO,
    sink: BinaryIO,
    aead: AESGCM,
    message_id: bytes,
    buffer: bytearray,
    on_progress: ProgressCallback | None,
) -> int:
    frame_length = len(buffer)
    view = memoryview(buffer)
    # Each frame leaves in one write: its fields, then the ciphertext and the tag,
    # which the cipher writes into the same reused buffer. The fields end where
    # the ciphertext starts, and the final frame's fields are longer.
    # Ciphertext needs no wiping.
    output = bytearray(_FINAL_FIELDS + frame_length + TAG_LENGTH)
    output_view = memoryview(output)
    total = 0
    sequence = 1
    while True:
        count = _fill(source, view)
        # A short read ends the input. When the input is a whole number of
        # frames, the final frame is empty, as in the AWS Encryption SDK.
        final = count < frame_length
        if sequence > MAX_FRAME_COUNT:
            raise ValueError(
                f"the input needs more than {MAX_FRAME_COUNT} frames of {frame_length} bytes; "
                "use larger frames"
            )
        iv = frame_iv(sequence)
        aad = frame_aad(message_id, sequence, count, final=final)
        if final:
            start = 0
            _FINAL_FRAME_FIELDS.pack_into(output, 0, SEQUENCE_NUMBER_END, sequence, iv, count)
        else:
            start = _FINAL_FIELDS - _FRAME_FIELDS.size
            _FRAME_FIELDS.pack_into(output, start, sequence, iv)
        end = _FINAL_FIELDS + count + TAG_LENGTH
        if _HAS_INTO:
            aead.encrypt_into(iv, view[:count], aad, output_view[_FINAL_FIELDS:end])
        else:
            output_view[_FINAL_FIELDS:end] = aead.encrypt(iv, view[:count], aad)
        sink.write(output_view[start:end])
        total += count
        if on_progress is not None:
            on_progress(count)
        if final:
            return total
        sequence += 1


def decrypt_message(
    source: BinaryIO,
    sink: BinaryIO,
    *,
    unwrap: Callable[[MessageHeader], bytearray],
    on_progress: ProgressCallback | None = None,
) -> MessageHeader:
    """Decrypt one message from ``source`` to ``sink``; return its header.

    ``unwrap`` receives the parsed header, checks it and returns the data key
    (for hyok, through KMS Decrypt). The frames written to ``sink`` have each
    passed their tag, but the message as a whole is intact only when this
    function returns: a caller must treat ``sink`` as unverified until then.
    Raises InvalidMessageError for every defect of the message.
    """
    header, raw_header, tag = read_header(source)
    data_key = unwrap(header)
    try:
        if len(data_key) != DATA_KEY_LENGTH:
            raise InvalidMessageError(
                f"the data key of the message has {len(data_key)} bytes, not {DATA_KEY_LENGTH}"
            )
        encryption_key, commitment_key = derive_keys(data_key, header.message_id)
    finally:
        wipe(data_key)
    aead = AESGCM(encryption_key)
    del encryption_key
    verify_header(aead, raw_header, tag, header.commitment_key, commitment_key)

    # Plaintext passes through this buffer, so it is zeroed however the loop ends.
    output = bytearray(header.frame_length)
    try:
        _decrypt_frames(source, sink, aead, header, output, on_progress)
    finally:
        wipe(output)
    if source.read(1):
        raise InvalidMessageError(
            "the input continues after the final frame: data was appended to the message"
        )
    return header


def _decrypt_frames(
    source: BinaryIO,
    sink: BinaryIO,
    aead: AESGCM,
    header: MessageHeader,
    output: bytearray,
    on_progress: ProgressCallback | None,
) -> None:
    frame_length = header.frame_length
    view = memoryview(bytearray(frame_length + TAG_LENGTH))
    output_view = memoryview(output)
    expected = 1
    while True:
        sequence, final, length = _read_frame_start(source, expected, frame_length)
        sealed = view[: length + TAG_LENGTH]
        if _fill(source, sealed) < len(sealed):
            raise InvalidMessageError(
                f"the input ends inside frame {sequence}: the file is truncated"
            )
        aad = frame_aad(header.message_id, sequence, length, final=final)
        plaintext: memoryview | bytes
        try:
            if _HAS_INTO:
                plaintext = output_view[:length]
                aead.decrypt_into(frame_iv(sequence), sealed, aad, plaintext)
            else:
                plaintext = aead.decrypt(frame_iv(sequence), sealed, aad)
        except InvalidTag:
            raise InvalidMessageError(
                f"frame {sequence} failed authentication: the file was modified, damaged, or "
                "its frames were reordered"
            ) from None
        sink.write(plaintext)
        if on_progress is not None:
            on_progress(length)
        if final:
            return
        expected += 1


def _read_frame_start(source: BinaryIO, expected: int, frame_length: int) -> tuple[int, bool, int]:
    """Read a frame's sequence number, IV and length; return (sequence, final, length)."""
    first = _read_field(source, 4, expected, at_start=True)
    (sequence,) = _SEQUENCE.unpack(first)
    final = sequence == SEQUENCE_NUMBER_END
    if final:
        (sequence,) = _SEQUENCE.unpack(_read_field(source, 4, expected))
    if sequence != expected:
        raise InvalidMessageError(
            f"found frame {sequence} where frame {expected} belongs: frames were reordered, "
            "removed or inserted"
        )
    iv = _read_field(source, IV_LENGTH, expected)
    if iv != frame_iv(sequence):
        raise InvalidMessageError(f"frame {sequence} has a wrong IV: the file was modified")
    if not final:
        return sequence, False, frame_length
    (length,) = _SEQUENCE.unpack(_read_field(source, 4, expected))
    if length > frame_length:
        raise InvalidMessageError(
            f"the final frame claims {length} bytes, more than the frame length "
            f"{frame_length}: the file was modified"
        )
    return sequence, True, length


def _read_field(source: BinaryIO, size: int, expected: int, *, at_start: bool = False) -> bytes:
    data = source.read(size)
    while 0 < len(data) < size:
        more = source.read(size - len(data))
        if not more:
            break
        data += more
    if len(data) == size:
        return data
    if at_start and not data:
        raise InvalidMessageError(
            f"the input ends before frame {expected} without a final frame: the file is truncated"
        )
    raise InvalidMessageError(f"the input ends inside frame {expected}: the file is truncated")
