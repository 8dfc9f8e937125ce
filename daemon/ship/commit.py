"""Step 3 of a pass: one commit of a robot's prefix, after its new files were published and verified.

In order, each write atomic on its own (a temp key published by one move):

1. the metadata objects whose bytes changed since the committed manifest, in the order
   :func:`.manifest.remote_metadata` gives (segment parts; then LeRobot's tasks, episodes
   files, data files, stats.json, and info.json last). Every object of every generation names
   only chunk files that are already at their final key and verified, so no reader, whatever
   mix of old and new objects it reads, finds a row pointing at a missing video;
2. metadata objects the new generation no longer has are removed;
3. the manifest, listing the files, every metadata object with its SHA-256, and M: the commit.

A kill -9 at any point leaves the previous manifest, the files it lists, and objects of the new
generation that the next pass writes again (same keys, same bytes) before it commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robovid._faults import fault_point

from .manifest import MANIFEST_KEY, Manifest, ShippedFile, ShippedObject, remote_metadata, sha256_hex
from .store import RemoteStore


@dataclass(frozen=True)
class Commit:
    """The outcome of one commit."""

    manifest: Manifest
    """The manifest now committed (the previous one when nothing changed)."""
    written: bool
    """True when a new manifest was written."""
    held: frozenset[str]
    """Committed files the remote LeRobot metadata does not cover yet (retention keeps them local)."""


def commit_generation(
    store: RemoteStore, root: Path, committed: Manifest, new_files: list[ShippedFile], now: float
) -> Commit:
    """Write the metadata of ``committed`` plus ``new_files`` (already verified remotely), then the manifest."""
    files = committed.with_files(new_files).files
    produced = remote_metadata(root, list(files.values()), committed)
    metadata: dict[str, ShippedObject] = {}
    for key, data in produced.objects.items():
        digest = sha256_hex(data)
        previous = committed.metadata.get(key)
        if previous is None or previous.sha256 != digest:
            store.put_bytes(data, key)
            fault_point("ship:after-metadata-object")
        metadata[key] = ShippedObject(key, len(data), digest)
    metadata |= produced.kept
    for key in committed.metadata:
        if key not in metadata:
            store.remove(key)
    manifest = Manifest(committed.robot_id, committed.generation + 1, now, files, metadata, produced.lerobot_episodes)
    held = frozenset(produced.held)
    unchanged = metadata == committed.metadata and manifest.lerobot_episodes == committed.lerobot_episodes
    if not new_files and unchanged:
        return Commit(committed, False, held)
    store.put_bytes(manifest.to_json(), MANIFEST_KEY)
    fault_point("ship:after-commit")
    return Commit(manifest, True, held)
