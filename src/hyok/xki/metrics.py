"""Prometheus metrics of the proxy.

With several worker processes, the server sets PROMETHEUS_MULTIPROC_DIR
before the workers start and ``/metrics`` merges every worker's samples.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "ProxyMetrics"]

_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class _Gauges(Collector):
    """Gauges computed at scrape time from the current credentials and certificate."""

    def __init__(
        self,
        credential_ages: Callable[[], Iterable[tuple[str, str, float]]],
        certificate_days: Callable[[], float | None],
    ) -> None:
        self._credential_ages = credential_ages
        self._certificate_days = certificate_days

    def collect(self) -> Iterable[GaugeMetricFamily]:
        ages = GaugeMetricFamily(
            "hyok_xki_credential_age_seconds",
            "Age of each live SigV4 credential",
            labels=["keystore", "access_key_id"],
        )
        for store, access_key_id, age in self._credential_ages():
            ages.add_metric([store, access_key_id], age)
        yield ages
        days = self._certificate_days()
        if days is not None:
            yield GaugeMetricFamily(
                "hyok_xki_tls_certificate_days_to_expiry",
                "Days until the server TLS certificate expires",
                value=days,
            )


class ProxyMetrics:
    """Request counters and latency histograms by key store, operation and outcome."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "hyok_xki_requests",
            "XKS requests by key store, operation and outcome (error name or ok)",
            ["keystore", "operation", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "hyok_xki_request_duration_seconds",
            "XKS request latency inside the proxy",
            ["keystore", "operation", "outcome"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self._gauges: _Gauges | None = None

    def observe(self, keystore: str, operation: str, outcome: str, seconds: float) -> None:
        labels = (keystore, operation, outcome)
        children = self._children.get(labels)
        if children is None:
            children = (self._requests.labels(*labels), self._latency.labels(*labels))
            self._children[labels] = children
        children[0].inc()
        children[1].observe(seconds)

    def set_gauges(
        self,
        credential_ages: Callable[[], Iterable[tuple[str, str, float]]],
        certificate_days: Callable[[], float | None],
    ) -> None:
        self._gauges = _Gauges(credential_ages, certificate_days)

    def render(self) -> bytes:
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = self.registry
        output = generate_latest(registry)
        if self._gauges is not None:
            gauges = CollectorRegistry()
            gauges.register(self._gauges)
            output += generate_latest(gauges)
        return output
