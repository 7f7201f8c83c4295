"""A component's metrics: one prometheus-client registry per controller or agent.

    metrics = Metrics("controller")
    requests = metrics.counter("api_requests", "API calls answered", ["method", "code"])
    metrics.add(MyCollector())           # read current state at scrape time
    body = metrics.exposition()          # what /metrics serves

Names follow Prometheus conventions: every name starts `l2vpc_`, units are in the name
(`_seconds`, `_bytes`), counters end `_total` (prometheus-client adds it), and labels take
bounded values only (method names, status codes, host and object names, reason codes: never a
request id, a token or a free-text message).

Extension point: code outside the controller and agent modules (the overlay probes, say)
registers a hook with `on_metrics(component, hook)`; every Metrics of that component created
afterwards calls `hook(metrics)`, which adds its gauges or collectors. A component can also
hand its Metrics to a part it starts (`agent_metrics.metrics.add(...)`).

Scrapes are cheap for the callers: state that already exists (hosts, heartbeats, generations)
is read by collectors when scraped instead of being copied into gauges on every change.
Families with a series per host (a thousand hosts: ~9,000 lines) are written as text by
`add_text` providers instead: prometheus_client formats ~8 µs per sample (75 ms for those),
an f-string ~0.3 µs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

PREFIX = "l2vpc_"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# `*_created` series double a counter's output and tell a scraper nothing it needs here.
disable_created_metrics()

_hooks: dict[str, list[Callable[[Metrics], None]]] = {}
_hooks_lock = threading.Lock()


def on_metrics(component: str, hook: Callable[[Metrics], None]) -> None:
    """Call `hook(metrics)` for every Metrics of `component` ("controller" | "agent") created
    from now on (see the module docstring)."""
    with _hooks_lock:
        _hooks.setdefault(component, []).append(hook)


class Metrics:
    """One registry and the metrics of one component; thread-safe as prometheus-client is."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.registry = CollectorRegistry(auto_describe=True)
        self._text: list[Callable[[], str]] = []
        with _hooks_lock:
            hooks = list(_hooks.get(component, ()))
        for hook in hooks:
            hook(self)

    @staticmethod
    def name(name: str) -> str:
        return name if name.startswith(PREFIX) else PREFIX + name

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(self.name(name), doc, list(labels), registry=self.registry)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(self.name(name), doc, list(labels), registry=self.registry)

    def histogram(self, name: str, doc: str, labels: Sequence[str] = (),
                  buckets: Iterable[float] = Histogram.DEFAULT_BUCKETS) -> Histogram:
        return Histogram(self.name(name), doc, list(labels), registry=self.registry, buckets=tuple(buckets))

    def add(self, collector: Collector) -> None:
        """A collector whose collect() yields metric families read at scrape time."""
        self.registry.register(collector)

    def add_text(self, provider: Callable[[], str]) -> None:
        """A provider of whole families in the text format (`text_family`), for large ones;
        called after the registry's collectors at every scrape."""
        self._text.append(provider)

    def exposition(self) -> bytes:
        body = generate_latest(self.registry)
        return body + "".join(p() for p in self._text).encode() if self._text else body


def escape(value: str) -> str:
    """A label value for the text format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def text_family(name: str, kind: str, doc: str, lines: Iterable[str]) -> str:
    """A family in the text format: HELP, TYPE, then `lines` (each `name{labels} value`)."""
    body = "\n".join(lines)
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n" + (body + "\n" if body else "")


def label_value(value: Any, limit: int = 63) -> str:
    """A label value from a name we did not choose (host, VPC): bounded in length."""
    text = str(value)
    return text if len(text) <= limit else text[:limit]
