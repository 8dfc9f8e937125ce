"""Power loss while streaming: every frame the encoder counts durable is fsynced, on a real recorder's syscalls.

A test cannot cut the power, but it can check that every byte the contract promises is fsynced
(tests/stream_trace.py has the rules, tests/syscall_trace.py the model and what it does not
prove). A recorder process streams one episode with ``StreamingVideoEncoder(handoff=True)`` under
strace, through each state a frame can be in: in the crash log, in a published segment (its log
deleted), spilled to a PNG (encoder held at its test hook, queue full; a log of spilled frames
deleted once they are PNGs). After each frame it waits until ``durable_frames`` counts it (an
observable outcome, no timing) and writes a marker; after ``finish_episode`` another.

That the checker catches a breach is shown by the same recorder with ``power_safe=False`` that
claims each frame durable anyway: its log is never synced, so the rules must flag it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from stream_trace import check_stream_durability
from syscall_trace import Trace, format_violations, strace_argv, strace_unusable

from robovid.layout import episode_dir, stream_dir
from robovid.stream_files import TRAILER

WIDTH, HEIGHT, SEGMENT, QUEUE, FRAMES = 64, 48, 4, 3, 22

RECORDER = r"""
import os, sys, time
from pathlib import Path
from robovid import RGBEncoderConfig, StreamingVideoEncoder
from robovid.layout import stream_dir
from robovid.synthetic import render_frame, scene

root, markers, points, mode = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
W, H, K, Q, N = 64, 48, 4, 3, 22
POINT = "stream:before-encode"
claim = mode == "claim"  # power_safe off, and each frame claimed durable anyway
background = scene(W, H, 0)
frames = [render_frame(background, W, H, 0, i) for i in range(N)]
encoder = StreamingVideoEncoder(
    fps=30, rgb_encoder=RGBEncoderConfig(vcodec="h264", crf=22, preset="veryfast"), queue_maxsize=Q,
    handoff=True, segment_frames=K, power_safe=not claim,
)
encoder.start_episode(["cam"], root, episode_index=0)
folder = stream_dir(root, "cam", 0)
marks = os.open(markers, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

def passes():
    try:
        return (points / f"{POINT}.passed").stat().st_size
    except FileNotFoundError:
        return 0

def wait(condition):
    deadline = time.monotonic() + 120
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("recorder: timed out")
        time.sleep(0.005)

def feed(i):
    encoder.feed_frame("cam", frames[i])
    if not claim:
        wait(lambda: encoder.durable_frames["cam"] > i)
    durable = i + 1 if claim else encoder.durable_frames["cam"]
    os.write(marks, f"fed {i} durable {durable}".encode())

for i in range(9):  # each taken by the encoder before the next: segments 0 and 1 are published
    feed(i)
    wait(lambda: passes() > i)
wait(lambda: (folder / "seg-000001.mp4").exists())
(points / f"{POINT}.hold").touch()
feed(9)
wait(lambda: passes() >= 10)
for i in range(10, N):  # 10-12 fill the queue, 13-21 spill to PNGs
    feed(i)
wait(lambda: not (folder / "raw-000004.rgb").exists())  # frames 16-19 are PNGs: their log is gone
(points / f"{POINT}.hold").unlink()
encoder.finish_episode()
os.write(marks, f"finished {N}".encode())
"""


def traced_recorder(base: Path, mode: str) -> tuple[Trace, Path]:
    reason = strace_unusable()
    if reason is not None:
        if os.environ.get("ROBOVID_REQUIRE_SYSTEM_TOOLS") == "1":
            pytest.fail(f"ROBOVID_REQUIRE_SYSTEM_TOOLS=1 but {reason}")
        pytest.skip(reason)
    root, points, markers = base / "root", base / "points", base / "markers"
    root.mkdir()
    points.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOVID_")}
    env |= {"ROBOVID_TEST_POINTS": str(points), "PYTHONDONTWRITEBYTECODE": "1"}
    command = strace_argv(
        base / "strace.log", [sys.executable, "-c", RECORDER, str(root), str(markers), str(points), mode]
    )
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return Trace.from_file(base / "strace.log", root), root


def check(trace: Trace, root: Path, base: Path) -> tuple[list[object], int]:
    return check_stream_durability(
        trace,
        stream_dir(root, "cam", 0),
        episode_dir(root, "cam", 0),
        base / "markers",
        SEGMENT,
        WIDTH * HEIGHT * 3 + TRAILER.size,
    )


def test_every_frame_counted_durable_is_fsynced_in_the_log_a_segment_or_a_png(tmp_path: Path) -> None:
    base = tmp_path.resolve()
    trace, root = traced_recorder(base, "power_safe")
    violations, checked = check(trace, root, base)
    assert not violations, format_violations(violations)  # type: ignore[arg-type]
    assert checked == sum(range(1, FRAMES + 1)) + FRAMES  # every marker counted every frame before it
    fsynced_logs = {op.path for op in trace.of_kind("fsync") if "/raw-" in op.path}
    assert len(fsynced_logs) >= 3, fsynced_logs  # the logs of segments 2-5 at least were synced, not only deleted


def test_the_checker_flags_frames_claimed_durable_without_power_safe(tmp_path: Path) -> None:
    base = tmp_path.resolve()
    trace, root = traced_recorder(base, "claim")
    violations, _ = check(trace, root, base)
    messages = [v.message for v in violations]  # type: ignore[attr-defined]
    assert any("not fsynced" in m for m in messages), messages
    assert any("unsynced" in m or "not fsynced after" in m for m in messages), messages  # the spilled PNGs
