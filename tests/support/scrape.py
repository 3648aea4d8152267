"""Reading a daemon's ``/metrics`` text in tests: every sample keyed by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed ``(name, sorted labels)``."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` or 0.0 when absent."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
