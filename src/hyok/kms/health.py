"""Health checks of the XKI proxies of external key management instances.

One check calls the proxy's GetHealthStatus operation and ends in a
:class:`HealthOutcome`: the instance status it leads to, with an error reason
and a short detail when it failed. :func:`outcome_of_error` maps each failure
of the proxy client to its outcome:

================================================  ============  ===================
failure                                           status        error reason
================================================  ============  ===================
ProxyRejectedError AuthenticationFailedException  Error         CredentialsRejected
ProxyRejectedError InvalidUriPathException        Error         UriPathInvalid
any other ProxyRejectedError                      Error         ProxyFailure
ProxyUnreachableError                             Disconnected  ProxyUnreachable
ProxyTimeoutError                                 Error         TimedOut
ProxyTlsError                                     Error         TlsFailure
ProxyInvalidResponseError                         Error         InvalidResponse
a fleet with no ACTIVE or DEGRADED member         Error         ProxyFailure
settings the KMS cannot use (unmapped VPC
endpoint service, invalid binding)                Disconnected  ProxyUnreachable
================================================  ============  ===================

ConnectKmsInstance runs one check for its caller. :class:`InstanceHealthMonitor`
repeats the check for every monitored instance, so that a Connected instance
whose proxy fails stops serving cryptography, and one whose proxy recovers
serves again. Monitored are the configured instances that are Connected,
Connecting or Error, and those that a failed check made Disconnected (with an
error reason). Uninitialized instances wait for ConnectKmsInstance, and an
instance that DisconnectKmsInstance disconnected (without an error reason)
stays disconnected.

Several KMS nodes may share one database, so each round of the monitor runs
under the store's job lock :data:`HEALTH_JOB`, and only the node that takes
it checks. A check result is stored only when the instance still has the
status and proxy settings that the check started from.

Log lines name the instance, its status, the error reason and the detail.
They never contain a proxy secret: the details are the proxy client's
messages, which contain none.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

from hyok.common.errors import ConfigError
from hyok.kms.domain import MAX_ERROR_DETAIL_LENGTH, Instance, InstanceErrorReason, InstanceStatus
from hyok.kms.periodic import PeriodicTask, job_lock
from hyok.kms.proxies import InstanceNotConfiguredError
from hyok.kms.store import KmsStore, StoreError
from hyok.kms.xki_client import (
    ProxyError,
    ProxyInvalidResponseError,
    ProxyRejectedError,
    ProxyTimeoutError,
    ProxyTlsError,
    ProxyUnreachableError,
    RequestMetadata,
)

if TYPE_CHECKING:
    from hyok.kms.api.actions._services import Services

__all__ = [
    "DEFAULT_HEALTH_INTERVAL",
    "HEALTH_JOB",
    "HealthOutcome",
    "InstanceHealthMonitor",
    "check_proxy",
    "is_monitored",
    "log_transition",
    "outcome_of_error",
    "record_outcome",
]

logger = logging.getLogger("hyok.kms.health")

HEALTH_JOB: Final = "instance-health"
"""The name of the store job lock that one round of the monitor holds."""
DEFAULT_HEALTH_INTERVAL: Final = 30.0
"""Seconds between the starts of two rounds of the monitor."""
MONITOR_OPERATION: Final = "KmsHealthCheck"
"""The ``kmsOperation`` of the monitor's health requests."""
_MAX_CONCURRENT_CHECKS: Final = 16
_NOT_SERVING: Final = (
    "the proxy reports that no member of its key manager fleet is ACTIVE or DEGRADED"
)


@dataclass(frozen=True, slots=True)
class HealthOutcome:
    """The result of one health check: the instance status it leads to, and why."""

    status: InstanceStatus
    error_reason: InstanceErrorReason | None = None
    detail: str = ""

    @property
    def connected(self) -> bool:
        """Whether the check succeeded."""
        return self.status is InstanceStatus.CONNECTED


