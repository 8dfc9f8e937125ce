"""LeRobot's side of the real round trip, run by a LeRobot 0.4.x python (ROBOVID_LEROBOT_PYTHON).

Not a test module: tests/test_lerobot_real.py runs it as a subprocess with robovid's source on
PYTHONPATH (robovid.synthetic draws the frames and reads their burnt-in index). Each command
prints one JSON object per line on stdout and exits non-zero if a LeRobot call raised.

    record ROOT --cameras a,b --episodes 3 --frames 20 --fps 10 --size 160x120 --reset-s 1.5 [--retake 1]
           [--encode] [--robot 100] [--task T]
                                   --encode: LeRobot encodes the video itself (save_episode), as lerobot-record
                                   does; --robot: burnt episode = robot + episode, in frames and state/action
    load ROOT                      every frame through a 2-worker DataLoader, then plain indexing and
                                   delta_timestamps; prints counts of frames checked and wrong, and of
                                   observation.state/action rows (when the dataset has them) checked and wrong
    stats PNG...                   LeRobot's compute_episode_stats for a camera feature over these PNGs
    aggregate-stats JSON...        LeRobot's aggregate_stats over these meta/stats.json files
    upload-list ROOT               the files LeRobotDataset.push_to_hub would upload from ROOT
    imports                        import robovid and LeRobot in both orders (each in a fresh process)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ID = "robovid/roundtrip"
NO_ENCODING = 1 << 30
"""batch_encoding_size larger than any recording: LeRobot keeps the PNGs and never encodes them itself."""


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def record(args: argparse.Namespace) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robovid.synthetic import render_frame, scene

    width, height = (int(v) for v in args.size.split("x"))
    cameras = args.cameras.split(",")
    features = {
        f"observation.images.{camera}": {
            "dtype": "video",
            "shape": (height, width, 3),
            "names": ["height", "width", "channels"],
        }
        for camera in cameras
    }
    features["observation.state"] = {"dtype": "float32", "shape": (2,), "names": ["x", "y"]}
    features["action"] = {"dtype": "float32", "shape": (2,), "names": ["x", "y"]}
    dataset = LeRobotDataset.create(
        REPO_ID,
        fps=args.fps,
        features=features,
        root=args.root,
        use_videos=True,
        batch_encoding_size=1 if args.encode else NO_ENCODING,
        image_writer_threads=2,
    )
    emit(event="created", root=str(args.root))
    backgrounds = {camera: scene(width, height, seed=i) for i, camera in enumerate(cameras)}

    def take(episode: int, frames: int) -> None:
        burnt = args.robot + episode
        for i in range(frames):
            frame = {f"observation.images.{c}": render_frame(backgrounds[c], width, height, burnt, i) for c in cameras}
            frame["observation.state"] = np.array([burnt, i], dtype=np.float32)
            frame["action"] = np.array([i, burnt], dtype=np.float32)
            frame["task"] = args.task or "stack the blocks"
            dataset.add_frame(frame)

    for episode in range(args.episodes):
        if episode == args.retake:  # a take thrown away (lerobot-record's "re-record"): it leaves longer PNGs
            take(episode, args.frames + 5)
            dataset._wait_image_writer()
            dataset.clear_episode_buffer()
            emit(event="discarded", episode=episode, frames=args.frames + 5)
        take(episode, args.frames)
        dataset._wait_image_writer()
        emit(event="recorded", episode=episode)
        time.sleep(args.reset_s)  # lerobot-record's reset phase: the PNGs wait, unsaved
        dataset.save_episode()
        row = {
            k: np.asarray(v[0] if isinstance(v, list) else v).tolist() for k, v in dataset.meta.latest_episode.items()
        }
        emit(event="saved", episode=episode, row=row)
    dataset.stop_image_writer()
    dataset.finalize()
    emit(event="finalized", info=json.loads(json.dumps(dataset.meta.info, default=list)))


def load(args: argparse.Namespace) -> None:
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robovid.synthetic import read_index

    burnt = {int(k): v for k, v in json.loads(args.episode_map).items()}
    """The dataset's episode -> the episode index burnt into its frames (a merged root renumbered them)."""

    def wrong(images: torch.Tensor, episodes: torch.Tensor, frames: torch.Tensor) -> int:
        count = 0
        for image, episode, frame in zip(images, episodes, frames, strict=True):
            rgb = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            try:
                count += read_index(rgb) != (burnt.get(int(episode), int(episode)), int(frame))
            except ValueError:
                count += 1
        return count

    def wrong_rows(item: dict[str, torch.Tensor]) -> int:
        """Rows whose observation.state / action are not [burnt episode, frame] / [frame, burnt episode]."""
        episode, frame = int(item["episode_index"]), int(item["frame_index"])
        burnt_episode = burnt.get(episode, episode)
        state, action = item["observation.state"].tolist(), item["action"].tolist()
        return int(state != [burnt_episode, frame] or action != [frame, burnt_episode])

    dataset = LeRobotDataset(REPO_ID, root=args.root)
    keys = dataset.meta.video_keys
    checked = bad = 0
    # LeRobot's note: a DataLoader's workers must not inherit decoders opened in the main process.
    for batch in torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2):
        for key in keys:
            checked += len(batch[key])
            bad += wrong(batch[key], batch["episode_index"], batch["frame_index"])
    emit(event="dataloader", workers=2, frames=checked, wrong=bad, episodes=dataset.num_episodes)
    checked = bad = rows = rows_bad = 0
    tasks: dict[int, str] = {}
    has_rows = "observation.state" in dataset.features and "action" in dataset.features
    for index in range(len(dataset)):
        item = dataset[index]
        tasks.setdefault(int(item["episode_index"]), item["task"])
        if has_rows:
            rows += 1
            rows_bad += wrong_rows(item)
        for key in keys:
            checked += 1
            bad += wrong(item[key][None], item["episode_index"][None], item["frame_index"][None])
    emit(event="indexing", backend=dataset.video_backend, frames=checked, wrong=bad, tasks=tasks)
    emit(event="data_rows", rows=rows, wrong=rows_bad, total_frames=dataset.meta.total_frames)
    deltas = [-2 / dataset.fps, -1 / dataset.fps, 0.0]
    with_deltas = LeRobotDataset(REPO_ID, root=args.root, delta_timestamps=dict.fromkeys(keys, deltas))
    checked = bad = 0
    for index in range(len(with_deltas)):
        item = with_deltas[index]
        episode, frame = int(item["episode_index"]), int(item["frame_index"])
        expected = torch.tensor([max(0, frame + round(d * dataset.fps)) for d in deltas])
        for key in keys:
            checked += len(deltas)
            bad += wrong(item[key], torch.full((len(deltas),), episode), expected)
    emit(event="delta_timestamps", deltas=deltas, frames=checked, wrong=bad)


