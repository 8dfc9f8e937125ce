"""The retention policy on its own: what may be deleted locally, newest kept, never an unshipped file."""

from __future__ import annotations

from pathlib import Path

from robovid_watch.ship.config import ShipSettings
from robovid_watch.ship.journal import ShipRecord
from robovid_watch.ship.retention import DAY_S, files_to_prune

NOW = 1_800_000_000.0
MB = 1_000_000


def _record(index: int, size_mb: int, age_days: float, state: str = "committed") -> ShipRecord:
    mtime_ns = int((NOW - age_days * DAY_S) * 1e9)
    return ShipRecord("front", 0, index, size_mb * MB, f"{index:064x}", mtime_ns, index, NOW, state)


def _pruned(records: list[ShipRecord], keep_bytes: int, keep_days: float) -> list[int]:
    return [r.file_index for r in files_to_prune(records, NOW, keep_bytes, keep_days)]


def test_the_newest_files_within_the_size_budget_are_kept_and_the_rest_go_oldest_first() -> None:
    records = [_record(i, 100, age_days=10 - i) for i in range(5)]  # file 4 is the newest
    assert _pruned(records, keep_bytes=250 * MB, keep_days=0) == [0, 1, 2]
    assert _pruned(records, keep_bytes=0, keep_days=0) == [0, 1, 2, 3, 4]
    assert _pruned(records, keep_bytes=10_000 * MB, keep_days=0) == []


def test_a_file_younger_than_keep_days_is_kept_whatever_its_size() -> None:
    records = [_record(0, 100, age_days=9), _record(1, 100, age_days=3), _record(2, 100, age_days=1)]
    assert _pruned(records, keep_bytes=0, keep_days=7) == [0]
    assert _pruned(records, keep_bytes=100 * MB, keep_days=2) == [0, 1]


def test_files_not_committed_are_never_candidates() -> None:
    records = [_record(i, 100, age_days=30, state=state) for i, state in enumerate(("hashed", "published", "pruned"))]
    assert _pruned(records, keep_bytes=0, keep_days=0) == []


def test_keep_gb_is_read_as_the_exact_byte_count_it_names(tmp_path: Path) -> None:
    for size_bytes in (1005, 262_142, 8_205_563_017):  # size / 1e9 * 1e9 falls just short of each in floating point
        settings = ShipSettings(root=tmp_path, ship_dest=f"file://{tmp_path}", ship_keep_gb=size_bytes / 1e9)
        assert settings.keep_bytes == size_bytes
