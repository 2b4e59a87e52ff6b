"""`GET /metrics` read with Prometheus's own text parser, for tests that watch series move."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

# A series name in a PromQL expression: ours, and the process collector's.
SERIES_IN_QUERY = re.compile(r"\b(?:clusterplane|process|python)_[a-zA-Z0-9_]*[a-zA-Z0-9]\b")
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum", ""),
}


@dataclass
class Scrape:
    families: dict[str, Metric]

    def samples(self, name: str, **labels: str) -> list[Any]:
        """The samples called `name` whose labels include `labels`."""
        family = name
        for suffix in ("_total", "_bucket", "_count", "_sum"):
            if name.endswith(suffix) and name.removesuffix(suffix) in self.families:
                family = name.removesuffix(suffix)
        if family not in self.families:
            raise AssertionError(f"{name}: no such series in the scrape")
        return [
            sample
            for sample in self.families[family].samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]

    def value(self, name: str, **labels: str) -> float:
        """The one sample called `name` with exactly these labels; 0 when there is none yet."""
        found = [s for s in self.samples(name, **labels) if s.labels == labels]
        assert len(found) <= 1, found
        return float(found[0].value) if found else 0.0

    def total(self, name: str, **labels: str) -> float:
        """The sum of every sample called `name` whose labels include `labels`."""
        return float(sum(s.value for s in self.samples(name, **labels)))

    def series_names(self) -> set[str]:
        """Every sample name the families can have, whether or not they have samples yet."""
        names: set[str] = set()
        for family in self.families.values():
            suffixes = SAMPLE_SUFFIXES.get(family.type, ("",))
            names.update(family.name + suffix for suffix in suffixes)
        return names

    def label_values(self, label: str) -> set[str]:
        return {
            sample.labels[label]
            for family in self.families.values()
            for sample in family.samples
            if label in sample.labels
        }


def parse(text: str) -> Scrape:
    return Scrape({family.name: family for family in text_string_to_metric_families(text)})


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    """How far the sample `name` with exactly `labels` moved from one scrape to the next."""
    return after.value(name, **labels) - before.value(name, **labels)