def _failed(status: InstanceStatus, reason: InstanceErrorReason, detail: str) -> HealthOutcome:
    return HealthOutcome(status, reason, detail[:MAX_ERROR_DETAIL_LENGTH])


def outcome_of_error(error: ProxyError) -> HealthOutcome:
    """Map a failed health call of the proxy client to its outcome (see the module's table)."""
    if isinstance(error, ProxyRejectedError):
        match error.error_name:
            case "AuthenticationFailedException":
                reason = InstanceErrorReason.CREDENTIALS_REJECTED
            case "InvalidUriPathException":
                reason = InstanceErrorReason.URI_PATH_INVALID
            case _:
                reason = InstanceErrorReason.PROXY_FAILURE
        return _failed(InstanceStatus.ERROR, reason, error.message)
    if isinstance(error, ProxyUnreachableError):
        return _failed(
            InstanceStatus.DISCONNECTED, InstanceErrorReason.PROXY_UNREACHABLE, error.message
        )
    if isinstance(error, ProxyTimeoutError):
        return _failed(InstanceStatus.ERROR, InstanceErrorReason.TIMED_OUT, error.message)
    if isinstance(error, ProxyTlsError):
        return _failed(InstanceStatus.ERROR, InstanceErrorReason.TLS_FAILURE, error.message)
    if isinstance(error, ProxyInvalidResponseError):
        return _failed(InstanceStatus.ERROR, InstanceErrorReason.INVALID_RESPONSE, error.message)
    return _failed(InstanceStatus.ERROR, InstanceErrorReason.PROXY_FAILURE, error.message)


async def check_proxy(
    services: Services,
    instance: Instance,
    *,
    request_id: str,
    operation: str,
    principal_arn: str | None = None,
) -> HealthOutcome:
    """Call the health operation of a configured instance's proxy and return the outcome.

    ``request_id``, ``operation`` and ``principal_arn`` become the request
    metadata that the proxy audits. Failures of the proxy are returned as
    outcomes, not raised.
    """
    try:
        client = services.proxies.client(instance)
    except InstanceNotConfiguredError as exc:
        return _failed(
            InstanceStatus.DISCONNECTED, InstanceErrorReason.PROXY_UNREACHABLE, exc.message
        )
    except ConfigError as exc:
        logger.error("the KMS cannot build a proxy client: %s", exc.message)
        return _failed(
            InstanceStatus.ERROR,
            InstanceErrorReason.TLS_FAILURE,
            f"the KMS cannot load the trusted certificates for XKI proxies: {exc.message}",
        )
    metadata = RequestMetadata(
        kms_request_id=request_id, kms_operation=operation, principal_arn=principal_arn
    )
    try:
        result = await client.health(metadata)
    except ProxyError as exc:
        return outcome_of_error(exc)
    if not result.serving:
        return _failed(InstanceStatus.ERROR, InstanceErrorReason.PROXY_FAILURE, _NOT_SERVING)
    return HealthOutcome(InstanceStatus.CONNECTED)


def record_outcome(
    store: KmsStore, checked: Instance, outcome: HealthOutcome, checked_at: datetime
) -> Instance | None:
    """Store the outcome of a check that started from ``checked``, in one transaction.

    Returns the changed instance, or None when the instance changed during
    the check, so the outcome is stale and was not stored. Blocking: run it
    in an executor.
    """
    with store.session() as session:
        return session.instances.update_status_if_unchanged(
            checked,
            outcome.status,
            error_reason=outcome.error_reason,
            error_detail=outcome.detail,
            checked_at=checked_at,
        )


def is_monitored(instance: Instance) -> bool:
    """Return whether the monitor checks the instance (see the module docstring)."""
    if not instance.configured:
        return False
    if instance.status is InstanceStatus.DISCONNECTED:
        return instance.error_reason is not None
    return instance.status in (
        InstanceStatus.CONNECTED,
        InstanceStatus.CONNECTING,
        InstanceStatus.ERROR,
    )


