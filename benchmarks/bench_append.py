"""Cost of growing a chunk file one episode at a time: robovid's in-place append against rewriting it.

Real 300-frame 640x480 AV1 episodes (3 distinct ones, encoded once by robovid, used in
turn) are appended 100 times to one chunk with ``robovid.append_video``. Append ``n`` is
the n-th call on a fresh chunk (``n = 1`` creates it). For each call: wall and CPU
seconds, ``VideoSegment.bytes_written``, and this process's ``/proc/self/io`` deltas
(``wchar``: bytes passed to ``write()``; ``write_bytes``: bytes dirtied for storage, in
pages) as a cross-check. fsync is part of the cost and stays in. These calls are what a
running daemon does: each starts from the movie box the previous one left in memory.

At appends 1, 10, 50 and 100, the same append on a copy of the chunk ("cold": the first
call of a process on that file, which must find and parse the live movie box).

Next to it, at appends 1, 10, 50 and 100 (the chunk then holding n - 1 episodes), the
naive way the reference grows a chunk: write a new file holding chunk + episode, then
replace the chunk with it. Two versions:

- ``rewrite (robovid concat)``: ``robovid.concatenate_video_files([chunk, episode], new)``
  (stream copy, fsync, atomic rename), then ``os.replace(new, chunk)``;
- ``rewrite (PyAV remux, reference)``: the reference's ``concatenate_video_files``: an
  ffconcat list read by FFmpeg's concat demuxer, every packet remuxed by PyAV into a new
  MP4 with ``movflags=faststart``, then fsync and rename (added: the reference had none).

    .venv/bin/python -m benchmarks.bench_append           # 3 repeats of 100 appends
    .venv/bin/python -m benchmarks.bench_append --quick   # 1 repeat of 12 appends
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks import _common as c
from robovid.compact import chunk_space, compact_chunk
from robovid.durable import fsync_dir, fsync_file

NAME = "bench_append"
POINTS = (1, 10, 50, 100)
WINDOW = 5
"""Calls n .. n+4 (the last five for the last point) give the windowed median for point n."""


def io_counters() -> dict[str, int]:
    """This process's I/O counters from ``/proc/self/io``."""
    text = Path("/proc/self/io").read_text()
    return {key: int(value) for key, value in re.findall(r"^(\w+): (\d+)$", text, re.MULTILINE)}


def measured(fn: Any) -> tuple[dict[str, float], Any]:
    """Wall, CPU and I/O deltas of ``fn()``."""
    before = io_counters()
    wall, cpu, result = c.timed(fn)
    after = io_counters()
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "wchar": after["wchar"] - before["wchar"],
        "write_bytes": after["write_bytes"] - before["write_bytes"],
    }, result


def rewrite_robovid(chunk: Path, episode: Path) -> None:
    """Naive growth with robovid's own (atomic, fsynced) concat: the whole chunk is written again."""
    from robovid.concat import concatenate_video_files

    new = chunk.with_name(chunk.stem + ".new.mp4")
    concatenate_video_files([chunk, episode] if chunk.exists() else [episode], new)
    os.replace(new, chunk)
    fsync_dir(chunk.parent)


def rewrite_pyav(chunk: Path, episode: Path) -> None:
    """The reference's concat: ffconcat list + PyAV remux with faststart, then (durably) replace the chunk."""
    import av

    inputs = [chunk, episode] if chunk.exists() else [episode]
    listing = chunk.with_name(chunk.stem + ".ffconcat")
    listing.write_text("ffconcat version 1.0\n" + "".join(f"file '{p.resolve()}'\n" for p in inputs))
    temp = chunk.with_name(chunk.stem + ".tmp.mp4")
    with (
        av.open(str(listing), "r", format="concat", options={"safe": "0"}) as source,
        av.open(str(temp), "w", format="mp4", options={"movflags": "faststart"}) as output,
    ):
        streams = {}
        for stream in source.streams.video:
            streams[stream.index] = output.add_stream_from_template(template=stream, opaque=True)
            streams[stream.index].time_base = stream.time_base
        for packet in source.demux():
            if packet.stream.index not in streams or packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            output.mux(packet)
    fsync_file(temp)
    os.replace(temp, chunk)
    fsync_dir(chunk.parent)
    listing.unlink()


def append_cold(chunk: Path, episode: Path) -> None:
    """robovid's append on a chunk this process never appended to (a copy): the movie is found and parsed."""
    from robovid.append import append_video

    append_video(chunk, episode)


NAIVE = {"robovid_cold": append_cold, "rewrite_concat": rewrite_robovid, "rewrite_pyav": rewrite_pyav}
LABELS = {
    "robovid": "robovid append_video (in place)",
    "robovid_cold": "robovid append_video, first call of a process on that chunk",
    "rewrite_concat": "rewrite (robovid concat + replace)",
    "rewrite_pyav": "rewrite (PyAV remux + faststart, reference)",
}


