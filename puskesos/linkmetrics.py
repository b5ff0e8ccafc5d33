"""Prometheus counters of an :class:`~puskesos.mqtt.MqttLink`: its connects and its lost
connections, for the hub's and the box's ``/metrics`` alike.

A "connected" gauge alone misses flapping: a link kicked off by the broker (another client
holding its client id) is back within seconds and reads 1 at nearly every scrape, so only a
counter that keeps rising shows it. The names are the owner's (``puskesos_hub_broker_...``,
``puskesos_edge_sync_...``, listed in ``monitoring/METRICS.md``); the values are read from
the link at scrape time, so the link needs no knowledge of Prometheus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from puskesos.mqtt import MqttLink

__all__ = ["LinkCounters"]


class LinkCounters(Collector):
    """``{prefix}_connects_total`` and ``{prefix}_disconnects_total`` of the link that
    :meth:`watch` names (both 0 until there is one)."""

    def __init__(self, prefix: str, owner: str) -> None:
        self._prefix = prefix
        self._owner = owner
        self._link: Callable[[], MqttLink | None] = lambda: None

    def watch(self, link: Callable[[], MqttLink | None]) -> None:
        """Read the counts from ``link()`` at every scrape (a function, as the owner may
        replace its link before starting it)."""
        self._link = link

    def collect(self) -> Iterator[Metric]:
        link = self._link()
        yield CounterMetricFamily(
            f"{self._prefix}_connects",
            f"Connections {self._owner} made to the broker (each reconnect counts)",
            value=link.connects if link is not None else 0,
        )
        yield CounterMetricFamily(
            f"{self._prefix}_disconnects",
            f"Connections of {self._owner} to the broker that were lost or kicked off "
            "(a clean stop does not count)",
            value=link.disconnects if link is not None else 0,
        )
