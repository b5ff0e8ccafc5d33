"""Reading a ``/metrics`` page the way Prometheus does, for tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str, **labels: str) -> list[float]:
    """The values of the samples called ``name`` whose labels include ``labels``."""
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample called ``name`` with ``labels``; ``None`` when absent."""
    found = samples(text, name, **labels)
    assert len(found) <= 1, f"{name} {labels} matches {len(found)} samples"
    return found[0] if found else None
