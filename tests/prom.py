"""Reading a Prometheus text file the way a test needs it: series -> value."""

from __future__ import annotations

from pathlib import Path


def read_metrics(path: Path) -> dict[str, float]:
    """``name{labels}`` -> value from a Prometheus text file (labels as written)."""
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def metric(values: dict[str, float], name: str, **labels: str) -> float | None:
    """The value of the series ``name`` whose labels include ``labels``."""
    for series, value in values.items():
        if series.split("{", 1)[0] == name and all(f'{k}="{v}"' in series for k, v in labels.items()):
            return value
    return None
