"""Robots' roots for the merge tests, and the checks a merged root must pass (tests/test_merge*.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from daemon_harness import daemon_env, decoded_indices

from robovid.decode import decode_video_frames
from robovid.layout import chunk_path, merge_dir, state_dir
from robovid.lerobot_stats import vector_stats
from robovid.metadata import read_segments
from robovid.synthetic import read_index, write_episode, write_recording

CAMERAS = ("front", "wrist")
FRAMES = 8
ROBOT_A = range(3)
ROBOT_B = range(100, 102)
EXPECTED = {0: 0, 1: 1, 2: 2, 3: 100, 4: 101}
"""DEST episode -> the source episode it holds (A's first, then B's, each in index order)."""


def make_robot(root: Path, episodes: range, vcodec: str, file_size_mb: str = "0.006") -> Path:
    write_recording(root, CAMERAS, episodes, FRAMES, 64, 48)
    env = daemon_env(root, ROBOVID_VIDEO_FILE_SIZE_MB=file_size_mb, ROBOVID_VCODEC=vcodec)
    command = [sys.executable, "-m", "robovid_watch.cli", "process", str(root), "--no-progress"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def merge_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "robovid_watch.cli", "merge", *args, "--no-progress"]
    return subprocess.run(command, env=daemon_env(Path(args[0]), **env), capture_output=True, text=True, timeout=600)


def check_merged(dest: Path, expected: dict[int, int], final: bool = True, cameras: tuple[str, ...] = CAMERAS) -> None:
    """Each DEST row holds exactly its source episode's frames, at its recorded timestamps on both backends;
    no DEST frame belongs to two rows; with ``final``, every DEST frame is some row's and no intent is left."""
    rows = read_segments(dest, all_takes=True).to_pylist()
    keys = [(r["video_key"], r["episode_index"], r["take"]) for r in rows]
    assert len(keys) == len(set(keys)), "an episode was committed twice"
    if final:
        assert sorted(keys) == sorted((c, e, 0) for c in cameras for e in expected)
    decoded: dict[Path, list[tuple[int, int]]] = {}
    claimed: dict[Path, set[int]] = defaultdict(set)
    for row in rows:
        path = chunk_path(dest, row["video_key"], row["chunk_index"], row["file_index"])
        decoded.setdefault(path, decoded_indices(path))
        start, count, source = row["first_frame"], row["num_frames"], expected[row["episode_index"]]
        assert decoded[path][start : start + count] == [(source, i) for i in range(FRAMES)], row
        span = set(range(start, start + count))
        assert not claimed[path] & span, f"{row}: overlaps another row (appended twice?)"
        claimed[path] |= span
        stamps = [row["from_timestamp"], row["to_timestamp"] - 1 / row["fps"]]
        for backend in ("pyav", "torchcodec"):
            frames = decode_video_frames(path, stamps, tolerance_s=1e-4, backend=backend)
            images = (frames.numpy() * 255).round().astype("uint8").transpose(0, 2, 3, 1)
            assert [read_index(image) for image in images] == [(source, 0), (source, FRAMES - 1)], (backend, row)
    if final:
        for path in dest.glob("videos/*/chunk-*/file-*.mp4"):
            decoded.setdefault(path, decoded_indices(path))
            assert claimed[path] == set(range(len(decoded[path]))), f"{path}: frames no row accounts for"
        assert not list(merge_dir(dest).glob("intent-*.json")), "an intent was left behind"


def check_lerobot(dest: Path, expected: dict[int, int], task: str) -> None:
    info = json.loads((dest / "meta" / "info.json").read_text())
    assert info["total_episodes"] == len(expected)
    assert info["total_frames"] == len(expected) * FRAMES
    episodes = pq.read_table(next(dest.glob("meta/episodes/*/*.parquet"))).to_pylist()
    assert [e["episode_index"] for e in episodes] == sorted(expected)
    segments = {(r["video_key"], r["episode_index"]): r for r in read_segments(dest).to_pylist()}
    for episode in episodes:
        assert episode["tasks"] == [task] and episode["length"] == FRAMES
        for camera in CAMERAS:
            row = segments[(camera, episode["episode_index"])]
            for name in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
                assert episode[f"videos/{camera}/{name}"] == row[name]
    data = pq.read_table(next(dest.glob("data/*/*.parquet")))
    assert data["episode_index"].to_pylist() == [e for e in sorted(expected) for _ in range(FRAMES)]
    assert pq.read_table(dest / "meta" / "tasks.parquet").to_pylist()[0]["__index_level_0__"] == task


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


# --- LeRobot-recorded roots, made without LeRobot ------------------------------------------------------------

LEROBOT_CAMERAS = ("observation.images.front", "observation.images.wrist")


