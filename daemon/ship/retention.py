"""Local retention: which committed files may go, under "keep the last N GB or N days".

Only files whose remote copy is committed are ever candidates; an unshipped file is never
chosen, whatever the policy. Of the committed files still on disk, the newest are kept
while they fit in ``ROBOVID_SHIP_KEEP_GB``, and any file younger than
``ROBOVID_SHIP_KEEP_DAYS`` is kept too (either rule keeps a file). Age is the file's last
modification (its last append, or its compaction). The rest go, oldest first, each after one
more check of its remote copy (:mod:`robovid_watch.ship.shipper`).
"""

from __future__ import annotations

from collections.abc import Iterable

from .journal import ShipRecord

DAY_S = 86400.0


def files_to_prune(records: Iterable[ShipRecord], now: float, keep_bytes: int, keep_days: float) -> list[ShipRecord]:
    """The committed local files the policy lets go, oldest first."""
    committed = [r for r in records if r.state == "committed"]
    newest_first = sorted(committed, key=lambda r: (r.mtime_ns, r.sealed_at), reverse=True)
    kept_bytes = 0
    within_size = True
    doomed = []
    for record in newest_first:
        young = keep_days > 0 and now - record.mtime_ns / 1e9 < keep_days * DAY_S
        within_size = within_size and kept_bytes + record.size_bytes <= keep_bytes
        if within_size or young:
            kept_bytes += record.size_bytes
        else:
            doomed.append(record)
    return doomed[::-1]