def log_transition(before: Instance, after: Instance) -> None:
    """Log a change of an instance's status or error reason: WARNING for a failure, else INFO."""
    if before.status is after.status and before.error_reason is after.error_reason:
        logger.debug("instance %s is still %s", after.instance_id, after.status)
        return
    if after.error_reason is None:
        logger.info(
            "instance %s changed from %s to %s", after.instance_id, before.status, after.status
        )
        return
    logger.warning(
        "instance %s changed from %s to %s (%s): %s",
        after.instance_id,
        before.status,
        after.status,
        after.error_reason,
        after.error_detail,
    )


class InstanceHealthMonitor(PeriodicTask):
    """Background health checks of the monitored instances' proxies, in rounds.

    :meth:`start` runs a first round at once and then one round every
    ``interval`` seconds until :meth:`stop`. A round is skipped on this node
    when another KMS node has the lock :data:`HEALTH_JOB` and runs it. The
    checks of one round run concurrently, at most 16 at a time, each bounded
    by the proxy call budget of the deployment's ``ProxyNetwork``. A check
    that fails unexpectedly is logged and does not stop the others.
    """

    job = "instance health monitor"
    logger = logger

    def __init__(self, services: Services, interval: float = DEFAULT_HEALTH_INTERVAL) -> None:
        super().__init__(services, interval)
        self._limit = asyncio.Semaphore(_MAX_CONCURRENT_CHECKS)

    async def run_once(self) -> int | None:
        """Run one round now: check every monitored instance, under the job lock.

        Returns the number of instances checked, or None when another node
        holds the lock and runs the round.
        """
        services = self.services
        async with job_lock(services, HEALTH_JOB) as acquired:
            if not acquired:
                logger.debug("instance health round skipped: another KMS node runs it")
                return None
            instances = await services.run(_load_monitored, services.store)
            await asyncio.gather(*(self._check_limited(instance) for instance in instances))
            return len(instances)

    async def check_now(self, instance_id: str) -> Instance | None:
        """Check one instance now, outside the rounds and without the job lock.

        Returns the instance after the check, unchanged when it is not
        monitored or changed during the check, or None when it does not exist.
        """
        instance = await self.services.run(_load_instance, self.services.store, instance_id)
        if instance is None or not is_monitored(instance):
            return instance
        return await self._check(instance)

    async def _check_limited(self, instance: Instance) -> None:
        async with self._limit:
            try:
                await self._check(instance)
            except StoreError as exc:
                logger.warning(
                    "the health check of instance %s was not stored: %s",
                    instance.instance_id,
                    exc.message,
                )
            except Exception:
                logger.exception("the health check of instance %s failed", instance.instance_id)

    async def _check(self, instance: Instance) -> Instance:
        services = self.services
        outcome = await check_proxy(
            services,
            instance,
            request_id=str(uuid.uuid4()).upper(),
            operation=MONITOR_OPERATION,
        )
        recorded = await services.run(
            record_outcome, services.store, instance, outcome, services.clock()
        )
        if recorded is None:
            logger.info(
                "the health check of instance %s was dropped: the instance changed during it",
                instance.instance_id,
            )
            current = await services.run(_load_instance, services.store, instance.instance_id)
            return current if current is not None else instance
        services.keys.forget_instance(instance.instance_id)
        log_transition(instance, recorded)
        return recorded


def _load_monitored(store: KmsStore) -> list[Instance]:
    statuses = (
        InstanceStatus.CONNECTED,
        InstanceStatus.CONNECTING,
        InstanceStatus.ERROR,
        InstanceStatus.DISCONNECTED,
    )
    with store.session(read_only=True) as session:
        candidates = session.instances.list_by_status(statuses)
    return [instance for instance in candidates if is_monitored(instance)]


def _load_instance(store: KmsStore, instance_id: str) -> Instance | None:
    with store.session(read_only=True) as session:
        return session.instances.get(instance_id)