def make_lerobot_robot(root: Path, burnt: range, task: str, vcodec: str = "h264", state_dim: int = 2) -> Path:
    """A root laid out as LeRobot 0.4.4 records one (data/ rows with observation.state and action, meta/episodes
    with video places and statistics, tasks, stats, info.json; no robovid state), made without LeRobot:
    robovid encodes and exports episodes 0..N-1, then the recorder's columns are added as LeRobot writes them.
    Episode i's frames carry the index ``burnt[i]``; its state is [burnt, frame], its action [frame, burnt]."""
    for episode, burnt_index in enumerate(burnt):
        for seed, camera in enumerate(LEROBOT_CAMERAS):
            folder = root / "images" / camera / f"episode-{episode:06d}"
            write_episode(folder, burnt_index, FRAMES, 64, 48, seed=seed)
    (root / "meta").mkdir()
    (root / "meta" / "info.json").write_text('{"fps": 10}')
    for args in (["process", str(root), "--no-progress"], ["lerobot", str(root), "--task", task]):
        env = daemon_env(root, ROBOVID_VCODEC=vcodec, ROBOVID_VIDEO_FILE_SIZE_MB="0.01")
        done = subprocess.run(
            [sys.executable, "-m", "robovid_watch.cli", *args], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
    data_path = next(root.glob("data/*/*.parquet"))
    data = pq.read_table(data_path)
    schema_metadata = json.loads(data.schema.metadata[b"huggingface"])
    episodes = data["episode_index"].to_numpy()
    frames = data["frame_index"].to_numpy()
    burnt_of = np.array(list(burnt))[episodes]
    state = np.stack([burnt_of, frames, *([np.zeros(len(frames))] * (state_dim - 2))], axis=1).astype(np.float32)
    action = np.stack([frames, burnt_of], axis=1).astype(np.float32)
    columns = {"observation.state": state, "action": action}
    for name, values in columns.items():
        array = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), pa.float32()), values.shape[1])
        data = data.append_column(name, array)
        feature = {"feature": {"dtype": "float32", "_type": "Value"}, "length": values.shape[1], "_type": "Sequence"}
        schema_metadata["info"]["features"][name] = feature
    data = data.replace_schema_metadata({"huggingface": json.dumps(schema_metadata)})
    pq.write_table(data, data_path)
    episodes_path = next(root.glob("meta/episodes/*/*.parquet"))
    rows = pq.read_table(episodes_path).to_pylist()
    for row in rows:
        mine = episodes == row["episode_index"]
        for name, values in columns.items():
            per_dim = [vector_stats(values[mine][:, d].astype(np.float64)) for d in range(values.shape[1])]
            for key in per_dim[0]:
                row[f"stats/{name}/{key}"] = np.concatenate([s[key] for s in per_dim]).tolist()
                if key == "count":
                    row[f"stats/{name}/{key}"] = [int(mine.sum())]
    pq.write_table(pa.Table.from_pylist(rows), episodes_path)
    info = json.loads((root / "meta" / "info.json").read_text())
    for name, values in columns.items():
        info["features"][name] = {"dtype": "float32", "shape": [values.shape[1]], "names": None}
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    shutil.rmtree(state_dir(root))
    shutil.rmtree(root / "images", ignore_errors=True)
    return root


def lerobot_wrong(dest: Path, expected: dict[int, int]) -> tuple[int, int]:
    """Frames and data rows of DEST's LeRobot files that are not their source episode's, read as LeRobot does:
    each frame decoded at its episode's from_timestamp + frame_index / fps (1e-4 s tolerance), each data row
    checked against [burnt episode, frame] (state) and [frame, burnt episode] (action). ``expected``: DEST
    episode -> the episode index burnt into its source frames."""
    info = json.loads((dest / "meta" / "info.json").read_text())
    fps = info["fps"]
    episodes = pq.read_table(next(dest.glob("meta/episodes/*/*.parquet"))).to_pylist()
    assert [e["episode_index"] for e in episodes] == list(range(info["total_episodes"]))
    data = pq.read_table(sorted(dest.glob("data/*/*.parquet"))).to_pylist()
    assert [r["index"] for r in data] == list(range(info["total_frames"]))
    wrong_frames = wrong_rows = 0
    for episode in episodes:
        burnt = expected[episode["episode_index"]]
        rows = data[episode["dataset_from_index"] : episode["dataset_to_index"]]
        for row in rows:
            assert row["episode_index"] == episode["episode_index"]
            state = [round(v) for v in row["observation.state"][:2]]
            wrong_rows += state != [burnt, row["frame_index"]] or row["action"] != [row["frame_index"], burnt]
        for camera in LEROBOT_CAMERAS:
            path = dest / info["video_path"].format(
                video_key=camera,
                chunk_index=episode[f"videos/{camera}/chunk_index"],
                file_index=episode[f"videos/{camera}/file_index"],
            )
            stamps = [episode[f"videos/{camera}/from_timestamp"] + i / fps for i in range(episode["length"])]
            frames = decode_video_frames(path, stamps, tolerance_s=1e-4, backend="pyav")
            images = (frames.numpy() * 255).round().astype("uint8").transpose(0, 2, 3, 1)
            wrong_frames += sum(read_index(image) != (burnt, i) for i, image in enumerate(images))
    return wrong_frames, wrong_rows
