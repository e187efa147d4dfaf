"""hyok.kms.api.actions._access.guard: no KMS action runs or returns unauthorised."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hyok.kms.api.actions._access import guard
from hyok.kms.api.app import CallContext
from hyok.kms.api.errors import InternalFailureError
from hyok.kms.api.params import Params
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity

ACCOUNT = "1234567890123456"


def context(action: str) -> CallContext:
    return CallContext(
        request_id="R",
        account_id=ACCOUNT,
        access_key_id="AK",
        region="cn-hangzhou",
        source_ip="127.0.0.1",
        principal=RamIdentity(ACCOUNT, CallerKind.ROOT),
        action=action,
    )


def test_action_without_a_row_cannot_be_served() -> None:
    async def action(*_: Any) -> dict[str, Any]:
        return {}

    with pytest.raises(LookupError, match="no row in the authorisation table"):
        guard("MadeUpAction", action)


def test_action_that_returns_without_its_key_check_fails_closed() -> None:
    async def forgetful(*_: Any) -> dict[str, Any]:
        return {"Plaintext": "should never leave"}

    guarded = guard("Encrypt", forgetful)
    with pytest.raises(InternalFailureError, match="failed to authorise"):
        asyncio.run(guarded(None, context("Encrypt"), Params({})))  # type: ignore[arg-type]


def test_action_that_checked_its_key_returns() -> None:
    async def careful(_services: Any, ctx: CallContext, _params: Params) -> dict[str, Any]:
        ctx.authorized.append("kms:Encrypt")
        return {"KeyId": "k"}

    guarded = guard("Encrypt", careful)
    assert asyncio.run(guarded(None, context("Encrypt"), Params({}))) == {"KeyId": "k"}  # type: ignore[arg-type]