def naive_at(chunk: Path, episode: Path, work: Path, key: str) -> dict[str, Any]:
    """One naive growth of a copy of ``chunk`` (taken and fsynced untimed) by ``episode``."""
    from robovid.append import count_frames

    state = work / f"{key}.mp4"
    state.unlink(missing_ok=True)
    if chunk.exists():
        shutil.copyfile(chunk, state)
        fsync_file(state)
    frames_before = count_frames(state) if state.exists() else 0
    result, _ = measured(lambda: NAIVE[key](state, episode))
    result["bytes_out"] = state.stat().st_size
    frames_after = count_frames(state)
    if frames_after != frames_before + count_frames(episode):
        raise RuntimeError(f"{key}: {frames_after} frames after growing a {frames_before}-frame chunk")
    state.unlink()
    return result


def run_sequence(videos: list[Path], work: Path, appends: int, points: tuple[int, ...]) -> dict[str, Any]:
    """One fresh chunk grown by ``appends`` calls; the naive ways measured at ``points``."""
    from robovid.append import append_video

    chunk = work / "chunk.mp4"
    chunk.unlink(missing_ok=True)
    calls, naive = [], {}
    for n in range(1, appends + 1):
        episode = videos[(n - 1) % len(videos)]
        snapshot = work / "snapshot.mp4"
        if n in points and chunk.exists():  # the chunk before call n, for the comparisons, synced untimed
            shutil.copyfile(chunk, snapshot)
            fsync_file(snapshot)
        result, segment = measured(lambda episode=episode: append_video(chunk, episode))
        if n in points:  # after call n, so their writeback does not land in its fsyncs
            naive[n] = {key: naive_at(snapshot, episode, work, key) for key in NAIVE}
            snapshot.unlink(missing_ok=True)
        if segment.num_frames != c.EPISODE_FRAMES or segment.first_frame != (n - 1) * c.EPISODE_FRAMES:
            raise RuntimeError(f"append {n} landed at frames {segment.first_frame}+{segment.num_frames}")
        result |= {"n": n, "bytes_written": segment.bytes_written, "episode_bytes": episode.stat().st_size}
        result["chunk_bytes"] = chunk.stat().st_size
        calls.append(result)
    space = chunk_space(chunk)
    compaction, _ = measured(lambda: compact_chunk(chunk))
    compaction |= {"file_bytes_before": space.file_bytes, "dead_bytes": space.dead_bytes}
    compaction["file_bytes_after"] = chunk.stat().st_size
    chunk.unlink()
    return {"load_avg": c.load_avg(), "calls": calls, "naive": naive, "compaction": compaction}


def window(n: int, appends: int) -> range:
    start = min(n, appends - WINDOW + 1)
    return range(max(1, start), min(appends, start + WINDOW - 1) + 1)


def summarize(runs: list[dict[str, Any]], appends: int, points: tuple[int, ...]) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for n in points:
        exact = [run["calls"][n - 1] for run in runs]
        windowed = [run["calls"][i - 1] for run in runs for i in window(n, appends)]
        row: dict[str, Any] = {
            "robovid_wall_s": c.median([r["wall_s"] for r in exact]),
            "robovid_wall_s_window": c.median([r["wall_s"] for r in windowed]),
            "robovid_cpu_s": c.median([r["cpu_s"] for r in exact]),
            "robovid_cpu_s_window": c.median([r["cpu_s"] for r in windowed]),
            "robovid_bytes_written": c.median([r["bytes_written"] for r in exact]),
            "robovid_wchar": c.median([r["wchar"] for r in exact]),
            "robovid_write_bytes": c.median([r["write_bytes"] for r in exact]),
            "episode_bytes": c.median([r["episode_bytes"] for r in exact]),
            "chunk_bytes_after": c.median([r["chunk_bytes"] for r in exact]),
        }
        for key in NAIVE:
            naive = [run["naive"][n][key] for run in runs if n in run["naive"]]
            if naive:
                for field in ("wall_s", "cpu_s", "wchar", "write_bytes", "bytes_out"):
                    row[f"{key}_{field}"] = c.median([r[field] for r in naive])
        rows[str(n)] = row
    all_calls = [call for run in runs for call in run["calls"]]
    first, fifty = rows[str(points[0])], rows[str(points[min(2, len(points) - 1)])]
    per_append = [call["bytes_written"] / call["episode_bytes"] for call in all_calls]
    mismatch = [call["n"] for call in all_calls if call["wchar"] != call["bytes_written"]]
    sizes = [call["chunk_bytes"] for call in runs[0]["calls"]]
    ratios = {
        "append50_over_append1_window": fifty["robovid_wall_s_window"] / first["robovid_wall_s_window"],
        "append50_over_append1_exact": fifty["robovid_wall_s"] / first["robovid_wall_s"],
        "append50_over_append1_cpu_window": fifty["robovid_cpu_s_window"] / first["robovid_cpu_s_window"],
        "append50_cold_over_append1_window": fifty["robovid_cold_wall_s"] / first["robovid_wall_s_window"],
        "append100_over_append1_cpu_window": rows[str(points[-1])]["robovid_cpu_s_window"]
        / first["robovid_cpu_s_window"],
        "max_bytes_written_over_episode": max(per_append),
        "median_bytes_written_over_episode": c.median(per_append),
        "calls_where_wchar_differs_from_bytes_written": mismatch,
        "total_bytes_written_robovid": sum(call["bytes_written"] for call in runs[0]["calls"]),
        "total_bytes_written_rewrite_derived": sum(sizes),
        "total_episode_bytes": sum(call["episode_bytes"] for call in runs[0]["calls"]),
        "dead_share_at_end": c.median(
            [r["compaction"]["dead_bytes"] / r["compaction"]["file_bytes_before"] for r in runs]
        ),
        "compaction_s_at_end": c.median([r["compaction"]["wall_s"] for r in runs]),
        "compaction_wchar_over_file": c.median(
            [r["compaction"]["wchar"] / r["compaction"]["file_bytes_after"] for r in runs]
        ),
        "compaction_over_rewrite_concat_at_last_point": c.median([r["compaction"]["wall_s"] for r in runs])
        / rows[str(points[-1])].get("rewrite_concat_wall_s", float("nan")),
    }
    for key in NAIVE:
        if f"{key}_wall_s" in fifty:
            ratios[f"{key}_wall_over_robovid_at_{points[-1]}"] = (
                rows[str(points[-1])][f"{key}_wall_s"] / rows[str(points[-1])]["robovid_wall_s_window"]
            )
    targets = [
        c.target("append 50 / append 1 wall (windowed medians) <= 1.3", ratios["append50_over_append1_window"], 1.3),
        c.target("bytes written per append / episode size <= 2 (max)", ratios["max_bytes_written_over_episode"], 2.0),
    ]
    return {"points": rows, "ratios": ratios, "targets": targets}


