"""Aliases through the official SDK: the actions, the name rules, resolution, deletion, access.

Each test runs on SQLite and on PostgreSQL (``kms_stack``). The sweeper runs
in the test process with a clock moved past the deletion date, as
test_kms_lifecycle does.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alibabacloud_kms20160120 import models  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.exceptions import ClientException  # type: ignore[import-untyped]

from hyok.kms.api.actions.aliases import MAX_ALIASES_PER_ACCOUNT
from hyok.kms.domain.aliases import Alias
from hyok.kms.domain.key_policy import KeyPolicyRoles, build_role_policy
from hyok.kms.store import DuplicateRowError
from hyok.kms.store.tables import aliases as aliases_table
from hyok.kms.sweeper import KeyDeletionSweeper
from tests.integration._kms import (
    ACCOUNT_ID,
    OTHER_ACCOUNT_ID,
    REGION,
    KmsStack,
    kms_stack,
    postgres_server,
)
from tests.integration._ram import (
    attach_to_user,
    check_error,
    create_access_key,
    create_policy,
    create_user,
    kms,
    policy_document,
    unique,
)
from tests.integration._sdk import call, client_error, runtime

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration


def create_key(stack: KmsStack, policy: str | None = None) -> str:
    query = {"DKMSInstanceId": stack.instance_id, "ExternalKeyId": "app-1"}
    if policy is not None:
        query["Policy"] = policy
    return str(call(stack.sdk(), "CreateKey", query)["KeyMetadata"]["KeyId"])


def new_alias() -> str:
    return f"alias/test-{uuid.uuid4().hex[:12]}"


def alias_arn(name: str, account: str = ACCOUNT_ID, region: str = REGION) -> str:
    return f"acs:kms:{region}:{account}:{name}"


def create_alias(stack: KmsStack, name: str, key: str, client: Any = None) -> dict[str, Any]:
    return call(client or stack.sdk(), "CreateAlias", {"AliasName": name, "KeyId": key})


def error_of(stack: KmsStack, action: str, query: dict[str, str], client: Any = None) -> Any:
    return client_error(lambda: call(client or stack.sdk(), action, query))


def encrypt(stack: KmsStack, key: str, client: Any = None) -> dict[str, Any]:
    query = {"KeyId": key, "Plaintext": base64.b64encode(b"alias").decode()}
    return call(client or stack.sdk(), "Encrypt", query)


def aliases_of(stack: KmsStack, key: str) -> list[dict[str, str]]:
    body = call(stack.sdk(), "ListAliasesByKeyId", {"KeyId": key, "PageSize": "100"})
    rows: list[dict[str, str]] = body["Aliases"]["Alias"]
    return rows


def all_aliases(stack: KmsStack) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    number = 1
    while True:
        query = {"PageNumber": str(number), "PageSize": "100"}
        body = call(stack.sdk(), "ListAliases", query)
        for row in body["Aliases"]["Alias"]:
            found[row["AliasName"]] = row
        if number * 100 >= body["TotalCount"]:
            return found
        number += 1


def schedule(stack: KmsStack, key: str) -> None:
    call(stack.sdk(), "ScheduleKeyDeletion", {"KeyId": key, "PendingWindowInDays": "7"})


# --- The actions ---------------------------------------------------------------------------


def test_create_list_and_delete_with_typed_calls(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    name = new_alias()
    client = kms_stack.sdk()
    client.create_alias_with_options(
        models.CreateAliasRequest(alias_name=name, key_id=key), runtime()
    )

    listed = client.list_aliases_with_options(
        models.ListAliasesRequest(page_size=100), runtime()
    ).body
    assert listed.page_size == 100
    assert listed.total_count >= 1
    rows = {row.alias_name: row for row in listed.aliases.alias}
    assert rows[name].key_id == key
    assert rows[name].alias_arn == alias_arn(name)

    by_key = client.list_aliases_by_key_id_with_options(
        models.ListAliasesByKeyIdRequest(key_id=key), runtime()
    ).body
    assert [row.alias_name for row in by_key.aliases.alias] == [name]
    assert (by_key.page_number, by_key.page_size, by_key.total_count) == (1, 10, 1)

    client.delete_alias_with_options(models.DeleteAliasRequest(alias_name=name), runtime())
    assert aliases_of(kms_stack, key) == []
    error = error_of(kms_stack, "DescribeKey", {"KeyId": name})
    check_error(error, "Forbidden.AliasNotFound", 404, name, ACCOUNT_ID, "ListAliases")


def test_alias_arn_has_the_name_without_prefix(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    name = new_alias() + "/nested_part-1"
    create_alias(kms_stack, name, key)
    [row] = aliases_of(kms_stack, key)
    suffix = name.removeprefix("alias/")
    assert row == {
        "AliasName": name,
        "AliasArn": f"acs:kms:{REGION}:{ACCOUNT_ID}:alias/{suffix}",
        "KeyId": key,
    }


def test_list_aliases_by_key_pages(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    names = [new_alias() for _ in range(3)]
    for name in names:
        create_alias(kms_stack, name, key)
    first = call(kms_stack.sdk(), "ListAliasesByKeyId", {"KeyId": key, "PageSize": "2"})
    second = call(
        kms_stack.sdk(), "ListAliasesByKeyId", {"KeyId": key, "PageSize": "2", "PageNumber": "2"}
    )
    assert first["TotalCount"] == second["TotalCount"] == 3
    assert len(first["Aliases"]["Alias"]) == 2
    assert len(second["Aliases"]["Alias"]) == 1
    listed = [row["AliasName"] for row in first["Aliases"]["Alias"] + second["Aliases"]["Alias"]]
    assert sorted(listed) == sorted(names)


@pytest.mark.parametrize("size", ["0", "101", "ten"])
def test_page_size_is_checked(kms_stack: KmsStack, size: str) -> None:
    error = error_of(kms_stack, "ListAliases", {"PageSize": size})
    check_error(error, "InvalidParameter", 400, "PageSize")


def test_update_alias_changes_the_key_encrypt_uses(kms_stack: KmsStack) -> None:
    first, second = create_key(kms_stack), create_key(kms_stack)
    name = new_alias()
    create_alias(kms_stack, name, first)
    old_blob = encrypt(kms_stack, name)
    assert old_blob["KeyId"] == first

    call(kms_stack.sdk(), "UpdateAlias", {"AliasName": name, "KeyId": second})
    assert encrypt(kms_stack, name)["KeyId"] == second
    assert encrypt(kms_stack, alias_arn(name))["KeyId"] == second
    assert aliases_of(kms_stack, first) == []
    assert [row["AliasName"] for row in aliases_of(kms_stack, second)] == [name]
    # Ciphertext names its key, so an old blob still decrypts under the first key.
    decrypted = call(kms_stack.sdk(), "Decrypt", {"CiphertextBlob": old_blob["CiphertextBlob"]})
    assert decrypted["KeyId"] == first


def test_alias_already_exists(kms_stack: KmsStack) -> None:
    key, other = create_key(kms_stack), create_key(kms_stack)
    name = new_alias()
    create_alias(kms_stack, name, key)
    error = client_error(lambda: create_alias(kms_stack, name, other))
    check_error(error, "AliasAlreadyExists", 400, name, "UpdateAlias")
    assert [row["KeyId"] for row in aliases_of(kms_stack, key)] == [key]


def test_unknown_alias_in_update_and_delete(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    name = new_alias()
    for action, query in (
        ("UpdateAlias", {"AliasName": name, "KeyId": key}),
        ("DeleteAlias", {"AliasName": name}),
    ):
        check_error(error_of(kms_stack, action, query), "Forbidden.AliasNotFound", 404, name)


def test_unknown_key_in_create_alias(kms_stack: KmsStack) -> None:
    query = {"AliasName": new_alias(), "KeyId": "key-hzz00000000000000000000"}
    check_error(error_of(kms_stack, "CreateAlias", query), "Forbidden.KeyNotFound", 404)


def test_missing_parameters(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    for action, query in (
        ("CreateAlias", {"KeyId": key}),
        ("CreateAlias", {"AliasName": new_alias()}),
        ("UpdateAlias", {"AliasName": new_alias()}),
        ("DeleteAlias", {}),
        ("ListAliasesByKeyId", {}),
    ):
        assert error_of(kms_stack, action, query).code == "MissingParameter", (action, query)


# --- Name rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("payments", "starts with 'alias/'"),
        ("Alias/payments", "starts with 'alias/'"),
        ("alias/", "1 or more letters"),
        ("alias/bad name", "'_', '-' and '/'"),
        ("alias/bad.name", "'_', '-' and '/'"),
        ("alias/caf\u00e9", "'_', '-' and '/'"),
        ("alias/acs", "reserved"),
        ("alias/acs-payments", "reserved"),
        ("alias/ACSpayments", "reserved"),
        ("alias/" + "a" * 250, "maximum of 255"),
        ("", "empty"),
    ],
)
def test_bad_alias_names_are_rejected(kms_stack: KmsStack, name: str, fragment: str) -> None:
    key = create_key(kms_stack)
    error = client_error(lambda: create_alias(kms_stack, name, key))
    check_error(error, "InvalidParameter", 400, "AliasName", fragment)
    assert aliases_of(kms_stack, key) == []


def test_longest_name_and_every_allowed_character(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    longest = "alias/" + uuid.uuid4().hex + "x" * (255 - 6 - 32)
    assert len(longest) == 255
    varied = "alias/Az09_-/" + uuid.uuid4().hex
    for name in (longest, varied, "alias/acx" + uuid.uuid4().hex):
        create_alias(kms_stack, name, key)
        assert call(kms_stack.sdk(), "DescribeKey", {"KeyId": name})["KeyMetadata"]["KeyId"] == key


# --- Resolution wherever a KeyId is accepted --------------------------------------------------


def test_alias_and_alias_arn_name_the_key(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    name = new_alias()
    create_alias(kms_stack, name, key)
    for reference in (name, alias_arn(name)):
        metadata = call(kms_stack.sdk(), "DescribeKey", {"KeyId": reference})["KeyMetadata"]
        assert metadata["KeyId"] == key
        assert metadata["Arn"].endswith(f":key/{key}")
        encrypted = encrypt(kms_stack, reference)
        assert encrypted["KeyId"] == key
        decrypted = call(
            kms_stack.sdk(), "Decrypt", {"CiphertextBlob": encrypted["CiphertextBlob"]}
        )
        assert decrypted["KeyId"] == key
        assert base64.b64decode(decrypted["Plaintext"]) == b"alias"
        data_key = call(kms_stack.sdk(), "GenerateDataKey", {"KeyId": reference})
        assert data_key["KeyId"] == key
    # ListAliasesByKeyId takes an alias too.
    assert [row["AliasName"] for row in aliases_of(kms_stack, name)] == [name]


def test_unknown_alias_arn_is_not_found(kms_stack: KmsStack) -> None:
    name = new_alias()
    error = client_error(lambda: encrypt(kms_stack, alias_arn(name)))
    check_error(error, "Forbidden.AliasNotFound", 404, name)


def test_alias_arn_of_another_region_is_refused(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    name = new_alias()
    create_alias(kms_stack, name, key)
    error = client_error(lambda: encrypt(kms_stack, alias_arn(name, region="cn-shanghai")))
    check_error(error, "UnsupportedOperation", 400, "Cross-region")


def test_malformed_alias_references(kms_stack: KmsStack) -> None:
    for reference in ("alias/bad name", f"acs:kms:{REGION}:12:alias/x"):
        error = client_error(lambda: encrypt(kms_stack, reference))  # noqa: B023
        check_error(error, "InvalidParameter", 400, "KeyId")


def test_aliases_do_not_cross_accounts(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    name = new_alias()
    create_alias(kms_stack, name, key)
    other_root = kms_stack.sdk(other_account=True)
    # By name, the alias is looked up in the caller's own account.
    error = client_error(lambda: encrypt(kms_stack, name, other_root))
    check_error(error, "Forbidden.AliasNotFound", 404, OTHER_ACCOUNT_ID)
    # By ARN, another account's alias is refused like a key the caller may not use.
    error = client_error(lambda: encrypt(kms_stack, alias_arn(name), other_root))
    check_error(error, "Forbidden.NoPermission", 403, ACCOUNT_ID, "key policy")
    missing = client_error(lambda: encrypt(kms_stack, alias_arn(new_alias()), other_root))
    assert missing.code == "Forbidden.NoPermission"
    # An alias never points to a key of another account.
    arn = call(kms_stack.sdk(), "DescribeKey", {"KeyId": key})["KeyMetadata"]["Arn"]
    error = client_error(lambda: create_alias(kms_stack, new_alias(), arn, other_root))
    check_error(error, "InvalidParameter", 400, "KeyId", ACCOUNT_ID)


# --- Key states -------------------------------------------------------------------------------


def test_state_matrix(kms_stack: KmsStack) -> None:
    disabled, pending, enabled = create_key(kms_stack), create_key(kms_stack), create_key(kms_stack)
    call(kms_stack.sdk(), "DisableKey", {"KeyId": disabled})
    on_disabled, on_pending = new_alias(), new_alias()
    create_alias(kms_stack, on_disabled, disabled)
    create_alias(kms_stack, on_pending, pending)
    schedule(kms_stack, pending)

    error = client_error(lambda: create_alias(kms_stack, new_alias(), pending))
    check_error(error, "Rejected.StateModifiedFailed", 409, pending, "CancelKeyDeletion")
    error = error_of(kms_stack, "UpdateAlias", {"AliasName": on_disabled, "KeyId": pending})
    check_error(error, "Rejected.StateModifiedFailed", 409, pending)
    assert [row["KeyId"] for row in aliases_of(kms_stack, on_disabled)] == [disabled]

    # Listing works in every state, and so does moving an alias away from a pending key.
    assert [row["AliasName"] for row in aliases_of(kms_stack, pending)] == [on_pending]
    assert on_pending in all_aliases(kms_stack)
    call(kms_stack.sdk(), "UpdateAlias", {"AliasName": on_pending, "KeyId": enabled})
    call(kms_stack.sdk(), "UpdateAlias", {"AliasName": on_disabled, "KeyId": enabled})

    # DeleteAlias works on an alias of a pending key.
    last = new_alias()
    create_alias(kms_stack, last, enabled)
    schedule(kms_stack, enabled)
    call(kms_stack.sdk(), "DeleteAlias", {"AliasName": last})
    assert last not in all_aliases(kms_stack)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_deleting_a_key_deletes_its_aliases(kms_stack: KmsStack) -> None:
    key, kept = create_key(kms_stack), create_key(kms_stack)
    names = [new_alias(), new_alias()]
    for name in names:
        create_alias(kms_stack, name, key)
    kept_name = new_alias()
    create_alias(kms_stack, kept_name, kept)
    schedule(kms_stack, key)

    later = datetime.now(UTC) + timedelta(days=8)
    sweeper = KeyDeletionSweeper(dataclasses.replace(kms_stack.services, clock=lambda: later))
    assert (await sweeper.run_once() or 0) >= 1

    listed = all_aliases(kms_stack)
    assert not set(names) & set(listed)
    assert listed[kept_name]["KeyId"] == kept
    error = client_error(lambda: encrypt(kms_stack, names[0]))
    check_error(error, "Forbidden.AliasNotFound", 404, names[0])
    # The name is free again.
    create_alias(kms_stack, names[0], kept)
    assert encrypt(kms_stack, names[0])["KeyId"] == kept


# --- Limits and concurrency ---------------------------------------------------------------------


def test_alias_limit_per_account(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    prefix = f"alias/fill-{uuid.uuid4().hex[:8]}-"
    with kms_stack.store.session() as session:
        missing = MAX_ALIASES_PER_ACCOUNT - session.aliases.count(ACCOUNT_ID, REGION)
        now = datetime.now(UTC)
        for index in range(missing):
            session.aliases.create(
                Alias(
                    alias_name=f"{prefix}{index}",
                    account_id=ACCOUNT_ID,
                    region=REGION,
                    key_id=key,
                    created_at=now,
                    updated_at=now,
                )
            )
    try:
        error = client_error(lambda: create_alias(kms_stack, new_alias(), key))
        check_error(
            error, "Rejected.LimitExceeded", 400, str(MAX_ALIASES_PER_ACCOUNT), "DeleteAlias"
        )
        # The limit counts aliases, so moving one is still allowed.
        other = create_key(kms_stack)
        call(kms_stack.sdk(), "UpdateAlias", {"AliasName": f"{prefix}0", "KeyId": other})
    finally:
        with kms_stack.store.session() as session:
            session.connection.execute(
                aliases_table.delete().where(aliases_table.c.alias_name.startswith(prefix))
            )
    create_alias(kms_stack, new_alias(), key)


def run_together(count: int, work: Callable[[int], None]) -> list[BaseException | None]:
    """Run ``work(i)`` in ``count`` threads released at once; return each one's exception."""
    barrier = threading.Barrier(count)
    outcomes: list[BaseException | None] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            work(index)
        except BaseException as exc:  # every outcome is checked by the caller
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_concurrent_create_alias_one_wins(kms_stack: KmsStack) -> None:
    keys = [create_key(kms_stack) for _ in range(2)]
    name = new_alias()
    clients = [kms_stack.sdk() for _ in range(6)]

    outcomes = run_together(
        6, lambda index: create_alias(kms_stack, name, keys[index % 2], clients[index])
    )

    failures = [outcome for outcome in outcomes if outcome is not None]
    assert len(failures) == 5, outcomes
    for failure in failures:
        assert isinstance(failure, ClientException)
        assert failure.code == "AliasAlreadyExists", failure.data
    [row] = [row for row in all_aliases(kms_stack).values() if row["AliasName"] == name]
    assert row["KeyId"] in keys


