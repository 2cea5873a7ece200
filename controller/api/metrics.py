"""Prometheus metrics: request latency histograms plus Raft and store gauges read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from controller.services.runtime import Runtime

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _StoreCollector(Collector):
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def collect(self) -> Iterator[GaugeMetricFamily]:
        st = self._rt.store.status()
        role = GaugeMetricFamily("thecloud_raft_role", "1 for the role this controller has", labels=["role"])
        for name in ("leader", "follower", "candidate"):
            role.add_metric([name], 1.0 if st.role == name else 0.0)
        yield role
        yield GaugeMetricFamily("thecloud_raft_term", "Current Raft term", value=st.term)
        yield GaugeMetricFamily("thecloud_raft_commit_index", "Raft commit index", value=st.commit_index)
        yield GaugeMetricFamily("thecloud_raft_applied_index", "Last applied Raft index", value=st.applied_index)
        yield GaugeMetricFamily("thecloud_raft_members", "Raft cluster members", value=len(st.members))
        sizes = GaugeMetricFamily("thecloud_store_objects", "Objects in the replicated state", labels=["kind"])
        with self._rt.view() as data:
            counts = data.sizes()
            revision = data.revision
        for kind, count in counts.items():
            sizes.add_metric([kind], float(count))
        yield sizes
        yield GaugeMetricFamily("thecloud_store_revision", "Commands applied to the state", value=revision)


class Metrics:
    def __init__(self, rt: Runtime) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("thecloud_api_request_seconds", "API request latency",
                                 ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_StoreCollector(rt))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route, str(status)).observe(seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
