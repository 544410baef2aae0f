"""Reading Prometheus text in tests: samples by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Samples", "parse"]

LabelKey = tuple[tuple[str, str], ...]


class Samples:
    """Samples of one exposition, looked up by name and a subset of labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.rows: list[tuple[str, dict[str, str], float]] = []
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for s in family.samples:
                self.rows.append((s.name, dict(s.labels), s.value))

    def all(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [
            (lab, v)
            for n, lab, v in self.rows
            if n == name and all(lab.get(k) == val for k, val in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The one sample matching; fails when there are none or several."""
        found = self.all(name, **labels)
        if len(found) != 1:
            raise AssertionError(f"{len(found)} samples of {name} {labels}: {found[:5]}")
        return found[0][1]

    def names(self) -> set[str]:
        return {n for n, _, _ in self.rows}


def parse(text: str) -> Samples:
    return Samples(text)