def test_concurrent_store_inserts_hit_the_constraint(kms_stack: KmsStack) -> None:
    """Without the account lock of CreateAlias, the primary key alone keeps the name unique."""
    key = create_key(kms_stack)
    name = new_alias()
    now = datetime.now(UTC)

    def insert(index: int) -> None:
        alias = Alias(
            alias_name=name,
            account_id=ACCOUNT_ID,
            region=REGION,
            key_id=key,
            created_at=now,
            updated_at=now,
        )
        with kms_stack.store.session() as session:
            session.aliases.create(alias)

    outcomes = run_together(6, insert)
    failures = [outcome for outcome in outcomes if outcome is not None]
    assert len(failures) == 5, outcomes
    assert all(isinstance(failure, DuplicateRowError) for failure in failures), failures
    assert [row["AliasName"] for row in aliases_of(kms_stack, key)] == [name]


# --- Access ---------------------------------------------------------------------------------


def user(stack: KmsStack) -> tuple[str, Any]:
    name = unique("alias-user")
    create_user(stack, name)
    return name, kms(stack, *create_access_key(stack, name))


def grant(
    stack: KmsStack, user_name: str, action: str, resource: str, effect: str = "Allow"
) -> None:
    policy = unique("alias-policy")
    create_policy(stack, policy, policy_document(action, resource, effect))
    attach_to_user(stack, user_name, policy)


