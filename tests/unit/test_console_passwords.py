"""Console passwords in the domain: the policy, scrypt PHC hashes and sign-in names."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from hyok.common.errors import ValidationError
from hyok.common.secrets import Secret
from hyok.kms.domain.login_profiles import (
    MAX_SIGN_IN_NAME_LENGTH,
    LoginProfile,
    SignInName,
    parse_sign_in_name,
)
from hyok.kms.domain.passwords import (
    DEFAULT_SCRYPT,
    MAX_PASSWORD_HASH_LENGTH,
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    PasswordPolicyError,
    ScryptParameters,
    check_password,
    dummy_password_hash,
    generate_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from tests.conftest import register_sensitive

CHEAP = ScryptParameters(log2_n=10, r=8, p=1)
PASSWORD = "correct-horse-42"
NOW = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)

register_sensitive(PASSWORD)


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("", "Length"),
        ("abc1234", "Length"),
        ("a1" * 64 + "x", "Length"),
        ("pässword123", "InvalidChars"),
        ("password\t123", "InvalidChars"),
        ("password\n123", "InvalidChars"),
        ("onlyletters", "Weak"),
        ("1234567890", "Weak"),
        ("!@#$%^&*()", "Weak"),
    ],
)
def test_policy_rejects_with_rule(password: str, rule: str) -> None:
    with pytest.raises(PasswordPolicyError) as raised:
        check_password(Secret(password))
    assert raised.value.rule == rule
    assert raised.value.http_status == 400
    if password:
        assert password not in str(raised.value)


@pytest.mark.parametrize(
    "password",
    [
        "abcdefg1",
        "a1" * (MAX_PASSWORD_LENGTH // 2),
        "correct horse battery staple 9",
        "Z9~!@#$%^&*()_+{}|:<>?",
    ],
)
def test_policy_accepts(password: str) -> None:
    check_password(Secret(password))


def test_policy_limits_are_documented_values() -> None:
    assert MIN_PASSWORD_LENGTH == 8
    assert MAX_PASSWORD_LENGTH == 128


def test_hash_is_phc_string_with_parameters() -> None:
    encoded = hash_password(Secret(PASSWORD), CHEAP)
    assert re.fullmatch(r"\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}", encoded)
    assert PASSWORD not in encoded
    assert len(encoded) <= MAX_PASSWORD_HASH_LENGTH


def test_hash_salt_differs_each_time() -> None:
    first = hash_password(Secret(PASSWORD), CHEAP)
    second = hash_password(Secret(PASSWORD), CHEAP)
    assert first != second
    assert verify_password(Secret(PASSWORD), first)
    assert verify_password(Secret(PASSWORD), second)


def test_verify_rejects_wrong_password() -> None:
    encoded = hash_password(Secret(PASSWORD), CHEAP)
    assert not verify_password(Secret(PASSWORD + "x"), encoded)
    assert not verify_password(Secret(PASSWORD.upper()), encoded)


def test_verify_uses_stored_parameters() -> None:
    stronger = ScryptParameters(log2_n=11, r=8, p=2)
    encoded = hash_password(Secret(PASSWORD), stronger)
    assert verify_password(Secret(PASSWORD), encoded)
    assert needs_rehash(encoded, CHEAP)
    assert not needs_rehash(encoded, stronger)


def test_verify_rejects_malformed_hash() -> None:
    encoded = hash_password(Secret(PASSWORD), CHEAP)
    for broken in (
        "",
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        encoded.replace("ln=10", "ln=99"),
        encoded[:-1],
        encoded.replace("$scrypt$", "$scrypt$$"),
    ):
        with pytest.raises(ValueError, match=r"hash|scrypt"):
            verify_password(Secret(PASSWORD), broken)


def test_scrypt_parameters_bounds() -> None:
    with pytest.raises(ValueError, match="invalid scrypt parameters"):
        ScryptParameters(log2_n=9, r=8, p=1)
    with pytest.raises(ValueError, match="invalid scrypt parameters"):
        ScryptParameters(log2_n=15, r=0, p=1)
    assert ScryptParameters(log2_n=15, r=8, p=1) == DEFAULT_SCRYPT


def test_default_parameters_hash_and_verify() -> None:
    encoded = hash_password(Secret(PASSWORD))
    assert encoded.startswith("$scrypt$ln=15,r=8,p=1$")
    assert verify_password(Secret(PASSWORD), encoded)


def test_dummy_hash_made_once_per_parameters() -> None:
    first = dummy_password_hash(CHEAP)
    assert dummy_password_hash(CHEAP) is first
    assert first.startswith("$scrypt$ln=10,r=8,p=1$")
    assert not verify_password(Secret(PASSWORD), first)


def test_generated_password_meets_policy() -> None:
    for _ in range(200):
        password = generate_password()
        check_password(password)
        assert len(password.reveal()) == 24
    assert "**" in repr(generate_password())


def test_generated_password_retries_until_policy_met() -> None:
    # The first 24 bytes give only letters (byte 0 is "a"), so a digit must come from a retry.
    calls: list[int] = []

    def random_bytes(count: int) -> bytes:
        calls.append(count)
        return bytes([0] * count) if len(calls) == 1 else bytes(range(52, 52 + count))

    password = generate_password(24, random_bytes)
    check_password(password)
    assert len(calls) == 2


# --- Sign-in names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123456789012", SignInName("123456789012")),
        ("1234567890123456", SignInName("1234567890123456")),
        ("alice@123456789012", SignInName("123456789012", "alice")),
        ("a.b_c-d@123456789012", SignInName("123456789012", "a.b_c-d")),
        ("x" * 64 + "@1234567890123456", SignInName("1234567890123456", "x" * 64)),
    ],
)
def test_sign_in_name_parses(text: str, expected: SignInName) -> None:
    parsed = parse_sign_in_name(text)
    assert parsed == expected
    assert str(parsed) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has 0 characters"),
        ("x" * (MAX_SIGN_IN_NAME_LENGTH + 1), "characters"),
        ("12345678901", "does not end with an account ID"),
        ("alice", "does not end with an account ID"),
        ("alice@", "does not end with an account ID"),
        ("alice@12345678901a", "does not end with an account ID"),
        ("@123456789012", "invalid user name"),
        ("al@ce@123456789012", "invalid user name"),
        ("al ice@123456789012", "invalid user name"),
        ("x" * 65 + "@123456789012", "invalid user name"),
        ("alice@123456789012.onaliyun.com", "does not end with an account ID"),
    ],
)
def test_sign_in_name_rejects(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_sign_in_name(text)


# --- Login profile records -------------------------------------------------------------


def test_login_profile_repr_hides_hash() -> None:
    encoded = hash_password(Secret(PASSWORD), CHEAP)
    profile = LoginProfile(
        account_id="123456789012",
        user_name="alice",
        password_hash=encoded,
        created_at=NOW,
        updated_at=NOW,
    )
    assert encoded not in repr(profile)
    assert profile.mfa_bind_required is False


def test_login_profile_rejects_mfa_and_bad_hash() -> None:
    fields = {"account_id": "123456789012", "user_name": "alice", "created_at": NOW}
    with pytest.raises(ValueError, match="no MFA"):
        LoginProfile(
            **fields,  # type: ignore[arg-type]
            password_hash=hash_password(Secret(PASSWORD), CHEAP),
            mfa_bind_required=True,
            updated_at=NOW,
        )
    with pytest.raises(ValueError, match="scrypt PHC"):
        LoginProfile(**fields, password_hash="plain", updated_at=NOW)  # type: ignore[arg-type]