def stats(args: argparse.Namespace) -> None:
    from lerobot.datasets.compute_stats import compute_episode_stats

    features = {"camera": {"dtype": "video", "shape": (1, 1, 3), "names": None}}
    result = compute_episode_stats({"camera": [str(p) for p in args.pngs]}, features)
    emit(event="stats", stats={k: np.asarray(v).tolist() for k, v in result["camera"].items()})


def aggregate(args: argparse.Namespace) -> None:
    from lerobot.datasets.compute_stats import aggregate_stats

    parts = [
        {f: {k: np.array(v) for k, v in s.items()} for f, s in json.loads(path.read_text()).items()}
        for path in args.paths
    ]
    result = aggregate_stats(parts)
    emit(event="aggregate", stats={f: {k: np.asarray(v).tolist() for k, v in s.items()} for f, s in result.items()})


def upload_list(args: argparse.Namespace) -> None:
    """The files LeRobotDataset.push_to_hub would upload: upload_folder's own listing, without the network.

    push_to_hub calls ``HfApi().upload_folder(folder_path=root, ignore_patterns=["images/"])`` (plus
    ``"videos/"`` without push_videos); upload_folder adds huggingface_hub's DEFAULT_IGNORE_PATTERNS and
    lists the files with ``_prepare_upload_folder_additions``, called here with the same arguments.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS

    operations = HfApi()._prepare_upload_folder_additions(
        args.root, "", allow_patterns=None, ignore_patterns=["images/", *DEFAULT_IGNORE_PATTERNS], repo_type="dataset"
    )
    emit(event="upload_list", files=sorted(op.path_in_repo for op in operations))


def imports(_args: argparse.Namespace) -> None:
    orders = {
        "lerobot_first": "import lerobot.datasets.video_utils, robovid; robovid.VideoFrame",
        "robovid_first": "import robovid; import lerobot.datasets.video_utils; robovid.VideoFrame",
    }
    for name, code in orders.items():
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        emit(event="imports", order=name, returncode=done.returncode, stderr=done.stderr[-2000:])


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(required=True)
    rec = commands.add_parser("record")
    rec.add_argument("root", type=Path)
    rec.add_argument("--cameras", default="front,wrist")
    rec.add_argument("--episodes", type=int, default=3)
    rec.add_argument("--frames", type=int, default=20)
    rec.add_argument("--fps", type=int, default=10)
    rec.add_argument("--size", default="160x120")
    rec.add_argument("--reset-s", type=float, default=1.0)
    rec.add_argument("--retake", type=int, default=-1)
    rec.add_argument("--encode", action="store_true", help="LeRobot encodes each episode at save_episode")
    rec.add_argument("--robot", type=int, default=0, help="added to the episode index burnt into frames and state")
    rec.add_argument("--task", default="")
    rec.set_defaults(func=record)
    ld = commands.add_parser("load")
    ld.add_argument("root", type=Path)
    ld.add_argument("--episode-map", default="{}", help="JSON: dataset episode -> the episode burnt into its frames")
    ld.set_defaults(func=load)
    st = commands.add_parser("stats")
    st.add_argument("pngs", type=Path, nargs="+")
    st.set_defaults(func=stats)
    ag = commands.add_parser("aggregate-stats")
    ag.add_argument("paths", type=Path, nargs="+")
    ag.set_defaults(func=aggregate)
    up = commands.add_parser("upload-list")
    up.add_argument("root", type=Path)
    up.set_defaults(func=upload_list)
    imp = commands.add_parser("imports")
    imp.set_defaults(func=imports)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