def used_only_by(name: str) -> str:
    """A key policy that lets the RAM user ``name`` use the key, but not manage it."""
    return build_role_policy(
        ACCOUNT_ID, KeyPolicyRoles(users=(f"acs:ram::{ACCOUNT_ID}:user/{name}",))
    )


def test_create_alias_needs_permission_on_alias_and_key(kms_stack: KmsStack) -> None:
    name, client = user(kms_stack)
    alias = new_alias()
    shared_key = create_key(kms_stack)  # the default policy: every identity of the account
    used_key = create_key(kms_stack, used_only_by(name))

    error = client_error(lambda: create_alias(kms_stack, alias, shared_key, client))
    check_error(error, "Forbidden.NoPermission", 403)
    detail = error.data["AccessDeniedDetail"]
    assert detail["AuthAction"] == "kms:CreateAlias"
    assert detail["AuthResource"] == alias_arn(alias)

    grant(kms_stack, name, "kms:CreateAlias", f"acs:kms:*:{ACCOUNT_ID}:alias/test-*")
    error = client_error(lambda: create_alias(kms_stack, alias, used_key, client))
    check_error(error, "Forbidden.NoPermission", 403)
    assert error.data["AccessDeniedDetail"]["AuthResource"].endswith(f":key/{used_key}")
    assert error.data["AccessDeniedDetail"]["AuthAction"] == "kms:CreateAlias"

    create_alias(kms_stack, alias, shared_key, client)
    assert [row["AliasName"] for row in aliases_of(kms_stack, shared_key)] == [alias]


