"""robovid-ship's loop: hash what the service sealed, ship it, commit the manifest, then let retention prune.

One pass, read top to bottom in :meth:`Shipper.run_pass`:

1. **local** (works offline): every file the service sealed gets a journal record with its
   size and SHA-256; a file that changed since it was hashed is hashed again;
2. **ship**: each hashed file is streamed to its temp key, published and read back;
3. **commit** (:mod:`.commit`): remote metadata for the shipped files (robovid's segment table and,
   for a LeRobot root, LeRobot's files restricted to the episodes whose videos are shipped), then
   the manifest (the commit point); again whenever the local metadata changed;
4. **prune**: committed files beyond the retention policy, and covered by the committed remote
   metadata, are deleted locally, each after
   its remote copy is checked again (size always; read back and hashed when the last full
   check is older than ``ROBOVID_SHIP_RECHECK_S``). A damaged or missing remote copy sends
   the file back to step 2 instead.

Any store error ends the pass; the next remote attempt waits 1, 2, 4 … up to
``ROBOVID_SHIP_BACKOFF_MAX_S`` seconds, while step 1 and the metrics go on. The shipper only
reads the service's files, and deletes only sealed ones: the service never writes a sealed
file again (:mod:`robovid_watch.finished`), so no append or compaction can race a delete.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import structlog

from robovid._faults import fault_point
from robovid.durable import unlink_durably
from robovid.errors import LeRobotMetadataError
from robovid.metadata import MetadataError

from ..errors import JournalReplacedError, RemoteError, RemoteMismatchError
from ..notify import sd_notify
from ..stop_signals import StopRequest
from .backoff import StoreHealth
from .commit import commit_generation
from .config import ShipSettings
from .journal import ShipJournal, ShipRecord
from .local import refresh_local
from .manifest import MANIFEST_KEY, Manifest, ShippedFile, metadata_stamp
from .metrics import ShipCounters, write_ship_metrics
from .retention import files_to_prune
from .store import RemoteCheck, RemoteStore

log = structlog.get_logger("robovid_ship")

COMMIT_EVERY_S = 60.0
"""During a long pass (a backlog), commit what was shipped at least this often, so pruning need not wait."""

STOP_GRACE_S = 30.0
"""After a stop request, how long the store call in progress may take before robovid-ship exits without it.

