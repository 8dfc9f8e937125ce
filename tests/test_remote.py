"""Decoding from where the files are: a root in object storage, through s3fs, against a real S3 server.

moto's standalone server runs on 127.0.0.1 (tests/s3server.py); s3fs reaches it over real
sockets, as it would reach S3. The remote roots are what the real shipper (robovid-ship, a
subprocess) made of a root the real service encoded: their chunk files live only in the
bucket (the local copies are pruned). Each decoded frame is identified by the (episode, frame)
index burnt into it, so a reader that returns a neighbouring frame fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import fsspec
import numpy as np
import pytest
from conftest import EpisodeVideo, ShipTemplate
from daemon_harness import daemon_env, wait_for
from s3server import CREDENTIALS, FaultProxy, MotoServer
from ship_harness import ROBOT, SMALL, copy_root, journal_states, s3_dest, sealed_keys, start_shipper
from videocheck import require_torchcodec

from robovid.append import append_video
from robovid.cache import VideoDecoderCache
from robovid.compact import compact_chunk
from robovid.decode import decode_episode_frames, decode_video_frames
from robovid.encode import encode_frames
from robovid.errors import MetadataError
from robovid.layout import ChunkLocation, chunk_key
from robovid.metadata import read_lerobot_episodes, read_segments
from robovid.remote import REMOTE_BLOCK_BYTES, open_video_file
from robovid.settings import EncoderSettings
from robovid.synthetic import read_index, write_episode

FPS = 30
FRAMES = SMALL.frames
COPIES = 80
SORT = [("video_key", "ascending"), ("episode_index", "ascending")]


def frame_ids(frames: object) -> list[tuple[int, int]]:
    images = np.rint(np.asarray(frames).transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    return [read_index(image) for image in images]


@pytest.fixture(scope="module")
def s3(s3_server: MotoServer) -> Iterator[MotoServer]:
    """The session's server, with this process's s3fs pointed at it (endpoint and test credentials)."""
    import s3fs

    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": s3_server.url}.items():
            patch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        yield s3_server
        s3fs.S3FileSystem.clear_instance_cache()


@dataclass(frozen=True)
class Shipped:
    local: Path
    """The robot's root after shipping: its finished files are gone (retention 0)."""
    original: Path
    """The same root before shipping (every chunk file)."""
    url: str
    """The robot's prefix in the bucket: a remote root."""
    shipped: frozenset[str]
    """Keys of the chunk files shipped (and deleted locally)."""

    def shipped_rows(self) -> Any:
        rows = read_segments(self.original)
        keep = [self._key(row) in self.shipped for row in rows.to_pylist()]
        return rows.filter(keep)

    @staticmethod
    def _key(row: dict[str, Any]) -> str:
        return chunk_key(row["video_key"], ChunkLocation(row["chunk_index"], row["file_index"]))


@pytest.fixture(scope="module")
def shipped(s3: MotoServer, ship_template: ShipTemplate, tmp_path_factory: pytest.TempPathFactory) -> Shipped:
    """A root the real service made (2 cameras x 6 episodes, 3 files a camera), shipped by the real shipper."""
    base = tmp_path_factory.mktemp("shipped")
    original = ship_template(SMALL)
    root = copy_root(original, base / "root")
    bucket = s3.new_bucket()
    shipper = start_shipper(root, s3_dest(bucket), s3.url)
    try:
        wait_for(lambda: set(journal_states(root).values()) == {"pruned"}, "every sealed file pruned", daemon=shipper)
    finally:
        assert shipper.stop() == 0
    keys = frozenset(sealed_keys(root))
    assert len(keys) == 4 and not any((root / key).exists() for key in keys)
    return Shipped(root, original, f"{s3_dest(bucket)}/{ROBOT}", keys)