def test_update_and_delete_alias_need_both_permissions(kms_stack: KmsStack) -> None:
    name, client = user(kms_stack)
    alias = new_alias()
    shared_key = create_key(kms_stack)
    used_key = create_key(kms_stack, used_only_by(name))
    create_alias(kms_stack, alias, used_key)

    # No permission on the alias: rejected before the KMS reports whether it exists.
    for action, query in (
        ("UpdateAlias", {"AliasName": alias, "KeyId": shared_key}),
        ("DeleteAlias", {"AliasName": alias}),
        ("DeleteAlias", {"AliasName": new_alias()}),
    ):
        error = error_of(kms_stack, action, query, client)
        assert error.code == "Forbidden.NoPermission", (action, error.data)
        assert ":alias/" in error.data["AccessDeniedDetail"]["AuthResource"]

    grant(kms_stack, name, "kms:*Alias", f"acs:kms:{REGION}:{ACCOUNT_ID}:alias/*")
    # The alias points to a key whose policy does not let this user manage it.
    error = error_of(kms_stack, "DeleteAlias", {"AliasName": alias}, client)
    check_error(error, "Forbidden.NoPermission", 403)
    assert error.data["AccessDeniedDetail"]["AuthResource"].endswith(f":key/{used_key}")
    # UpdateAlias is checked on the new key, which the default policy allows.
    call(client, "UpdateAlias", {"AliasName": alias, "KeyId": shared_key})
    error = error_of(kms_stack, "UpdateAlias", {"AliasName": alias, "KeyId": used_key}, client)
    assert error.data["AccessDeniedDetail"]["AuthResource"].endswith(f":key/{used_key}")
    call(client, "DeleteAlias", {"AliasName": alias})
    assert aliases_of(kms_stack, shared_key) == []


