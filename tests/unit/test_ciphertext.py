"""The KMS ciphertext blob, EncryptionContext parsing and the AAD sent to the proxy."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hyok.common.errors import RequestError
from hyok.kms import ciphertext
from hyok.kms.ciphertext import (
    AAD_LABEL,
    INVALID_CIPHERTEXT_MESSAGE,
    MAX_AAD_LENGTH,
    MAX_BLOB_BASE64_LENGTH,
    MAX_BLOB_LENGTH,
    MAX_ENCRYPTION_CONTEXT_LENGTH,
    MAX_KEY_ARN_LENGTH,
    CiphertextBlob,
    InvalidCiphertextBlobError,
    InvalidEncryptionContextError,
    canonical_encryption_context,
    decode_blob,
    decode_blob_base64,
    encode_blob,
    encode_blob_base64,
    parse_encryption_context,
    proxy_aad,
)

ROOT = Path(__file__).parent.parent.parent
VECTORS = ROOT / "tests" / "vectors" / "ciphertext"
BLOB_VECTORS: list[dict[str, Any]] = json.loads((VECTORS / "blob-v1.json").read_text())["vectors"]
AAD_VECTORS: list[dict[str, Any]] = json.loads((VECTORS / "aad-v1.json").read_text())["vectors"]

ARN_A = "acs:kms:cn-hangzhou:1234567890123456:key/key-hzz65f1cb66fa42qo1234"
ARN_B = "acs:kms:cn-hangzhou:1234567890123456:key/key-hzz65f1cb66fa42qo5678"
VERSION_ID = "6f1b3c2a-8d4e-4f5a-9b6c-7d8e9f0a1b2c"
# An ARN and a key version ID of the maximum length, the worst case for the AAD size.
MAX_LENGTH_ARN = "acs:kms:" + "r" * 57 + ":" + "1" * 57 + ":key/" + "k" * 128
MAX_LENGTH_VERSION_ID = "v" * 64


def blob_bytes(
    *,
    magic: bytes = b"\x87\x2a\x24",
    version: int = 1,
    key_id: bytes = b"key-1",
    key_version_id: bytes = VERSION_ID.encode(),
    iv: bytes = b"\x01" * 12,
    tag: bytes = b"\x02" * 16,
    metadata: bytes = b"hyok/1",
    ciphertext_bytes: bytes = b"\x03" * 32,
    ciphertext_length: int | None = None,
) -> bytes:
    """Write a blob field by field with no checks, so tests can build invalid ones."""
    length = len(ciphertext_bytes) if ciphertext_length is None else ciphertext_length
    return b"".join(
        [
            magic,
            bytes([version]),
            bytes([len(key_id)]) + key_id,
            bytes([len(key_version_id)]) + key_version_id,
            bytes([len(iv)]) + iv,
            bytes([len(tag)]) + tag,
            bytes([len(metadata)]) + metadata,
            length.to_bytes(2, "big") + ciphertext_bytes,
        ]
    )


def sample_blob(**changes: Any) -> CiphertextBlob:
    fields: dict[str, Any] = {
        "key_id": "key-1",
        "key_version_id": VERSION_ID,
        "iv": b"\x01" * 12,
        "tag": b"\x02" * 16,
        "ciphertext": b"\x03" * 32,
        "ciphertext_metadata": b"hyok/1",
    }
    fields.update(changes)
    return CiphertextBlob(**fields)


def decode_canonical(data: bytes) -> list[tuple[str, str]]:
    """Read a canonical EncryptionContext back into its pairs, in encoded order."""
    count = int.from_bytes(data[:2], "big")
    offset = 2
    pairs = []
    for _ in range(count):
        strings = []
        for _ in range(2):
            length = int.from_bytes(data[offset : offset + 2], "big")
            offset += 2
            strings.append(data[offset : offset + length].decode("utf-8"))
            offset += length
        pairs.append((strings[0], strings[1]))
    assert offset == len(data), "canonical form has bytes after its last pair"
    return pairs


def assert_opaque(error: InvalidCiphertextBlobError) -> None:
    assert error.code == "InvalidParameter"
    assert error.http_status == 400
    assert error.message == INVALID_CIPHERTEXT_MESSAGE
    assert str(error) == INVALID_CIPHERTEXT_MESSAGE
    assert error.detail
    assert error.detail != INVALID_CIPHERTEXT_MESSAGE


identifiers = st.from_regex(r"[A-Za-z0-9._-]{1,128}", fullmatch=True)
version_ids = st.uuids().map(str) | st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
blobs = st.builds(
    CiphertextBlob,
    key_id=identifiers,
    key_version_id=version_ids,
    iv=st.sampled_from([12, 16]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    tag=st.binary(min_size=16, max_size=16),
    ciphertext=st.binary(max_size=6_144),
    ciphertext_metadata=st.binary(max_size=20),
)
contexts = st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=8)


# --- Blob: round trips and fixed vectors -------------------------------------


@given(blobs)
def test_blob_round_trip(blob: CiphertextBlob) -> None:
    data = encode_blob(blob)
    assert len(data) <= MAX_BLOB_LENGTH
    assert decode_blob(data) == blob


@given(blobs)
def test_blob_base64_round_trip(blob: CiphertextBlob) -> None:
    text = encode_blob_base64(blob)
    assert text.startswith("hyok")
    assert len(text) <= MAX_BLOB_BASE64_LENGTH
    assert base64.b64decode(text, validate=True) == encode_blob(blob)
    assert decode_blob_base64(text) == blob


@pytest.mark.parametrize("vector", BLOB_VECTORS, ids=lambda v: v["name"])
def test_vector_decodes_to_fields(vector: dict[str, Any]) -> None:
    blob = decode_blob_base64(vector["base64"])
    assert blob.format_version == 1
    assert blob.key_id == vector["key_id"]
    assert blob.key_version_id == vector["key_version_id"]
    assert blob.iv.hex() == vector["iv"]
    assert blob.tag.hex() == vector["tag"]
    assert blob.ciphertext_metadata.hex() == vector["ciphertext_metadata"]
    assert blob.ciphertext.hex() == vector["ciphertext"]


@pytest.mark.parametrize("vector", BLOB_VECTORS, ids=lambda v: v["name"])
def test_vector_encodes_to_same_bytes(vector: dict[str, Any]) -> None:
    blob = CiphertextBlob(
        key_id=vector["key_id"],
        key_version_id=vector["key_version_id"],
        iv=bytes.fromhex(vector["iv"]),
        tag=bytes.fromhex(vector["tag"]),
        ciphertext=bytes.fromhex(vector["ciphertext"]),
        ciphertext_metadata=bytes.fromhex(vector["ciphertext_metadata"]),
    )
    assert len(encode_blob(blob)) == vector["length"]
    assert encode_blob_base64(blob) == vector["base64"]


def test_last_vector_has_max_length() -> None:
    largest = base64.b64decode(BLOB_VECTORS[-1]["base64"])
    assert len(largest) == MAX_BLOB_LENGTH
    assert len(BLOB_VECTORS[-1]["base64"]) == MAX_BLOB_BASE64_LENGTH


def test_format_doc_shows_worked_example() -> None:
    document = (ROOT / "docs" / "ciphertext-format.md").read_text()
    assert BLOB_VECTORS[0]["base64"] in document
    hex_lines = [line for line in document.splitlines() if line.startswith("872a2401")]
    assert hex_lines, "the worked example's hex dump is missing"
    assert "".join(hex_lines[0].split()) in base64.b64decode(BLOB_VECTORS[0]["base64"]).hex()


def test_blob_repr_shows_sizes_not_bytes() -> None:
    blob = sample_blob(ciphertext=b"\xab" * 32, tag=b"\xcd" * 16)
    text = repr(blob)
    assert "ciphertext=<32 bytes>" in text
    assert "tag=<16 bytes>" in text
    assert "iv=<12 bytes>" in text
    assert "ciphertext_metadata=<6 bytes>" in text
    assert "key-1" in text
    assert "ab" * 4 not in text
    assert "\\xab" not in text
    assert "\\xcd" not in text


# --- Blob: construction checks (KMS-side values) -----------------------------


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"key_id": ""}, "key_id"),
        ({"key_id": "k" * 129}, "key_id"),
        ({"key_id": "key/1"}, "key_id"),
        ({"key_id": "key 1"}, "key_id"),
        ({"key_id": "clé"}, "key_id"),
        ({"key_version_id": ""}, "key_version_id"),
        ({"key_version_id": "v" * 65}, "key_version_id"),
        ({"key_version_id": "v:1"}, "key_version_id"),
        ({"iv": b"\x00" * 11}, "iv"),
        ({"iv": b"\x00" * 13}, "iv"),
        ({"iv": b""}, "iv"),
        ({"tag": b"\x00" * 15}, "tag"),
        ({"tag": b"\x00" * 17}, "tag"),
        ({"ciphertext": b"\x00" * 6_145}, "ciphertext has"),
        ({"ciphertext_metadata": b"\x00" * 21}, "ciphertext_metadata"),
        ({"format_version": 2}, "format version 2"),
    ],
    ids=lambda value: repr(value)[:30],
)
def test_blob_rejects_bad_field(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        sample_blob(**changes)


@pytest.mark.parametrize(
    "changes",
    [{"ciphertext": "text"}, {"iv": bytearray(12)}, {"key_id": b"key-1"}],
    ids=repr,
)
def test_blob_rejects_wrong_type(changes: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        sample_blob(**changes)


def test_blob_accepts_bounds() -> None:
    sample_blob(key_id="k" * 128, key_version_id="v" * 64, iv=b"\x00" * 16)
    sample_blob(ciphertext=b"", ciphertext_metadata=b"")
    sample_blob(ciphertext=b"\x00" * 6_144, ciphertext_metadata=b"\x00" * 20)


# --- Blob: every malformed input gives the one opaque error ------------------

MALFORMED_BLOBS: dict[str, bytes] = {
    "empty": b"",
    "wrong magic": b"\x00\x2a\x24" + blob_bytes()[3:],
    "text magic": b"hyok" + blob_bytes()[4:],
    "magic only": b"\x87\x2a\x24",
    "version 0": blob_bytes(version=0),
    "version 2": blob_bytes(version=2),
    "version 255": blob_bytes(version=255),
    "key ID empty": blob_bytes(key_id=b""),
    "key ID 129 characters": blob_bytes(key_id=b"k" * 129),
    "key ID with slash": blob_bytes(key_id=b"key/1"),
    "key ID with space": blob_bytes(key_id=b"key 1"),
    "key ID not ASCII": blob_bytes(key_id="clé".encode()),
    "key ID with NUL": blob_bytes(key_id=b"key\x001"),
    "key version ID empty": blob_bytes(key_version_id=b""),
    "key version ID 65 characters": blob_bytes(key_version_id=b"v" * 65),
    "key version ID with colon": blob_bytes(key_version_id=b"v:1"),
    "IV empty": blob_bytes(iv=b""),
    "IV 11 bytes": blob_bytes(iv=b"\x01" * 11),
    "IV 13 bytes": blob_bytes(iv=b"\x01" * 13),
    "IV 17 bytes": blob_bytes(iv=b"\x01" * 17),
    "tag empty": blob_bytes(tag=b""),
    "tag 12 bytes": blob_bytes(tag=b"\x02" * 12),
    "tag 17 bytes": blob_bytes(tag=b"\x02" * 17),
    "metadata 21 bytes": blob_bytes(metadata=b"m" * 21),
    "ciphertext 6,145 bytes": blob_bytes(ciphertext_bytes=b"\x03" * 6_145),
    "ciphertext length 65,535 with 32 bytes": blob_bytes(ciphertext_length=0xFFFF),
    "ciphertext length 6,144 with 32 bytes": blob_bytes(ciphertext_length=6_144),
    "ciphertext length 31 with 32 bytes": blob_bytes(ciphertext_length=31),
    "one trailing byte": blob_bytes() + b"\x00",
    "two blobs": blob_bytes() + blob_bytes(),
    "over the maximum length": b"\x87\x2a\x24\x01" + b"\x00" * MAX_BLOB_LENGTH,
}


@pytest.mark.parametrize("data", MALFORMED_BLOBS.values(), ids=MALFORMED_BLOBS.keys())
def test_malformed_blob_opaque_error(data: bytes) -> None:
    with pytest.raises(InvalidCiphertextBlobError) as caught:
        decode_blob(data)
    assert_opaque(caught.value)


@pytest.mark.parametrize("data", MALFORMED_BLOBS.values(), ids=MALFORMED_BLOBS.keys())
def test_malformed_blob_base64_opaque_error(data: bytes) -> None:
    with pytest.raises(InvalidCiphertextBlobError) as caught:
        decode_blob_base64(base64.b64encode(data).decode())
    assert_opaque(caught.value)


def test_builder_writes_valid_blob() -> None:
    # The malformed cases above differ from this one valid blob in one field each.
    assert decode_blob(blob_bytes()) == sample_blob(key_id="key-1")


@pytest.mark.parametrize("vector", BLOB_VECTORS[:3], ids=lambda v: v["name"])
def test_every_truncation_rejected(vector: dict[str, Any]) -> None:
    data = base64.b64decode(vector["base64"])
    for end in range(len(data)):
        with pytest.raises(InvalidCiphertextBlobError) as caught:
            decode_blob(data[:end])
        assert_opaque(caught.value)


def base64_cases() -> dict[str, str]:
    text = BLOB_VECTORS[0]["base64"]
    padded = BLOB_VECTORS[2]["base64"]
    assert "+" in text
    assert "/" in text
    assert padded.endswith("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = padded.rstrip("=")[-1]
    # The last character before "=" or "==" has unused low bits that must be zero.
    loose = alphabet[alphabet.index(last) ^ 1]
    return {
        "empty": "",
        "not Base64": "!!!!",
        "URL-safe alphabet": text.replace("+", "-").replace("/", "_"),
        "padding removed": padded.rstrip("="),
        "extra padding": text + "==",
        "space inside": text[:8] + " " + text[8:],
        "newline at end": text + "\n",
        "not ASCII": text[:-4] + "hyé=",
        "nonzero unused bits": padded.rstrip("=")[:-1] + loose + "=" * padded.count("="),
        "longer than any blob": "A" * (MAX_BLOB_BASE64_LENGTH + 4),
    }


@pytest.mark.parametrize("case", base64_cases().keys())
def test_bad_base64_opaque_error(case: str) -> None:
    with pytest.raises(InvalidCiphertextBlobError) as caught:
        decode_blob_base64(base64_cases()[case])
    assert_opaque(caught.value)


def test_long_base64_rejected_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: object, **_kwargs: object) -> bytes:
        raise AssertionError("Base64 text was decoded before its length was checked")

    monkeypatch.setattr(base64, "b64decode", fail)
    with pytest.raises(InvalidCiphertextBlobError):
        decode_blob_base64("A" * 1_000_000)


def test_error_detail_names_cause_without_content() -> None:
    with pytest.raises(InvalidCiphertextBlobError) as caught:
        decode_blob(blob_bytes(key_id=b"secret/value"))
    assert "key_id" in caught.value.detail
    assert "secret" not in caught.value.detail

    with pytest.raises(InvalidCiphertextBlobError) as caught:
        decode_blob(blob_bytes(version=9))
    assert "version 9" in caught.value.detail

    with pytest.raises(InvalidCiphertextBlobError) as caught:
        decode_blob(blob_bytes(tag=b"\x02" * 12))
    assert "tag" in caught.value.detail


def test_error_detail_not_in_repr_or_str() -> None:
    with pytest.raises(InvalidCiphertextBlobError) as caught:
        decode_blob(blob_bytes(version=9))
    assert "version" not in str(caught.value)
    assert "version" not in repr(caught.value)
    assert isinstance(caught.value, RequestError)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_opaque_error(data: bytes) -> None:
    try:
        decode_blob(b"\x87\x2a\x24\x01" + data)
    except InvalidCiphertextBlobError as exc:
        assert_opaque(exc)


@settings(max_examples=300)
@given(st.integers(0, 137), st.integers(0, 255))
def test_changed_byte_decodes_or_opaque_error(index: int, value: int) -> None:
    data = bytearray(base64.b64decode(BLOB_VECTORS[0]["base64"]))
    data[index] = value
    try:
        decode_blob(bytes(data))
    except InvalidCiphertextBlobError as exc:
        assert_opaque(exc)


@given(st.text(max_size=200))
def test_random_text_decodes_or_opaque_error(text: str) -> None:
    try:
        decode_blob_base64(text)
    except InvalidCiphertextBlobError as exc:
        assert_opaque(exc)


# --- EncryptionContext parsing ------------------------------------------------


def parse_error(value: str) -> InvalidEncryptionContextError:
    with pytest.raises(InvalidEncryptionContextError) as caught:
        parse_encryption_context(value)
    assert caught.value.code == "InvalidParameter"
    assert caught.value.http_status == 400
    assert "EncryptionContext" in caught.value.message
    return caught.value


@pytest.mark.parametrize("value", [None, ""])
def test_missing_context_is_empty(value: str | None) -> None:
    assert parse_encryption_context(value) == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", {}),
        ('{"purpose":"backup"}', {"purpose": "backup"}),
        ('{ "a" : "b" ,\n "c":"" }', {"a": "b", "c": ""}),
        ('{"":""}', {"": ""}),
        ('{"部门":"财务"}', {"部门": "财务"}),
        ('{"\\u00e9":"\\u00fc"}', {"é": "ü"}),
        ('{"k":"\\ud83d\\ude00"}', {"k": "\U0001f600"}),
        ('{"k":"😀"}', {"k": "\U0001f600"}),
        ('{"a\\"b":"c\\\\d"}', {'a"b': "c\\d"}),
        ('{"k":"\\u0000"}', {"k": "\x00"}),
    ],
)
def test_context_parsed(text: str, expected: dict[str, str]) -> None:
    assert parse_encryption_context(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"a":"1","a":"2"}',
        '{"a":"1","b":"2","a":"1"}',
        '{"a":"1","\\u0061":"2"}',
    ],
)
def test_duplicate_key_rejected(text: str) -> None:
    error = parse_error(text)
    assert "more than once" in error.message
    assert "'a'" in error.message


def test_nested_duplicate_key_rejected() -> None:
    parse_error('{"a":{"b":"1","b":"2"}}')


@pytest.mark.parametrize(
    ("literal", "kind"),
    [
        ("1", "a number"),
        ("-0", "a number"),
        ("1.5", "a number"),
        ("1e400", "a number"),
        ("NaN", "a number"),
        ("Infinity", "a number"),
        ("-Infinity", "a number"),
        ("1" * 5_000, "a number"),
        ("true", "a boolean"),
        ("false", "a boolean"),
        ("null", "null"),
        ("[]", "an array"),
        ('["a"]', "an array"),
        ("{}", "an object"),
        ('{"b":"c"}', "an object"),
    ],
    ids=lambda value: value[:12],
)
def test_non_string_value_rejected(literal: str, kind: str) -> None:
    error = parse_error('{"ok":"x","bad":' + literal + "}")
    assert f"key 'bad' is {kind}" in error.message


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("[]", "an array"),
        ('"a"', "a string"),
        ("1", "a number"),
        ("null", "null"),
        ("true", "a boolean"),
    ],
)
def test_non_object_rejected(text: str, kind: str) -> None:
    error = parse_error(text)
    assert f"is {kind}" in error.message
    assert "JSON object" in error.message


@pytest.mark.parametrize(
    "text",
    [
        "{",
        '{"a":"b",}',
        "{'a':'b'}",
        " ",
        '{"a":"b"} x',
        '{"a":"line\nbreak"}',
        "\ufeff{}",
        '{"a":b}',
    ],
)
def test_invalid_json_rejected(text: str) -> None:
    assert "not valid JSON" in parse_error(text).message


@pytest.mark.parametrize("text", ["[" * 4_096 + "]" * 4_096, '{"a":' * 1_300 + "1" + "}" * 1_300])
def test_deep_nesting_rejected(text: str) -> None:
    assert len(text) <= MAX_ENCRYPTION_CONTEXT_LENGTH
    parse_error(text)


@pytest.mark.parametrize("text", ['{"k":"\\ud800"}', '{"\\udfff":"v"}', '{"k":"\\ude00\\ud83d"}'])
def test_unpaired_surrogate_rejected(text: str) -> None:
    assert "unpaired surrogate" in parse_error(text).message


def test_context_of_8192_characters_accepted() -> None:
    text = '{"a":"' + "x" * (MAX_ENCRYPTION_CONTEXT_LENGTH - 8) + '"}'
    assert len(text) == 8_192
    assert parse_encryption_context(text) == {"a": "x" * 8_184}


def test_context_length_counts_characters() -> None:
    text = '{"a":"' + "財" * (MAX_ENCRYPTION_CONTEXT_LENGTH - 8) + '"}'
    assert len(text) == 8_192
    assert len(text.encode()) > 8_192
    assert parse_encryption_context(text) == {"a": "財" * 8_184}


def test_context_of_8193_characters_rejected() -> None:
    text = '{"a":"' + "x" * (MAX_ENCRYPTION_CONTEXT_LENGTH - 7) + '"}'
    assert len(text) == 8_193
    error = parse_error(text)
    assert "8193" in error.message
    assert "8192" in error.message


# --- Canonical EncryptionContext ---------------------------------------------


def test_canonical_empty_context() -> None:
    assert canonical_encryption_context({}) == b"\x00\x00"


def test_canonical_known_bytes() -> None:
    assert canonical_encryption_context({"b": "2", "a": "1"}) == (
        b"\x00\x02" + b"\x00\x01a\x00\x011" + b"\x00\x01b\x00\x012"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"a": "b,c"}, {"a": "b", "c": ""}),
        ({"a,b": "c"}, {"a": "b,c"}),
        ({"a=b": ""}, {"a": "=b"}),
        ({"ab": ""}, {"a": "b"}),
        ({"": "ab"}, {"a": "b"}),
        ({"a\x00": "b"}, {"a": "\x00b"}),
        ({"a": "\x00\x01b"}, {"a": "", "b": ""}),
        ({"a": "b", "c": "d"}, {"a": "b\x00\x01c\x00\x01d"}),
        ({}, {"": ""}),
        ({"\u00e9": "x"}, {"e\u0301": "x"}),
        ({"a": "B"}, {"a": "b"}),
    ],
    ids=repr,
)
def test_canonical_tricky_contexts_differ(first: dict[str, str], second: dict[str, str]) -> None:
    assert canonical_encryption_context(first) != canonical_encryption_context(second)


@given(contexts, st.randoms(use_true_random=False))
def test_canonical_ignores_key_order(context: dict[str, str], random: Any) -> None:
    items = list(context.items())
    random.shuffle(items)
    assert canonical_encryption_context(dict(items)) == canonical_encryption_context(context)


@given(contexts)
def test_canonical_decodes_to_same_context(context: dict[str, str]) -> None:
    # Decoding recovers the context, so no two contexts share a canonical form.
    pairs = decode_canonical(canonical_encryption_context(context))
    assert dict(pairs) == context
    keys = [key.encode() for key, _ in pairs]
    assert keys == sorted(keys)


@given(contexts, contexts)
def test_canonical_equal_only_for_equal_contexts(
    first: dict[str, str], second: dict[str, str]
) -> None:
    same_bytes = canonical_encryption_context(first) == canonical_encryption_context(second)
    assert same_bytes == (first == second)


def test_canonical_sorts_by_utf8_bytes() -> None:
    context = {"部门": "1", "é": "2", "z": "3", "Z": "4", "": "5"}
    keys = [key for key, _ in decode_canonical(canonical_encryption_context(context))]
    assert keys == ["", "Z", "z", "é", "部门"]


def test_canonical_rejects_unpaired_surrogate() -> None:
    with pytest.raises(InvalidEncryptionContextError):
        canonical_encryption_context({"k": "\ud800"})


def test_canonical_rejects_value_over_65535_bytes() -> None:
    with pytest.raises(InvalidEncryptionContextError, match="65535"):
        canonical_encryption_context({"k": "x" * 65_536})
    assert len(canonical_encryption_context({"k": "x" * 65_535})) == 2 + 3 + 2 + 65_535


def test_canonical_rejects_non_string() -> None:
    bad: Any = {"k": 1}
    with pytest.raises(TypeError):
        canonical_encryption_context(bad)


# --- AAD sent to the proxy ----------------------------------------------------


@pytest.mark.parametrize("vector", AAD_VECTORS, ids=lambda v: v["name"])
def test_aad_vector(vector: dict[str, Any]) -> None:
    context = parse_encryption_context(vector["encryption_context"])
    assert canonical_encryption_context(context).hex() == vector["canonical_encryption_context"]
    aad = proxy_aad(vector["key_arn"], vector["key_version_id"], context)
    assert aad.hex() == vector["aad"]


def test_aad_layout() -> None:
    aad = proxy_aad(ARN_A, VERSION_ID, {"a": "b"})
    assert aad == b"".join(
        [
            AAD_LABEL,
            b"\x01",
            len(ARN_A).to_bytes(2, "big") + ARN_A.encode(),
            len(VERSION_ID).to_bytes(2, "big") + VERSION_ID.encode(),
            b"\x00\x01\x00\x01a\x00\x01b",
        ]
    )


def test_aad_differs_between_kms_keys() -> None:
    context = {"purpose": "backup"}
    assert proxy_aad(ARN_A, VERSION_ID, context) != proxy_aad(ARN_B, VERSION_ID, context)
    same_external_key = [v for v in AAD_VECTORS if v["encryption_context"] == '{"a":"b,c"}']
    assert len(same_external_key) == 2
    assert same_external_key[0]["aad"] != same_external_key[1]["aad"]


def test_aad_differs_between_key_versions() -> None:
    first = proxy_aad(ARN_A, VERSION_ID, {})
    second = proxy_aad(ARN_A, "0b5e2c18-7a3d-4f61-8e92-c4d3b2a1f0e9", {})
    assert first != second


def test_aad_differs_for_each_context_change() -> None:
    base = {"purpose": "backup", "tenant": "a"}
    changed = [
        base,
        {},
        {"purpose": "backup"},
        {"purpose": "backup", "tenant": "a", "extra": ""},
        {"purpose": "backup", "tenant": "b"},
        {"purpose": "backup", "tenant": ""},
        {"purpose": "backup", "Tenant": "a"},
        {"purpose": "backup", "tenan": "ta"},
        {"purpose": "backup", "tenant": "a "},
        {"purpose": "backup,tenant=a"},
    ]
    aads = [proxy_aad(ARN_A, VERSION_ID, context) for context in changed]
    assert len(set(aads)) == len(changed)


def test_aad_ignores_context_order() -> None:
    first = proxy_aad(ARN_A, VERSION_ID, {"purpose": "backup", "tenant": "a"})
    second = proxy_aad(ARN_A, VERSION_ID, {"tenant": "a", "purpose": "backup"})
    assert first == second


def test_max_length_arn_accepted() -> None:
    assert len(MAX_LENGTH_ARN) == MAX_KEY_ARN_LENGTH
    aad = proxy_aad(MAX_LENGTH_ARN, MAX_LENGTH_VERSION_ID, {})
    assert len(aad) == 12 + 1 + 2 + 256 + 2 + 64 + 2


def test_ascii_context_of_7856_characters_fits() -> None:
    # The documented guarantee at its edge: a compact one-pair context gives a
    # canonical form one byte shorter than its JSON, and exactly 8,192 bytes of AAD.
    text = '{"a":"' + "x" * (7_856 - 8) + '"}'
    assert len(text) == 7_856
    aad = proxy_aad(MAX_LENGTH_ARN, MAX_LENGTH_VERSION_ID, parse_encryption_context(text))
    assert len(aad) == MAX_AAD_LENGTH


def test_many_small_pairs_fit() -> None:
    context = {f"{index:04x}": "" for index in range(600)}
    text = json.dumps(context, separators=(",", ":"))
    assert len(text) <= 7_856
    aad = proxy_aad(MAX_LENGTH_ARN, MAX_LENGTH_VERSION_ID, parse_encryption_context(text))
    assert len(aad) <= MAX_AAD_LENGTH


def padded_context_json(
    pairs: list[tuple[str, str]], filler: str, target: int, ensure_ascii: bool
) -> str:
    """Return the context's JSON text, its first value padded with ``filler`` to near ``target``.

    The text is at most ``target`` characters long unless the pairs alone are longer.
    """
    context = dict(pairs)
    text = json.dumps(context, ensure_ascii=ensure_ascii)
    filler_length = len(json.dumps(filler, ensure_ascii=ensure_ascii)) - 2
    first = next(iter(context))
    context[first] += filler * (max(target - len(text), 0) // filler_length)
    return json.dumps(context, ensure_ascii=ensure_ascii)


# Valid Unicode only: unpaired surrogates are rejected for their own reason.
unicode_characters = st.characters(exclude_categories=("Cs",))

near_limit_pairs = st.lists(
    st.tuples(st.text(max_size=20), st.text(max_size=20)),
    min_size=1,
    max_size=40,
    unique_by=lambda pair: pair[0],
)


@settings(max_examples=200, deadline=None)
@given(near_limit_pairs, unicode_characters, st.integers(0, 50))
def test_ascii_json_up_to_7856_characters_never_rejected(
    pairs: list[tuple[str, str]], filler: str, slack: int
) -> None:
    text = padded_context_json(pairs, filler, 7_856 - slack, ensure_ascii=True)
    if len(text) > 7_856:
        return  # the pairs alone were too long
    aad = proxy_aad(MAX_LENGTH_ARN, MAX_LENGTH_VERSION_ID, parse_encryption_context(text))
    assert len(aad) <= MAX_AAD_LENGTH


@settings(max_examples=200, deadline=None)
@given(near_limit_pairs, unicode_characters, st.integers(0, 8_000))
def test_aad_within_limit_or_rejected(
    pairs: list[tuple[str, str]], filler: str, slack: int
) -> None:
    text = padded_context_json(
        pairs, filler, MAX_ENCRYPTION_CONTEXT_LENGTH - slack, ensure_ascii=False
    )
    if len(text) > MAX_ENCRYPTION_CONTEXT_LENGTH:
        return  # the pairs alone were too long
    try:
        aad = proxy_aad(MAX_LENGTH_ARN, MAX_LENGTH_VERSION_ID, parse_encryption_context(text))
    except InvalidEncryptionContextError as exc:
        assert "too large" in exc.message
    else:
        assert len(aad) <= MAX_AAD_LENGTH


@pytest.mark.parametrize(
    "character",
    ["x", "é", "財", "\U0001f600"],
    ids=["ASCII", "2-byte UTF-8", "3-byte UTF-8", "4-byte UTF-8"],
)
def test_max_size_context_rejected(character: str) -> None:
    # Worst cases: an 8,192-character context takes up to 4 bytes per character.
    text = '{"":"' + character * (MAX_ENCRYPTION_CONTEXT_LENGTH - 7) + '"}'
    context = parse_encryption_context(text)
    with pytest.raises(InvalidEncryptionContextError) as caught:
        proxy_aad(ARN_A, VERSION_ID, context)
    assert caught.value.code == "InvalidParameter"
    assert caught.value.http_status == 400
    assert "too large" in caught.value.message
    assert str(len(canonical_encryption_context(context))) in caught.value.message


def test_aad_limit_exact_for_typical_arn() -> None:
    # A 66-character ARN and a UUID key version ID leave 8,073 bytes for the
    # context, so one byte more than that is rejected.
    header = len(proxy_aad(ARN_A, VERSION_ID, {})) - 2
    assert header == 119
    fits = {"a": "x" * (MAX_AAD_LENGTH - header - 2 - 4 - 1)}
    assert len(proxy_aad(ARN_A, VERSION_ID, fits)) == MAX_AAD_LENGTH
    too_large = {"a": "x" * (MAX_AAD_LENGTH - header - 2 - 4)}
    with pytest.raises(InvalidEncryptionContextError):
        proxy_aad(ARN_A, VERSION_ID, too_large)


@pytest.mark.parametrize(
    "arn",
    [
        "key-hzz65f1cb66fa42qo1234",
        "",
        ARN_A + "\n",
        ARN_A.replace("cn-hangzhou", "cn hangzhou"),
        ARN_A.replace("cn-hangzhou", "杭州"),
        ARN_A.replace(":key/", ":alias/"),
        ARN_A.replace("acs:kms", "acs:ram"),
        ARN_A + "/extra",
        "acs:kms:cn-hangzhou:1234567890123456:key/",
        "acs:kms:cn-hangzhou:1234567890123456:key/" + "k" * 129,
        MAX_LENGTH_ARN.replace("r" * 57, "r" * 58),
    ],
    ids=repr,
)
def test_aad_rejects_bad_arn(arn: str) -> None:
    with pytest.raises(ValueError, match="key"):
        proxy_aad(arn, VERSION_ID, {})


@pytest.mark.parametrize("version_id", ["", "v" * 65, "v/1", "vé"])
def test_aad_rejects_bad_version_id(version_id: str) -> None:
    with pytest.raises(ValueError, match="key_version_id"):
        proxy_aad(ARN_A, version_id, {})


# --- Module surface -------------------------------------------------------------


def test_exports_exist() -> None:
    for name in ciphertext.__all__:
        assert hasattr(ciphertext, name), name
    public: list[Callable[..., object]] = [
        canonical_encryption_context,
        decode_blob,
        decode_blob_base64,
        encode_blob,
        encode_blob_base64,
        parse_encryption_context,
        proxy_aad,
    ]
    for function in public:
        assert function.__doc__, function.__name__


def test_errors_are_invalid_parameter() -> None:
    for error_class in (InvalidCiphertextBlobError, InvalidEncryptionContextError):
        assert issubclass(error_class, RequestError)
        assert error_class.code == "InvalidParameter"
        assert error_class.http_status == 400
