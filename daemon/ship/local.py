"""Step 1 of a pass, done offline too: a journal record, hashed, for every file the service sealed.

A file already recorded with the same size, modification time and inode keeps its record; a
changed one is hashed again (and shipped again); a pruned name that reappears is hashed and
shipped only if it is the same file. A sealed file missing locally is fine once committed (a
kill between the delete and its record); otherwise it is reported once, never "fixed".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import structlog

from ..finished import SealedFile, sealed_files
from ..stop_signals import StopRequest
from .journal import ShipJournal, ShipRecord

log = structlog.get_logger("robovid_ship")


class Report(Protocol):
    """The shipper's report-once: ``report(token, event, **fields)`` logs an error the first time per token."""

    def __call__(self, token: str, event: str, **fields: object) -> None: ...


def refresh_local(root: Path, journal: ShipJournal, stop: StopRequest, report: Report) -> list[ShipRecord]:
    """A journal record for every sealed file, hashed; records of changed or vanished files updated."""
    records = []
    for sealed in sealed_files(root):
        if stop.is_set():
            break
        record = _refresh_one(root, journal, stop, report, sealed)
        if record is not None:
            records.append(record)
    return records


def _refresh_one(
    root: Path, journal: ShipJournal, stop: StopRequest, report: Report, sealed: SealedFile
) -> ShipRecord | None:
    record = journal.get(sealed.camera, sealed.location)
    path = sealed.path(root)
    try:
        st = path.stat()
    except FileNotFoundError:
        return _local_missing(root, journal, report, sealed, record)
    if record is not None and record.state == "pruned":
        log.warning(
            "local_file_reappeared",
            path=str(path),
            action="a file by this name was shipped and pruned before; this one is hashed, and shipped only "
            "if it is the same file",
        )
        return journal.write(ShipRecord.hash_file(sealed, path, stop))
    if record is not None and (st.st_size, st.st_mtime_ns, st.st_ino) == (
        record.size_bytes,
        record.mtime_ns,
        record.inode,
    ):
        return record
    if record is not None:
        log.warning("local_file_changed", path=str(path), action="hashed again and shipped again")
    return journal.write(ShipRecord.hash_file(sealed, path, stop))


def _local_missing(
    root: Path, journal: ShipJournal, report: Report, sealed: SealedFile, record: ShipRecord | None
) -> ShipRecord | None:
    if record is not None and record.state in ("committed", "pruned"):
        if record.state == "committed":  # a kill between the delete and its record
            record = journal.write(record.moved_to("pruned", pruned_at=time.time()))
        return record
    report(
        f"missing:{sealed.relative_key()}",
        "local_file_missing",
        path=str(sealed.path(root)),
        state=record.state if record else None,
        action="a sealed file that was never shipped is gone from the root; it was not deleted by robovid-ship. "
        "Restore it from a backup if there is one",
    )
    return record