def test_using_an_alias_needs_permission_on_the_key_only(kms_stack: KmsStack) -> None:
    name, client = user(kms_stack)
    key = create_key(kms_stack, used_only_by(name))
    alias = new_alias()
    create_alias(kms_stack, alias, key)
    grant(kms_stack, name, "kms:*", f"acs:kms:*:{ACCOUNT_ID}:alias/*", effect="Deny")

    assert encrypt(kms_stack, alias, client)["KeyId"] == key
    assert encrypt(kms_stack, alias_arn(alias), client)["KeyId"] == key
    body = call(client, "ListAliasesByKeyId", {"KeyId": alias})
    assert [row["AliasName"] for row in body["Aliases"]["Alias"]] == [alias]
    # ListAliases is an account-wide action: the user has no identity policy for it.
    error = error_of(kms_stack, "ListAliases", {}, client)
    check_error(error, "Forbidden.NoPermission", 403)
    assert error.data["AccessDeniedDetail"]["AuthResource"] == f"acs:kms:{REGION}:{ACCOUNT_ID}:*"


def test_alias_names_reach_error_messages_escaped(kms_stack: KmsStack) -> None:
    """A hostile alias name comes back quoted and cut, never as raw control characters."""
    error = client_error(lambda: encrypt(kms_stack, "alias/\n" + "x" * 300))
    assert error.code == "InvalidParameter"
    assert "\n" not in error.data["Message"]
    assert "x" * 100 not in error.data["Message"]