@pytest.fixture(params=["pyav", "torchcodec"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "torchcodec":
        require_torchcodec()
    return str(request.param)


def test_decode_video_frames_from_s3_returns_the_named_frames(shipped: Shipped, backend: str) -> None:
    rows = [r for r in shipped.shipped_rows().to_pylist() if r["video_key"] == "front"]
    url = f"{shipped.url}/{shipped._key(rows[0])}"
    in_file = [r for r in rows if shipped._key(r) == shipped._key(rows[0])]
    assert len(in_file) >= 2
    wanted = [(r["episode_index"], f) for r in reversed(in_file) for f in (FRAMES - 1, 0, 3)]
    by_episode = {r["episode_index"]: r["from_timestamp"] for r in in_file}
    timestamps = [by_episode[episode] + frame / FPS for episode, frame in wanted]
    frames = decode_video_frames(url, timestamps, 1e-4, backend=backend)
    assert frame_ids(frames) == wanted


def test_a_shipped_root_reads_like_the_local_one(shipped: Shipped, backend: str) -> None:
    """read_segments, read_lerobot_episodes and decode_episode_frames on the robot's prefix: every shipped
    episode of both cameras (one has a space in its name), each frame its own."""
    remote = read_segments(shipped.url)
    expected = shipped.shipped_rows()
    assert remote.num_rows == expected.num_rows == 8
    assert remote.sort_by(SORT).equals(expected.sort_by(SORT))
    lerobot = read_lerobot_episodes(shipped.url).to_pylist()
    assert [row["episode_index"] for row in lerobot] == [0, 1, 2, 3]
    for row in expected.to_pylist():
        camera, episode = row["video_key"], row["episode_index"]
        frames = decode_episode_frames(shipped.url, camera, episode, [0.0, 3 / FPS, (FRAMES - 1) / FPS], 1e-4, backend)
        assert frame_ids(frames) == [(episode, 0), (episode, 3), (episode, FRAMES - 1)], (camera, episode)


def test_a_shipped_episode_is_decoded_from_the_store_and_named_on_the_robot(shipped: Shipped) -> None:
    """On the robot, an episode whose file robovid-ship pruned says where to decode it; the prefix decodes it."""
    row = shipped.shipped_rows().to_pylist()[0]
    camera, episode = row["video_key"], row["episode_index"]
    with pytest.raises(FileNotFoundError, match="robovid-ship shipped it"):
        decode_episode_frames(shipped.local, camera, episode, [0.0], 1e-4, "pyav")
    frames = decode_episode_frames(shipped.url, camera, episode, [0.0], 1e-4, "pyav")
    assert frame_ids(frames) == [(episode, 0)]


def test_a_file_url_root_reads_like_the_path(shipped: Shipped) -> None:
    url = f"file://{shipped.original}"
    assert read_segments(url).sort_by(SORT).equals(read_segments(shipped.original).sort_by(SORT))
    frames = decode_episode_frames(url, "wrist cam", 5, [0.0, (FRAMES - 1) / FPS], 1e-4, "pyav")
    assert frame_ids(frames) == [(5, 0), (5, FRAMES - 1)]


def verify(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "robovid_watch.cli", "verify", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def s3_env(endpoint: str) -> dict[str, str]:
    return daemon_env(Path("unused"), **{**CREDENTIALS, "AWS_ENDPOINT_URL_S3": endpoint, "AWS_MAX_ATTEMPTS": "1"})


def test_verify_checks_a_remote_root_and_the_shipped_files_of_a_local_one(s3: MotoServer, shipped: Shipped) -> None:
    """`robovid verify URL` checks the prefix; on the robot, shipped files are shipped, not missing, and with
    --remote their segments are checked in the bucket."""
    env = s3_env(s3.url)
    remote = verify(shipped.url, "--json", env=env)
    assert remote.returncode == 0, remote.stdout + remote.stderr[-2000:]
    assert json.loads(remote.stdout) == {"checked": 8, "problems": []}

    local = verify(str(shipped.local), env=env)
    assert local.returncode == 0, local.stdout + local.stderr[-2000:]
    assert "12 segments checked, 0 problems" in local.stdout
    assert "4 chunk file(s) shipped by robovid-ship and deleted here: their segments not checked" in local.stdout

    checked = verify(str(shipped.local), "--remote", shipped.url, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr[-2000:]
    assert f"their segments checked in {shipped.url}" in checked.stdout


def test_verify_names_a_chunk_missing_from_the_store(s3: MotoServer, shipped: Shipped, tmp_path: Path) -> None:
    """The prefix copied to a new bucket, one wrist file removed: its segments (and no front one) are problems,
    also when the robot's root is verified against it."""
    bucket = s3.new_bucket()
    url = f"s3://{bucket}/copy"
    fs = fsspec.filesystem("s3")
    fs.copy(shipped.url[len("s3://") :] + "/", url[len("s3://") :] + "/", recursive=True)
    gone = sorted(k for k in shipped.shipped if k.startswith("videos/wrist cam/"))[0]
    fs.rm_file(f"{bucket}/copy/{gone}")
    lost = [r for r in shipped.shipped_rows().to_pylist() if shipped._key(r) == gone]
    assert lost
    for target in ([url], [str(shipped.local), "--remote", url]):
        done = verify(*target, "--json", env=s3_env(s3.url))
        assert done.returncode == 1, done.stderr[-2000:]
        problems = json.loads(done.stdout)["problems"]
        assert sorted((p["video_key"], p["episode_index"]) for p in problems) == sorted(
            ("wrist cam", r["episode_index"]) for r in lost
        )
        assert all("is missing" in p["problem"] for p in problems)


def test_verify_with_the_store_unreachable_says_so_and_exits_1(s3: MotoServer, shipped: Shipped) -> None:
    proxy = FaultProxy(s3.port).start()
    try:
        reachable = verify(shipped.url, env=s3_env(proxy.url))
        assert reachable.returncode == 0, reachable.stderr[-2000:]
        proxy.cut()
        cut = verify(shipped.url, env=s3_env(proxy.url))
    finally:
        proxy.close()
    assert cut.returncode == 1
    assert "the store failed the request" in cut.stderr and "Traceback" not in cut.stderr, cut.stderr[-2000:]


def test_decode_episode_frames_says_what_is_missing_on_a_remote_root(shipped: Shipped) -> None:
    with pytest.raises(MetadataError, match=r"Episode 99 of camera 'front' is not in s3://.*/segments"):
        decode_episode_frames(shipped.url, "front", 99, [0.0], 1e-4, "pyav")


def test_an_empty_remote_root_has_no_segments(s3: MotoServer) -> None:
    assert read_segments(f"s3://{s3.new_bucket()}/nothing-here").num_rows == 0


def test_the_decoder_cache_reopens_an_object_rewritten_in_the_store(
    s3: MotoServer, tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    """A chunk replaced by a longer version (same key) is decoded from the new version.

    The folder is listed first, so fsspec's listing cache holds the old size and ETag, and the
    new version comes from another client (boto3, as from a robot's shipper): the cache must
    still see the change (robovid asks the store, not fsspec's listing).
    """
    require_torchcodec()
    chunk = tmp_path / "file-000.mp4"
    for episode in range(2):
        append_video(chunk, episode_video(episode, num_frames=FRAMES))
    fs = fsspec.filesystem("s3")
    bucket, name = s3.new_bucket(), "videos/front/chunk-000/file-000.mp4"
    key = f"{bucket}/{name}"
    fs.put_file(str(chunk), key)
    cache = VideoDecoderCache(max_size=2)
    url = f"s3://{key}"
    with cache.borrow_decoder(url) as decoder:
        assert decoder.metadata.num_frames == 2 * FRAMES
    fs.ls(key.rsplit("/", 1)[0], detail=True)  # fill fsspec's listing cache with the old version

    append_video(chunk, episode_video(2, num_frames=FRAMES))
    s3.client().put_object(Bucket=bucket, Key=name, Body=chunk.read_bytes())
    from robovid._decode_torchcodec import decode_video_frames_torchcodec

    frames = decode_video_frames_torchcodec(url, [(2 * FRAMES + 5) / FPS], 1e-4, decoder_cache=cache)
    assert frame_ids(frames) == [(2, 5)]
    assert len(cache) == 1


@pytest.fixture(scope="module", params=["appended", "compacted"])
def big_chunk(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """80 copies of one episode, several range blocks long: appended in place (one dead movie box and
    one mdat per append), or compacted (``ftyp | mdat | moov``). Each copy is larger than what FFmpeg
    reads through instead of seeking past (its buffer plus 32 KiB), as real episodes are."""
    directory = tmp_path_factory.mktemp("big_chunk")
    frames = write_episode(directory / "png", 0, FRAMES, 640, 480, seed=3)
    episode = encode_frames(frames, directory / "episode.mp4", FPS, EncoderSettings(crf=20)).video_path
    assert episode is not None
    chunk = directory / "file-000.mp4"
    for _ in range(COPIES):
        append_video(chunk, episode)
    if request.param == "compacted":
        compact_chunk(chunk)
    shutil.rmtree(directory / "png")
    assert episode.stat().st_size > 96 * 1024, "each copy must be larger than FFmpeg reads through"
    assert chunk.stat().st_size > 6 * REMOTE_BLOCK_BYTES, "the chunk must span several blocks"
    return chunk


def test_a_remote_decode_reads_ranges_not_the_file(s3: MotoServer, big_chunk: Path) -> None:
    """The last episode's first frame costs the movie box and that frame's blocks, not the file.

    In an appended file FFmpeg walks 160 box headers to reach the live movie box; the overlay
    serves them from memory, so they cost no request.
    """
    url = f"s3://{s3.new_bucket()}/file-000.mp4"
    fsspec.filesystem("s3").put_file(str(big_chunk), url[len("s3://") :])
    handle, _ = open_video_file(url)
    with handle, av.open(handle) as container:
        stream = container.streams.video[0]
        target = (COPIES - 1) * FRAMES
        container.seek(int(target / FPS / stream.time_base), stream=stream)
        frame = next(f for f in container.decode(stream) if f.pts is not None and round(f.time * FPS) >= target)
        assert read_index(frame.to_ndarray(format="rgb24")) == (0, 0)
        fetched, requests = handle.cache.total_requested_bytes, handle.cache.miss_count  # type: ignore[attr-defined]
    assert fetched <= 3 * REMOTE_BLOCK_BYTES < big_chunk.stat().st_size / 1.3
    assert requests <= 3
