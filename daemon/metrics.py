"""Metrics in the Prometheus text format, written to a file for node_exporter's textfile collector.

A file, because the service has no network (``PrivateNetwork=yes``): node_exporter's
``--collector.textfile.directory`` (``/var/lib/prometheus/node-exporter`` on Debian) reads
every ``*.prom`` file in it at each scrape. Each process writes its own file there
(``robovid_watch.prom``, ``robovid_ship.prom``), and metric names never repeat across the two,
because the collector refuses a scrape that holds one series twice.

The file is replaced atomically (temp file in the same folder, then ``os.replace``), so a
scrape never reads half a file. It is not fsynced: after a power cut a stale or missing file
is harmless, and node_exporter's ``node_textfile_mtime_seconds`` shows how old it is.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from robovid.durable import temp_path_for

WATCH_FILE = "robovid_watch.prom"
SHIP_FILE = "robovid_ship.prom"


@dataclass
class Metric:
    """One metric family: a name, its type, its help text and its samples."""

    name: str
    kind: str
    """``counter`` or ``gauge``."""
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, labels: Mapping[str, str] | None = None) -> Metric:
        self.samples.append((dict(labels or {}), float(value)))
        return self


def gauge(name: str, help_text: str, value: float | None, labels: Mapping[str, str] | None = None) -> Metric:
    """A gauge with one sample (none when ``value`` is None: the series is absent, not zero)."""
    metric = Metric(name, "gauge", help_text)
    return metric if value is None else metric.add(value, labels)


def counter(name: str, help_text: str, value: float, labels: Mapping[str, str] | None = None) -> Metric:
    """A counter with one sample. Counters restart at 0 with the process; rate() handles that."""
    return Metric(name, "counter", help_text).add(value, labels)


def render(metrics: Iterable[Metric]) -> str:
    """The text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for labels, value in metric.samples:
            lines.append(f"{metric.name}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


def write_textfile(directory: Path, name: str, metrics: Iterable[Metric]) -> Path:
    """Replace ``directory/name`` atomically with the rendered metrics, readable by node_exporter."""
    path = directory / name
    temp = temp_path_for(path)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(render(metrics))
        os.chmod(temp, 0o644)  # the unit's UMask=0027 would hide it from node_exporter's user
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    return path


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(str(value))}"' for key, value in sorted(labels.items()))
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)