# --- ListKeys filters on aliases and tags -------------------------------------------------------


def listed_keys(stack: KmsStack, *filters: tuple[str, list[str]]) -> set[str]:
    document = json.dumps([{"Key": key, "Values": values} for key, values in filters])
    body = call(stack.sdk(), "ListKeys", {"Filters": document, "PageSize": "100"})
    assert body["TotalCount"] == len(body["Keys"]["Key"])
    return {row["KeyId"] for row in body["Keys"]["Key"]}


def test_list_keys_filters_by_alias_and_tag(kms_stack: KmsStack) -> None:
    first, second, third = (create_key(kms_stack) for _ in range(3))
    one, two = new_alias(), new_alias()
    create_alias(kms_stack, one, first)
    create_alias(kms_stack, two, second)
    team = unique("team")
    for key, value in ((first, "payments"), (second, "billing"), (third, "payments")):
        tags = json.dumps([{"TagKey": team, "TagValue": value}])
        call(kms_stack.sdk(), "TagResource", {"KeyId": key, "Tags": tags})
    other = json.dumps([{"TagKey": "other-" + team, "TagValue": "billing"}])
    call(kms_stack.sdk(), "TagResource", {"KeyId": third, "Tags": other})

    assert listed_keys(kms_stack, ("AliasName", [one])) == {first}
    assert listed_keys(kms_stack, ("AliasName", [one, two])) == {first, second}
    assert listed_keys(kms_stack, ("AliasName", [new_alias()])) == set()
    assert listed_keys(kms_stack, ("TagKey", [team])) == {first, second, third}
    assert listed_keys(kms_stack, ("TagKey", [team]), ("TagValue", ["payments"])) == {
        first,
        third,
    }
    # One tag must match both: the third key has team=payments and other-team=billing.
    assert listed_keys(kms_stack, ("TagKey", [team]), ("TagValue", ["billing"])) == {second}
    assert listed_keys(
        kms_stack, ("AliasName", [one, two]), ("TagKey", [team]), ("TagValue", ["payments"])
    ) == {first}
    assert listed_keys(kms_stack, ("AliasName", [two]), ("KeyState", ["Disabled"])) == set()

    document = json.dumps([{"Key": "TagKey", "Values": ["k" * 129]}])
    error = error_of(kms_stack, "ListKeys", {"Filters": document})
    check_error(error, "InvalidParameter", 400, "Filters", "tag_keys")
