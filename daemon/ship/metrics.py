"""robovid-ship's metrics (``robovid_ship.prom``); the alert examples are in ``deploy/prometheus/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from robovid.layout import list_cameras, list_chunks

from ..finished import sealed_files
from ..metrics import SHIP_FILE, Metric, counter, gauge, write_textfile

if TYPE_CHECKING:
    from .shipper import Shipper


@dataclass
class ShipCounters:
    """What this run did (exported as counters)."""

    uploaded_bytes: int = 0
    files_committed: int = 0
    pruned_bytes: int = 0
    remote_errors: int = 0
    commits: int = 0


def write_ship_metrics(shipper: Shipper) -> None:
    """Replace ``robovid_ship.prom`` in ROBOVID_METRICS_DIR (nothing when it is not set)."""
    directory = shipper.settings.metrics_path
    if directory is not None:
        write_textfile(directory, SHIP_FILE, ship_metrics(shipper))


def ship_metrics(shipper: Shipper) -> list[Metric]:
    """Every robovid_ship_* metric, labelled with the root."""
    labels = {"root": str(shipper.root)}
    records = {(r.camera, r.location): r for r in shipper.journal.records()}
    waiting: list[tuple[int, float]] = []  # sealed, not committed: (bytes, sealed_at)
    retained = held = 0
    held_keys = shipper.held or frozenset()
    for sealed in sealed_files(shipper.root):
        record = records.get((sealed.camera, sealed.location))
        state = record.state if record else "hashed"
        if state in ("hashed", "published"):
            waiting.append((record.size_bytes if record else sealed.size_bytes, sealed.sealed_at))
        elif state == "committed":
            retained += record.size_bytes if record else 0
            held += record.size_bytes if record and sealed.relative_key() in held_keys else 0
    open_count, open_bytes = open_files_bytes(shipper.root)
    c = shipper.counters

    def unshipped(metric: Metric, sealed_value: float, open_value: float) -> Metric:
        return metric.add(sealed_value, labels | {"state": "sealed"}).add(open_value, labels | {"state": "open"})

    return [
        unshipped(
            Metric(
                "robovid_ship_unshipped_bytes",
                "gauge",
                "Local chunk-file bytes without a committed remote copy: sealed (ready to ship) or open (still "
                "being appended to by robovid-watch).",
            ),
            sum(size for size, _ in waiting),
            open_bytes,
        ),
        unshipped(
            Metric("robovid_ship_unshipped_files", "gauge", "Local chunk files without a committed remote copy."),
            len(waiting),
            open_count,
        ),
        gauge(
            "robovid_ship_oldest_unshipped_sealed_timestamp_seconds",
            "Unix time at which the oldest sealed but unshipped file was sealed (absent when none waits).",
            min((at for _, at in waiting), default=None),
            labels,
        ),
        gauge(
            "robovid_ship_retained_bytes", "Bytes of shipped files still kept locally by retention.", retained, labels
        ),
        gauge(
            "robovid_ship_held_bytes",
            "Bytes of shipped files retention may not delete yet: they hold episodes the committed remote LeRobot "
            "dataset does not list (LeRobot still writing its episodes file, or the export behind).",
            held,
            labels,
        ),
        gauge(
            "robovid_ship_lerobot_episodes",
            "Episodes in the committed remote LeRobot dataset (0 when the root holds none, or none is shipped yet).",
            None if shipper.manifest is None else shipper.manifest.lerobot_episodes,
            labels,
        ),
        counter(
            "robovid_ship_uploaded_bytes_total", "Bytes uploaded and verified (bytes out).", c.uploaded_bytes, labels
        ),
        counter(
            "robovid_ship_files_committed_total", "Files committed to the remote manifest.", c.files_committed, labels
        ),
        counter(
            "robovid_ship_pruned_bytes_total", "Bytes of local copies deleted by retention.", c.pruned_bytes, labels
        ),
        counter("robovid_ship_remote_errors_total", "Passes that failed on a store error.", c.remote_errors, labels),
        gauge(
            "robovid_ship_remote_up",
            "1 when the last pass reached the store without an error, 0 when it failed (absent before the first).",
            None if shipper.health.up is None else float(shipper.health.up),
            labels,
        ),
        gauge(
            "robovid_ship_last_success_timestamp_seconds",
            "Unix time of the last pass that reached the store without an error.",
            shipper.health.last_success,
            labels,
        ),
        gauge(
            "robovid_ship_last_commit_timestamp_seconds",
            "Unix time of the last manifest commit by this run.",
            shipper.last_commit,
            labels,
        ),
    ]


def open_files_bytes(root: Path) -> tuple[int, int]:
    """Chunk files not sealed yet (the service may still append to them): count and bytes."""
    sealed = {(s.camera, s.location) for s in sealed_files(root)}
    count = size = 0
    for camera in list_cameras(root):
        for location in list_chunks(root, camera):
            if (camera, location) not in sealed:
                try:
                    size += location.path(root, camera).stat().st_size
                    count += 1
                except FileNotFoundError:
                    continue
    return count, size