def print_summary(p: dict[str, Any]) -> None:
    rows = []
    for n, row in p["points"].items():
        ep = row["episode_bytes"]
        rows.append(
            [
                n,
                row["robovid_wall_s"] * 1000,
                row["robovid_wall_s_window"] * 1000,
                row["robovid_cpu_s_window"] * 1000,
                row.get("robovid_cold_wall_s", float("nan")) * 1000,
                row["robovid_bytes_written"] / 1e6,
                row["robovid_bytes_written"] / ep,
                row["robovid_write_bytes"] / 1e6,
                row["chunk_bytes_after"] / 1e6,
                row.get("rewrite_concat_wall_s", float("nan")) * 1000,
                row.get("rewrite_concat_wchar", float("nan")) / 1e6,
                row.get("rewrite_pyav_wall_s", float("nan")) * 1000,
                row.get("rewrite_pyav_wchar", float("nan")) / 1e6,
            ]
        )
    headers = ["append n", "robovid ms", "robovid ms (window)", "robovid CPU ms (window)", "cold ms"]
    headers += ["robovid MB written"]
    headers += ["x episode"]
    headers += ["write_bytes MB", "chunk MB after", "rewrite concat ms", "its MB written"]
    headers += ["rewrite PyAV ms", "its MB written"]
    print()
    print(c.table(headers, rows))
    print(
        f"\nmedians over {p['repeats']} repeats of {p['appends']} appends; window = calls n..n+4 across repeats; "
        f"load {p['machine']['load_avg_start']} -> {p['load_avg_end']}"
    )
    c.print_targets(p["targets"])
    c.print_ratios(p["ratios"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--appends", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 12 appends")
    a = parser.parse_args(argv)
    points = POINTS
    if a.quick:
        a.repeats, a.appends, points = 1, 12, (1, 5, 10, 12)
    info = c.machine_info()
    c.print_header("bench_append: 300-frame 640x480 AV1 episodes appended to one chunk", info)
    videos = c.episode_videos(3)
    work = c.OUT_DIR / "append"
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    for repeat in range(a.repeats):
        print(f"repeat {repeat + 1}/{a.repeats}: {a.appends} appends", flush=True)
        started = time.perf_counter()
        runs.append(run_sequence(videos, work, a.appends, points))
        print(f"  {time.perf_counter() - started:.1f} s", flush=True)
    payload = {
        "benchmark": NAME,
        "machine": info,
        "load_avg_end": c.load_avg(),
        "filesystem": _filesystem(work),
        "episodes": [str(v) for v in videos],
        "repeats": a.repeats,
        "appends": a.appends,
        "runs": runs,
        **summarize(runs, a.appends, points),
    }
    print_summary(payload)
    print(f"\nwrote {c.write_json(NAME, payload)}")
    return payload


def _filesystem(path: Path) -> str:
    """The mount (device, type, options) holding ``path``: fsync cost depends on it."""
    best = ""
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount, fstype, options = line.split()[:4]
        if str(path.resolve()).startswith(mount) and len(mount) >= len(best.split(" ")[1] if best else ""):
            best = f"{device} {mount} {fstype} {options}"
    return best


if __name__ == "__main__":
    main()