A call stalled on a silent endpoint otherwise runs to s3fs's timeouts and retries (205 s measured),
past the unit's TimeoutStopSec (90 s). Exiting then is as safe as a kill: the journal's writes are
atomic, an upload in progress is abandoned at its temp key and resumes at the next start."""


class Shipper:
    """One robovid-ship run on one root."""

    def __init__(self, settings: ShipSettings, store: RemoteStore) -> None:
        self.settings = settings
        self.root = settings.root
        self.store = store
        self.journal = ShipJournal(self.root)
        self.stop = StopRequest()
        """Set by SIGTERM/SIGINT/SIGHUP (main's handler): it must not take a lock, see :mod:`robovid_watch.stop_signals`."""
        self.counters = ShipCounters()
        self.manifest: Manifest | None = None
        """The remote manifest as read or written by this run (None until the store answered once)."""
        self._synced_stamp: tuple[object, ...] | None = None
        """Identity of the local metadata files at the last commit: a change makes a pass commit again."""
        self.held: frozenset[str] | None = None
        """Committed files retention must keep: the remote LeRobot metadata does not cover them yet."""
        self.health = StoreHealth(settings.ship_backoff_max_s)
        self._last_commit: float | None = None
        self._reported: set[str] = set()
        self._finished = threading.Event()

    # lifecycle -------------------------------------------------------------------------
    def run(self) -> int:
        self.journal.prepare()
        self.journal.acquire_lock()
        threading.Thread(target=self._exit_if_stop_overruns, name="stop-deadline", daemon=True).start()
        try:
            removed = self.journal.clear_temp_files()
            log.info("started", root=str(self.root), dest=self.store.url, stale_temp_removed=removed)
            sd_notify("READY=1")
            while not self.stop.is_set():
                if not self.journal.still_held():
                    raise JournalReplacedError(
                        f"{self.journal.dir} was deleted or replaced while robovid-ship held it; exiting so that "
                        "one shipper, started afresh, owns the root."
                    )
                self.run_pass()
                sd_notify("WATCHDOG=1")
                self.stop.wait(self.health.wait_s(self.settings.ship_interval_s))
        finally:
            sd_notify("STOPPING=1")
            self.journal.release_lock()
            self._finished.set()
        log.info("stopped", uploaded_bytes=self.counters.uploaded_bytes, files=self.counters.files_committed)
        return 0

    def _exit_if_stop_overruns(self) -> None:
        """Runs in its own thread: once a stop is requested, exit if the main loop has not within STOP_GRACE_S."""
        while not self.stop.wait(3600.0):
            pass
        if self._finished.wait(STOP_GRACE_S):
            return
        sd_notify("STOPPING=1")
        log.warning(
            "stop_forced",
            grace_s=STOP_GRACE_S,
            action="a store call did not return in time; it is abandoned (an upload resumes at the next start)",
        )
        log.info(
            "stopped", uploaded_bytes=self.counters.uploaded_bytes, files=self.counters.files_committed, forced=True
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # as safe as a kill at this instant; the journal lock goes with the process

    def request_stop(self) -> None:
        self.stop.set()

    def run_pass(self) -> None:
        try:
            records = self.refresh_local()
        except InterruptedError:
            return
        if self.health.due() and not self.stop.is_set():
            try:
                self.remote_pass(records)
            except RemoteError as error:
                self._remote_failed(error)
            except InterruptedError:
                log.info("pass_interrupted", reason="stop requested; the upload in progress resumes at next start")
            else:
                self._remote_succeeded()
        self.write_metrics()

    # 1. local --------------------------------------------------------------------------
    def refresh_local(self) -> list[ShipRecord]:
        """A journal record for every sealed file, hashed; records of changed or vanished files updated."""
        return refresh_local(self.root, self.journal, self.stop, self._report_once)

    # 2. ship ---------------------------------------------------------------------------
    def remote_pass(self, records: list[ShipRecord]) -> None:
        if self.manifest is None:
            self.manifest = self._load_manifest()
            records[:] = [self._reconcile(r) for r in records]
            aborted = self.store.abort_stale_uploads()
            if aborted:
                log.info("stale_uploads_aborted", count=aborted)
        pass_commit = time.monotonic()
        for index, record in enumerate(records):
            if self.stop.is_set():
                raise InterruptedError("stop requested")
            if record.state == "hashed":
                records[index] = self._ship(record)
                self.write_metrics()
            if time.monotonic() - pass_commit >= COMMIT_EVERY_S:  # a long backlog: commit and free space as it goes
                self._commit_and_prune(records)
                pass_commit = time.monotonic()
        self._commit_and_prune(records)

    def _commit_and_prune(self, records: list[ShipRecord]) -> None:
        try:
            self._commit(records)
        except (MetadataError, LeRobotMetadataError) as error:
            self._report_once(
                "metadata",
                "metadata_unreadable",
                detail=str(error),
                action="files are shipped but nothing is committed or deleted until the local metadata reads again",
            )
            return
        self._prune(records)

    def _load_manifest(self) -> Manifest:
        data = self.store.read_bytes(MANIFEST_KEY)
        if data is None:
            log.info("manifest_new", url=f"{self.store.url}/{MANIFEST_KEY}")
            return self._manifest_from_journal()
        try:
            return Manifest.from_json(data)
        except ValueError as error:
            raise RemoteError(
                f"{self.store.url}/{MANIFEST_KEY}: {error}. Nothing is shipped or deleted until it is readable: "
                "restore it, or move it aside and robovid-ship rebuilds it from its journal"
            ) from error

    def _manifest_from_journal(self) -> Manifest:
        """No manifest at the destination: start from the files this journal says were committed."""
        entries = [_entry(r, r.committed_at) for r in self.journal.records() if r.state in ("committed", "pruned")]
        return Manifest(self.settings.ship_robot_id).with_files(entries)

    def _reconcile(self, record: ShipRecord) -> ShipRecord:
        """After a kill between the manifest write and its journal records: the manifest is the truth.

        A record lost or reset to ``hashed`` keeps ``verified_at`` 0, so pruning reads its remote copy
        back in full before it deletes anything.
        """
        if record.state in ("hashed", "published") and self._committed_manifest().committed(
            record.relative_key(), record.sha256
        ):
            return self.journal.write(record.moved_to("committed", committed_at=time.time()))
        return record

    def _ship(self, record: ShipRecord) -> ShipRecord:
        key = record.relative_key()
        path = record.path(self.root)
        listed = self._committed_manifest().files.get(key)
        if listed is not None and listed.sha256 != record.sha256:
            self._report_once(
                f"conflict:{key}:{record.sha256}",
                "remote_key_conflict",
                path=str(path),
                key=key,
                committed_sha256=listed.sha256,
                local_sha256=record.sha256,
                action="another file was committed under this name; it is never overwritten. The local file is kept "
                "and not shipped: compare the two, then move one aside",
            )
            return record
        existing = self.store.check(key, full=False)
        if existing.exists and existing.size_bytes == record.size_bytes:
            found = self.store.check(key, full=True)  # a kill after publishing: already there?
            if found.sha256 == record.sha256:
                self.store.discard_temp(key)
                log.info("file_already_shipped", path=str(path), key=key)
                return self.journal.write(record.moved_to("published", verified_at=time.time()))
        started = time.monotonic()
        try:
            self.store.put_file(path, key, record.sha256, self.stop)
        except RemoteMismatchError as error:
            log.error("remote_copy_mismatch", path=str(path), key=key, detail=str(error), action="uploaded again")
            raise
        self.counters.uploaded_bytes += record.size_bytes
        log.info("file_shipped", path=str(path), key=key, size_bytes=record.size_bytes, seconds=_since(started))
        return self.journal.write(record.moved_to("published", verified_at=time.time()))

    # 3. commit -------------------------------------------------------------------------
    def _commit(self, records: list[ShipRecord]) -> None:
        """Commit what was published (:mod:`.commit`); also when only the local metadata changed."""
        for index, record in enumerate(records):
            if record.state == "published" and not self._listed(record):
                records[index] = self._still_there(record)
        ready = [r for r in records if r.state == "published"]
        stamp = metadata_stamp(self.root)
        if not ready and stamp == self._synced_stamp:
            return
        now = time.time()
        new = [_entry(r, now) for r in ready if not self._listed(r)]
        done = commit_generation(self.store, self.root, self._committed_manifest(), new, now)
        self.manifest, self._synced_stamp = done.manifest, stamp
        self._report_held(done.held)
        if done.written:
            self._last_commit = now
            self.counters.commits += 1
            log.info(
                "committed",
                generation=done.manifest.generation,
                files=len(ready),
                total_files=len(done.manifest.files),
                lerobot_episodes=done.manifest.lerobot_episodes,
            )
        for index, record in enumerate(records):
            if record.state == "published":
                records[index] = self.journal.write(record.moved_to("committed", committed_at=now))
                self.counters.files_committed += 1

    def _report_held(self, held: frozenset[str]) -> None:
        if held and held != self.held:
            log.info(
                "kept_for_lerobot_meta",
                files=len(held),
                lerobot_episodes=self._committed_manifest().lerobot_episodes,
                action="committed files with episodes the remote LeRobot metadata does not list yet stay local "
                "until it does (LeRobot still writing its episodes file, or robovid's export behind)",
            )
        self.held = held

    def _still_there(self, record: ShipRecord) -> ShipRecord:
        """A file published in an earlier pass (or run) is listed only if its object is still there, whole."""
        found = self.store.check(record.relative_key(), full=False)
        if found.exists and found.size_bytes == record.size_bytes:
            return record
        self._log_damaged(record, found)
        return self.journal.write(record.moved_to("hashed", verified_at=0.0))

    def _log_damaged(self, record: ShipRecord, found: RemoteCheck) -> None:
        key = record.relative_key()
        log.error(
            "remote_copy_damaged",
            key=key,
            url=f"{self.store.url}/{key}",
            exists=found.exists,
            size_bytes=found.size_bytes,
            expected_size_bytes=record.size_bytes,
            action="the local copy is kept and shipped again",
        )

    def _listed(self, record: ShipRecord) -> bool:
        return self._committed_manifest().committed(record.relative_key(), record.sha256)

    def _committed_manifest(self) -> Manifest:
        if self.manifest is None:
            raise RuntimeError("robovid-ship: the remote manifest is used before it was read (a bug).")
        return self.manifest

    # 4. prune --------------------------------------------------------------------------
    def _prune(self, records: list[ShipRecord]) -> None:
        if self.held is None:
            return  # no commit yet in this run: what the remote metadata covers is not known
        held = self.held
        candidates = [r for r in records if r.relative_key() not in held]
        doomed = files_to_prune(candidates, time.time(), self.settings.keep_bytes, self.settings.ship_keep_days)
        by_key = {r.relative_key(): i for i, r in enumerate(records)}
        for record in doomed:
            if self.stop.is_set():
                return
            records[by_key[record.relative_key()]] = self._prune_one(record)

    def _prune_one(self, record: ShipRecord) -> ShipRecord:
        key, path = record.relative_key(), record.path(self.root)
        if not self._listed(record):
            return self.journal.write(record.moved_to("published"))  # committed again by the next pass
        full = time.time() - record.verified_at >= self.settings.ship_recheck_s
        found = self.store.check(key, full=full)
        if not found.exists or found.size_bytes != record.size_bytes or (full and found.sha256 != record.sha256):
            self._log_damaged(record, found)
            return self.journal.write(record.moved_to("hashed", verified_at=0.0))
        if full:
            record = self.journal.write(record.moved_to("committed", verified_at=time.time()))
        st = path.stat()
        if (st.st_size, st.st_mtime_ns, st.st_ino) != (record.size_bytes, record.mtime_ns, record.inode):
            return record  # changed since it was hashed: the next pass hashes and ships it again
        fault_point("ship:before-prune")
        unlink_durably([path])
        self.counters.pruned_bytes += record.size_bytes
        log.info("local_copy_pruned", path=str(path), key=key, size_bytes=record.size_bytes)
        return self.journal.write(record.moved_to("pruned", pruned_at=time.time()))

    # health ----------------------------------------------------------------------------
    def _remote_failed(self, error: RemoteError) -> None:
        self.counters.remote_errors += 1
        delay = self.health.failed()
        log.warning(
            "remote_unavailable",
            url=self.store.url,
            detail=str(error),
            attempt=self.health.failures,
            retry_in_s=round(delay, 1),
            action="nothing local is deleted meanwhile; check the network, the credentials and the destination",
        )

    def _remote_succeeded(self) -> None:
        ended = self.health.succeeded()
        if ended:
            log.info("remote_back", url=self.store.url, after_attempts=ended)

    def _report_once(self, token: str, event: str, **fields: object) -> None:
        if token not in self._reported:
            self._reported.add(token)
            log.error(event, **fields)

    def write_metrics(self) -> None:
        """``robovid_ship.prom`` in ROBOVID_METRICS_DIR, when set; an unwritable folder is reported once."""
        try:
            write_ship_metrics(self)
        except OSError as error:
            self._report_once("metrics", "metrics_unwritable", path=str(self.settings.metrics_path), detail=str(error))

    # helpers used by the metrics --------------------------------------------------------
    @property
    def last_commit(self) -> float | None:
        return self._last_commit


def _entry(record: ShipRecord, committed_at: float) -> ShippedFile:
    return ShippedFile(
        key=record.relative_key(),
        camera=record.camera,
        chunk_index=record.chunk_index,
        file_index=record.file_index,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        committed_at=committed_at or time.time(),
    )


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
