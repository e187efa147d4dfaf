"""Secondary authorization with Cedar policies: loading, decisions and the decision cache."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import cedarpy
import pytest

from hyok.common.errors import ConfigError
from hyok.xki import authz
from hyok.xki.authz import CEDAR_SCHEMA, CONTEXT_FIELDS, AuthzDecision, CedarAuthorizer

EXAMPLE_FILE = Path(__file__).resolve().parents[1] / "data" / "cedar" / "keystore-team-a.cedar"

APP_ROLE = "arn:aws:iam::111122223333:role/app-web"
ADMIN_ROLE = "arn:aws:iam::111122223333:role/KeyAdmin"
KMS_KEY_ARN = "arn:aws:kms:cn-hangzhou:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALLOW_ALL = "permit(principal, action, resource);"


def metadata(**fields: str) -> dict[str, str]:
    """Request metadata of an Encrypt call by APP_ROLE, with ``fields`` replacing or adding."""
    values = {
        "awsPrincipalArn": APP_ROLE,
        "kmsOperation": "Encrypt",
        "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
        "kmsKeyArn": KMS_KEY_ARN,
    }
    values.update(fields)
    return values


def decide(
    authorizer: CedarAuthorizer,
    *,
    operation: str = "Encrypt",
    key_id: str = "k1",
    key_store: str = "team-a",
    **fields: str,
) -> AuthzDecision:
    return authorizer.authorize(
        operation=operation, key_id=key_id, key_store=key_store, metadata=metadata(**fields)
    )


# Permits, forbids and default deny -------------------------------------------


def test_permit_by_principal_arn() -> None:
    authorizer = CedarAuthorizer.from_text(
        f'@id("admin") permit(principal == Xks::Principal::"{ADMIN_ROLE}", action, resource);'
    )

    allowed = decide(authorizer, awsPrincipalArn=ADMIN_ROLE)
    denied = decide(authorizer, awsPrincipalArn=APP_ROLE)

    assert allowed == AuthzDecision(True, ("admin",), "allowed by policy admin")
    assert not denied.allowed
    assert denied.reason == "no permit policy matched"


def test_permit_by_principal_pattern() -> None:
    authorizer = CedarAuthorizer.from_text(
        '@id("account") permit(principal, action, resource)'
        ' when { context.awsPrincipalArn like "arn:aws:iam::111122223333:*" };'
    )

    assert decide(authorizer).allowed
    assert not decide(authorizer, awsPrincipalArn="arn:aws:iam::444455556666:role/app-web").allowed


def test_permit_only_via_service() -> None:
    authorizer = CedarAuthorizer.from_text(
        '@id("ebs") permit(principal, action, resource) when { context.kmsViaService == "ebs" };'
    )

    via_ebs = decide(authorizer, kmsViaService="ebs")
    via_s3 = decide(authorizer, kmsViaService="s3")
    direct = decide(authorizer)

    assert via_ebs.allowed
    assert via_ebs.policy_ids == ("ebs",)
    assert not via_s3.allowed
    assert not direct.allowed
    assert direct.reason == "no permit policy matched"


def test_forbid_with_id_wins_over_permit() -> None:
    authorizer = CedarAuthorizer.from_text(
        """
        @id("everyone") permit(principal, action, resource);
        @id("no-decrypt-of-payroll")
        forbid(principal, action == Xks::Action::"Decrypt", resource == Xks::Key::"payroll");
        """
    )

    denied = decide(authorizer, operation="Decrypt", key_id="payroll")

    assert not denied.allowed
    assert denied.policy_ids == ("no-decrypt-of-payroll",)
    assert denied.reason == "denied by policy no-decrypt-of-payroll"
    assert denied.errors == ()
    assert decide(authorizer, operation="Decrypt", key_id="other").allowed
    assert decide(authorizer, operation="Encrypt", key_id="payroll").allowed


def test_several_forbids_reported_in_file_order() -> None:
    authorizer = CedarAuthorizer.from_text(
        """
        permit(principal, action, resource);
        @id("second") forbid(principal, action, resource) when { context.kmsViaService == "" };
        @id("first") forbid(principal, action, resource) when { context.awsSourceVpc == "" };
        """
    )

    denied = decide(authorizer)

    assert denied.policy_ids == ("second", "first")
    assert denied.reason == "denied by policies second, first"


def test_no_policy_matches_denies() -> None:
    authorizer = CedarAuthorizer.from_text(
        '@id("decrypt-only") permit(principal, action == Xks::Action::"Decrypt", resource);'
    )

    denied = decide(authorizer, operation="Encrypt")

    assert denied == AuthzDecision(False, (), "no permit policy matched")


def test_unannotated_policy_reports_positional_id() -> None:
    authorizer = CedarAuthorizer.from_text(
        """
        @id("named") permit(principal, action == Xks::Action::"Decrypt", resource);
        permit(principal, action == Xks::Action::"Encrypt", resource);
        """
    )

    assert authorizer.policy_ids == ("named", "policy1")
    assert decide(authorizer, operation="Encrypt").policy_ids == ("policy1",)


def test_all_permits_that_allow_are_reported() -> None:
    authorizer = CedarAuthorizer.from_text(
        """
        @id("a") permit(principal, action, resource);
        @id("b") permit(principal, action, resource) when { context.keyStore == "team-a" };
        """
    )

    assert decide(authorizer).policy_ids == ("a", "b")
    assert decide(authorizer).reason == "allowed by policies a, b"


# kmsOperation and absent metadata fields -------------------------------------


def test_unknown_kms_operation_evaluates() -> None:
    authorizer = CedarAuthorizer.from_text(
        '@id("everyone") permit(principal, action, resource);',
    )

    decision = decide(authorizer, kmsOperation="BulkEncrypt")

    assert decision.allowed
    assert decision.errors == ()


def test_unknown_kms_operation_denied_by_policy() -> None:
    authorizer = CedarAuthorizer.from_text(
        """
        @id("everyone") permit(principal, action, resource);
        @id("known-operations") forbid(principal, action, resource)
        unless { ["Encrypt", "GenerateDataKey"].contains(context.kmsOperation) };
        """
    )

    denied = decide(authorizer, kmsOperation="BulkEncrypt")

    assert not denied.allowed
    assert denied.policy_ids == ("known-operations",)
    assert denied.errors == ()
    assert decide(authorizer, kmsOperation="GenerateDataKey").allowed


def test_absent_field_is_empty_string() -> None:
    authorizer = CedarAuthorizer.from_text(
        """
        @id("outside-vpc") permit(principal, action, resource)
        when { context.awsSourceVpc == "" && context.awsSourceVpce == "" };
        """
    )
    without_vpc = metadata()
    assert "awsSourceVpc" not in without_vpc

    absent = authorizer.authorize(
        operation="Encrypt", key_id="k1", key_store="team-a", metadata=without_vpc
    )
    empty = decide(authorizer, awsSourceVpc="", awsSourceVpce="")
    present = decide(authorizer, awsSourceVpc="vpc-1", awsSourceVpce="vpce-1")

    assert absent.allowed
    assert absent.errors == ()
    assert empty == absent
    assert not present.allowed


def test_absent_field_fails_equality_in_forbid() -> None:
    # A forbid that demands a VPC must also catch requests made outside any
    # VPC endpoint, which carry no awsSourceVpc.
    authorizer = CedarAuthorizer.from_text(
        """
        permit(principal, action, resource);
        @id("from-vpc-only") forbid(principal, action, resource)
        unless { context.awsSourceVpc == "vpc-0123456789abcdef0" };
        """
    )

    no_vpc = decide(authorizer)
    right_vpc = decide(authorizer, awsSourceVpc="vpc-0123456789abcdef0")

    assert not no_vpc.allowed
    assert no_vpc.policy_ids == ("from-vpc-only",)
    assert no_vpc.errors == ()
    assert right_vpc.allowed


def test_absent_key_arn_for_metadata() -> None:
    authorizer = CedarAuthorizer.from_text(
        '@id("own-keys") permit(principal, action, resource)'
        ' when { context.kmsKeyArn like "arn:aws:kms:*:111122223333:key/*" };'
    )
    create_key = metadata(kmsOperation="CreateKey")
    del create_key["kmsKeyArn"]

    decision = authorizer.authorize(
        operation="GetKeyMetadata", key_id="k1", key_store="team-a", metadata=create_key
    )

    assert not decision.allowed
    assert decision.errors == ()


def test_unknown_metadata_fields_ignored() -> None:
    authorizer = CedarAuthorizer.from_text(ALLOW_ALL)

    decision = decide(authorizer, sourceIdentity="alice")

    assert decision.allowed
    assert decision.errors == ()


def test_missing_principal_denies() -> None:
    authorizer = CedarAuthorizer.from_text(ALLOW_ALL)

    decision = decide(authorizer, awsPrincipalArn="")

    assert not decision.allowed
    assert decision.reason == "denied because requestMetadata.awsPrincipalArn is missing"


def test_non_string_metadata_denies() -> None:
    authorizer = CedarAuthorizer.from_text(ALLOW_ALL)
    fields: dict[str, Any] = metadata()
    fields["kmsViaService"] = 5

    decision = authorizer.authorize(
        operation="Encrypt", key_id="k1", key_store="team-a", metadata=fields
    )

    assert not decision.allowed
    assert decision.reason == "denied because requestMetadata.kmsViaService is not a string"


def test_quotes_in_principal_not_interpreted() -> None:
    # The ARN is passed as an entity ID, never spliced into Cedar text, so a
    # quote cannot close the ID and add syntax.
    authorizer = CedarAuthorizer.from_text(
        f'permit(principal == Xks::Principal::"{ADMIN_ROLE}", action, resource);'
    )

    injected = f'x", action, resource) || (Xks::Principal::"{ADMIN_ROLE}'

    decision = decide(authorizer, awsPrincipalArn=injected)

    assert not decision.allowed
    assert decision.errors == ()


# Operations ------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["GetHealthStatus", "health", "encrypt", ""])
def test_other_operations_raise(operation: str) -> None:
    authorizer = CedarAuthorizer.from_text(ALLOW_ALL)

    with pytest.raises(ValueError, match="GetHealthStatus is never authorized"):
        decide(authorizer, operation=operation)


def test_action_scope_selects_operation() -> None:
    authorizer = CedarAuthorizer.from_text(
        '@id("crypto") permit(principal,'
        ' action in [Xks::Action::"Encrypt", Xks::Action::"Decrypt"], resource);'
    )

    assert decide(authorizer, operation="Encrypt").allowed
    assert decide(authorizer, operation="Decrypt").allowed
    assert not decide(authorizer, operation="GetKeyMetadata").allowed


# Key stores --------------------------------------------------------------------


def test_decisions_per_key_store() -> None:
    authorizer = CedarAuthorizer.from_text(
        """
        @id("team-a-keys") permit(principal, action, resource)
        when { context.keyStore == "team-a" };
        @id("team-b-payroll") forbid(principal, action, resource == Xks::Key::"payroll")
        when { context.keyStore == "team-b" };
        @id("team-b-any") permit(principal, action, resource) when { context.keyStore == "team-b" };
        """
    )

    team_a = decide(authorizer, key_store="team-a", key_id="payroll")
    team_b = decide(authorizer, key_store="team-b", key_id="payroll")
    team_b_other = decide(authorizer, key_store="team-b", key_id="k1")
    team_c = decide(authorizer, key_store="team-c", key_id="k1")

    assert team_a.allowed
    assert team_a.policy_ids == ("team-a-keys",)
    assert not team_b.allowed
    assert team_b.policy_ids == ("team-b-payroll",)
    assert team_b_other.policy_ids == ("team-b-any",)
    assert not team_c.allowed


def test_key_id_pattern_in_context() -> None:
    authorizer = CedarAuthorizer.from_text(
        '@id("prefix") permit(principal, action, resource)'
        ' when { context.externalKeyId like "team-a-*" };'
    )

    assert decide(authorizer, key_id="team-a-1").allowed
    assert not decide(authorizer, key_id="team-b-1").allowed


# Evaluation errors ----------------------------------------------------------


def test_evaluation_error_fails_closed() -> None:
    # Cedar skips a policy whose evaluation fails, so without hyok's rule this
    # failing forbid would let the permit allow the request.
    authorizer = CedarAuthorizer.from_text(
        """
        @id("everyone") permit(principal, action, resource);
        @id("overflowing") forbid(principal, action, resource)
        when { 9223372036854775807 + 1 > 0 };
        """
    )

    decision = decide(authorizer)

    assert not decision.allowed
    assert decision.policy_ids == ("overflowing",)
    assert decision.reason == "denied because evaluation of policy overflowing failed"
    assert len(decision.errors) == 1
    assert decision.errors[0].startswith("policy overflowing: integer overflow")


def test_error_in_permit_fails_closed() -> None:
    authorizer = CedarAuthorizer.from_text(
        """
        @id("everyone") permit(principal, action, resource);
        @id("overflowing") permit(principal, action, resource)
        when { context.kmsViaService == "ebs" && 9223372036854775807 + 1 > 0 };
        """
    )

    assert decide(authorizer).allowed
    assert not decide(authorizer, kmsViaService="ebs").allowed


def test_unencodable_value_fails_closed() -> None:
    # json.loads turns the escape "\ud800" into a lone surrogate, which has no
    # UTF-8 form.
    authorizer = CedarAuthorizer.from_text(ALLOW_ALL)

    in_principal = decide(authorizer, awsPrincipalArn="arn:\ud800")
    in_context = decide(authorizer, kmsViaService="ebs\ud800")

    assert not in_principal.allowed
    assert in_principal.errors
    assert not in_context.allowed
    assert in_context.errors


# Loading and validation -----------------------------------------------------


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    policy_file = tmp_path / "team-a.cedar"
    policy_file.write_text(
        '// header\n@id("ok")\npermit(principal, action, resource);\n\n'
        'forbid(principal, action, resource)\nwhen { context.kmsViaService = "ebs" };\n',
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as caught:
        CedarAuthorizer.from_file(policy_file)

    message = str(caught.value)
    assert str(policy_file) in message
    assert "starts at line 5" in message
    assert "'=' is not a valid operator" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("permit(principal, action, resource)", 1),
        (f'{ALLOW_ALL}\n// "quoted ;\nfrobid(principal, action, resource);', 3),
        ('permit(principal, action, resource) when { context.kmsOperation == "a;b" };\npermit(', 2),
        (f'{ALLOW_ALL}\npermit(principal, action, resource) when {{ "x }};', 2),
        (f"{ALLOW_ALL} {ALLOW_ALL}\n\n{ALLOW_ALL} permit(principal);", 3),
    ],
)
def test_syntax_error_line(text: str, line: int) -> None:
    with pytest.raises(ConfigError, match=f"starts at line {line}:"):
        CedarAuthorizer.from_text(text, source="inline")


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        CedarAuthorizer.from_file(tmp_path / "absent.cedar")


def test_non_utf8_file_raises(tmp_path: Path) -> None:
    policy_file = tmp_path / "latin1.cedar"
    policy_file.write_bytes(
        b'permit(principal, action, resource) when { context.keyStore == "\xe9" };'
    )

    with pytest.raises(ConfigError, match="not valid UTF-8"):
        CedarAuthorizer.from_file(policy_file)


def test_schema_mismatch_names_policy() -> None:
    text = (
        "permit(principal, action, resource);\n"
        '@id("typo")\n'
        'permit(principal, action, resource) when { context.kmsViaServce == "ebs" };\n'
    )

    with pytest.raises(ConfigError) as caught:
        CedarAuthorizer.from_text(text, source="team-a.cedar")

    message = str(caught.value)
    assert "team-a.cedar" in message
    assert "policy typo at line 2" in message
    assert "kmsViaServce" in message


@pytest.mark.parametrize(
    "text",
    [
        'permit(principal == User::"alice", action, resource);',
        'permit(principal, action == Xks::Action::"GetHealthStatus", resource);',
        'permit(principal, action, resource) when { principal.account == "1" };',
        "permit(principal, action, resource) when { context.kmsOperation == 1 };",
        "permit(principal, action, resource) when { context.kmsRequestId };",
    ],
)
def test_schema_rejects_policy(text: str) -> None:
    with pytest.raises(ConfigError, match="do not match the hyok entity model"):
        CedarAuthorizer.from_text(text)


def test_every_context_field_validates() -> None:
    condition = " && ".join(f'context.{field} == ""' for field in CONTEXT_FIELDS)

    authorizer = CedarAuthorizer.from_text(
        f"permit(principal, action, resource) when {{ {condition} }};"
    )

    assert authorizer.policy_ids == ("policy0",)


def test_request_matches_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    # hyok evaluates without the schema to save time per call, so check here
    # that the request it builds is one the schema accepts.
    captured: list[dict[str, Any]] = []
    original = cedarpy.is_authorized

    def capture(request: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        captured.append(request)
        return original(request, *args, **kwargs)

    monkeypatch.setattr(cedarpy, "is_authorized", capture)
    authorizer = CedarAuthorizer.from_text(ALLOW_ALL, cache_size=0)
    for operation in sorted(authz.AUTHORIZED_OPERATIONS):
        decide(authorizer, operation=operation)

    assert len(captured) == 3
    for request in captured:
        checked = original(request, ALLOW_ALL, "[]", schema=CEDAR_SCHEMA)
        assert checked.diagnostics.errors == []
        assert checked.allowed


def test_templates_rejected() -> None:
    with pytest.raises(ConfigError, match="templates"):
        CedarAuthorizer.from_text('@id("t") permit(principal == ?principal, action, resource);')


@pytest.mark.parametrize("text", ["", "// only a comment\n", "  \n"])
def test_empty_policy_set_rejected(text: str) -> None:
    with pytest.raises(ConfigError, match="contains no policies"):
        CedarAuthorizer.from_text(text)


def test_duplicate_id_rejected() -> None:
    text = (
        '@id("same") permit(principal, action, resource);\n'
        '@id("same") forbid(principal, action, resource);\n'
    )

    with pytest.raises(ConfigError) as caught:
        CedarAuthorizer.from_text(text)

    assert "'same' is used by more than one policy" in str(caught.value)
    assert "(at line 1 and at line 2)" in str(caught.value)


def test_id_clashing_with_positional_id_rejected() -> None:
    text = (
        "permit(principal, action, resource);\n"
        '@id("policy0") forbid(principal, action, resource);\n'
    )

    with pytest.raises(ConfigError, match="'policy0' is used by more than one policy"):
        CedarAuthorizer.from_text(text)


@pytest.mark.parametrize("annotation", ['@id("")', "@id"])
def test_empty_id_rejected(annotation: str) -> None:
    with pytest.raises(ConfigError, match="empty @id"):
        CedarAuthorizer.from_text(f"{annotation} permit(principal, action, resource);")


def test_negative_cache_size_raises() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        CedarAuthorizer.from_text(ALLOW_ALL, cache_size=-1)


# Example file ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "key_id", "fields", "allowed", "policy_ids"),
    [
        (
            "Decrypt",
            "payroll",
            {"awsPrincipalArn": ADMIN_ROLE, "kmsOperation": "Decrypt"},
            False,
            ("payroll-from-vpc",),
        ),
        (
            "Decrypt",
            "payroll",
            {
                "awsPrincipalArn": ADMIN_ROLE,
                "kmsOperation": "Decrypt",
                "awsSourceVpc": "vpc-0123456789abcdef0",
            },
            True,
            ("key-admin",),
        ),
        ("Encrypt", "k1", {"kmsViaService": "ebs"}, True, ("app-roles-via-ebs",)),
        ("Encrypt", "k1", {}, False, ()),
        (
            "Encrypt",
            "k1",
            {"kmsViaService": "ebs", "kmsOperation": "BulkEncrypt"},
            False,
            ("known-kms-operations",),
        ),
        (
            "Encrypt",
            "k1",
            {"kmsViaService": "ebs", "kmsKeyArn": "arn:aws:kms:cn-hangzhou:444455556666:key/x"},
            False,
            (),
        ),
        (
            "GetKeyMetadata",
            "k1",
            {"kmsOperation": "CreateKey", "kmsKeyArn": ""},
            True,
            ("metadata-in-account",),
        ),
        (
            "GetKeyMetadata",
            "k1",
            {"kmsOperation": "DescribeKey", "awsPrincipalArn": "arn:aws:iam::444455556666:user/x"},
            False,
            (),
        ),
    ],
)
def test_example_file_decisions(
    operation: str, key_id: str, fields: dict[str, str], allowed: bool, policy_ids: tuple[str, ...]
) -> None:
    authorizer = CedarAuthorizer.from_file(EXAMPLE_FILE)

    decision = decide(authorizer, operation=operation, key_id=key_id, **fields)

    assert decision.allowed is allowed
    assert decision.policy_ids == policy_ids
    assert decision.errors == ()


def test_example_file_ids() -> None:
    authorizer = CedarAuthorizer.from_file(EXAMPLE_FILE)

    assert authorizer.policy_ids == (
        "key-admin",
        "app-roles-via-ebs",
        "metadata-in-account",
        "known-kms-operations",
        "payroll-from-vpc",
    )
    assert authorizer.source == str(EXAMPLE_FILE)


# Decision cache -------------------------------------------------------------


def cache_size(authorizer: CedarAuthorizer) -> int:
    cache = authorizer._cache
    assert cache is not None
    return len(cache)


def test_cache_ignores_unread_fields() -> None:
    authorizer = CedarAuthorizer.from_text(
        'permit(principal, action, resource) when { context.kmsViaService == "ebs" };'
    )

    for number in range(5):
        assert decide(authorizer, kmsViaService="ebs", kmsRequestId=f"r-{number}").allowed

    assert cache_size(authorizer) == 1


def test_cache_keys_on_read_fields() -> None:
    # The escape spells kmsRequestId, so that field must be part of the key.
    authorizer = CedarAuthorizer.from_text(
        "permit(principal, action, resource);\n"
        '@id("blocked-request") forbid(principal, action, resource)'
        ' when { context["kms\\u{52}equestId"] == "blocked" };'
    )

    first = decide(authorizer, kmsRequestId="ok")
    blocked = decide(authorizer, kmsRequestId="blocked")
    again = decide(authorizer, kmsRequestId="ok")

    assert first.allowed
    assert not blocked.allowed
    assert blocked.policy_ids == ("blocked-request",)
    assert again.allowed
    assert cache_size(authorizer) == 2


def test_cache_size_bounded() -> None:
    authorizer = CedarAuthorizer.from_text(ALLOW_ALL, cache_size=3)

    for number in range(10):
        decide(authorizer, awsPrincipalArn=f"arn:aws:iam::111122223333:role/r{number}")

    assert cache_size(authorizer) == 3


def test_long_key_not_cached() -> None:
    authorizer = CedarAuthorizer.from_text(ALLOW_ALL)
    principal = "arn:aws:iam::111122223333:role/" + "r" * authz.MAX_CACHED_KEY_CHARS

    decision = decide(authorizer, awsPrincipalArn=principal)

    assert decision.allowed
    assert cache_size(authorizer) == 0


def test_cache_off() -> None:
    authorizer = CedarAuthorizer.from_text(ALLOW_ALL, cache_size=0)

    assert decide(authorizer).allowed
    assert authorizer._cache is None


def test_cached_decisions_match_uncached() -> None:
    cached = CedarAuthorizer.from_file(EXAMPLE_FILE, cache_size=8)
    uncached = CedarAuthorizer.from_file(EXAMPLE_FILE, cache_size=0)
    choices = list(
        itertools.product(
            ["GetKeyMetadata", "Encrypt", "Decrypt"],
            ["k1", "payroll"],
            ["team-a", "team-b"],
            [ADMIN_ROLE, APP_ROLE, "arn:aws:iam::444455556666:role/app-web", "AWS Internal"],
            ["Encrypt", "Decrypt", "DescribeKey", "BulkEncrypt"],
            ["", "ebs"],
            ["", "vpc-0123456789abcdef0"],
        )
    )

    # Two passes: the second one reads entries that the first one wrote.
    for _ in range(2):
        for operation, key_id, key_store, principal, kms_operation, via, vpc in choices:
            fields = {
                "awsPrincipalArn": principal,
                "kmsOperation": kms_operation,
                "kmsViaService": via,
                "awsSourceVpc": vpc,
            }
            expected = decide(
                uncached, operation=operation, key_id=key_id, key_store=key_store, **fields
            )
            actual = decide(
                cached, operation=operation, key_id=key_id, key_store=key_store, **fields
            )
            assert actual == expected, (operation, key_id, key_store, fields)


def test_shared_between_threads() -> None:
    authorizer = CedarAuthorizer.from_file(EXAMPLE_FILE, cache_size=16)
    failures: list[AuthzDecision] = []

    def run() -> None:
        for number in range(500):
            decision = decide(
                authorizer,
                awsPrincipalArn=f"arn:aws:iam::111122223333:role/app-{number % 40}",
                kmsRequestId=str(number),
                kmsViaService="ebs",
            )
            if not decision.allowed:
                failures.append(decision)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert cache_size(authorizer) == 16


def test_exported_names_exist() -> None:
    for name in authz.__all__:
        assert hasattr(authz, name), name
