"""What every benchmark shares: machine facts, measured subprocesses, cached media, tables, JSON.

Only the standard library is imported at module level: the encode workers import this
module in a fresh process, and their peak RSS must hold only what they themselves load.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "benchmarks" / "out"
CACHE_DIR = OUT_DIR / "cache"
FPS = 30
WIDTH, HEIGHT = 640, 480
EPISODE_FRAMES = 300
_PACKAGES = ("av", "numpy", "pillow", "imagecodecs", "pyspng", "pyarrow", "psutil", "torch", "torchcodec", "robovid")


# ---------------------------------------------------------------- machine and run facts


def load_avg() -> list[float]:
    """The 1, 5 and 15 minute load averages (other people's work on the same cores shows here)."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    """Date, CPU, cores, memory, load and the versions of everything a benchmark depends on."""
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "mem_total_mb": _mem_total_mb(),
        "load_avg_start": load_avg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "svtav1_pyav": _bundled_lib_version("libSvtAv1Enc"),
        "svtav1_system": _system_lib_version("libSvtAv1Enc"),
        "x264_pyav": _bundled_lib_version("libx264"),
        "x265_pyav": _bundled_lib_version("libx265"),
        "ffmpeg_cli": _ffmpeg_version(),
        "git": _git_state(),
        "euid": os.geteuid(),
        "scheduling": realtime_note(),
    }


def _cpu_model() -> str:
    text = Path("/proc/cpuinfo").read_text()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor()


def _mem_total_mb() -> int:
    match = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    return int(match.group(1)) // 1024 if match else 0


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _bundled_lib_version(stem: str) -> str | None:
    """Version of a library bundled in PyAV's wheel, from its file name (``libSvtAv1Enc-<hash>.so.4.1.0``)."""
    try:
        dist = metadata.distribution("av")
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        name = Path(str(file)).name
        if name.startswith(stem + "-") and ".so." in name:
            return name.split(".so.", 1)[1]
    return None


def _system_lib_version(stem: str) -> str | None:
    """Version of a system shared library, from the real file name its soname links to."""
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in listing.splitlines():
        if line.strip().startswith(stem + ".so"):
            real = Path(line.rsplit("=>", 1)[1].strip()).resolve()
            return real.name.split(".so.", 1)[1] if ".so." in real.name else real.name
    return None


def _ffmpeg_version() -> str | None:
    if shutil.which("ffmpeg") is None:
        return None
    out = subprocess.run(["ffmpeg", "-hide_banner", "-version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else None


def _git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty_files": len(git("status", "--porcelain").splitlines()),
    }


# ---------------------------------------------------------------- measuring


def cpu_s() -> float:
    """CPU seconds (user + system) of this whole process, all threads (``CLOCK_PROCESS_CPUTIME_ID``)."""
    return time.process_time()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (``VmHWM``), in MB."""
    match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def rss_mb() -> float:
    """Current resident set size of this process (``VmRSS``), in MB."""
    match = re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Measured:
    """One child process, measured by the parent through ``wait4`` (its own rusage, nobody else's)."""

    returncode: int
    wall_s: float
    cpu_s: float
    """User + system CPU seconds of the child and all its threads."""
    peak_rss_mb: float
    """The child's ``ru_maxrss``."""
    stdout: str
    stderr: str


REALTIME = {"allowed": False}
"""Whether measured children may use real-time scheduling (``--allow-realtime``); see :func:`no_realtime_prefix`."""


def no_realtime_prefix() -> list[str]:
    """An argv prefix that runs a child without ``CAP_SYS_NICE`` when we are root (empty otherwise).

    SVT-AV1 gives its worker threads ``SCHED_FIFO`` when it may (measured here as root:
    ``policy 1, prio 0`` in ``/proc/<tid>/sched``). Real-time encoder threads on a 2-core
    machine starve every normal thread, robovid's PNG reader thread included (a 1 ms
    ``sleep`` in another thread of the process took 18-130 ms while encoding), and take
    the cores from everything else running. The service runs as a normal user with
    ``RestrictRealtime=yes`` (systemd/robovid-watch.service), where SVT-AV1 cannot do
    that, so by default the benchmarks measure it that way too.
    """
    if REALTIME["allowed"] or os.geteuid() != 0 or shutil.which("setpriv") is None:
        return []
    return ["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice", "--"]


def realtime_note() -> str:
    if os.geteuid() != 0:
        return "not root: encoder threads cannot get real-time scheduling"
    if REALTIME["allowed"]:
        return "root with CAP_SYS_NICE: SVT-AV1 threads may run SCHED_FIFO (--allow-realtime)"
    return "root, children run without CAP_SYS_NICE (setpriv), as under the systemd unit"


def run_measured(argv: Sequence[str], timeout_s: float = 1800) -> Measured:
    """Run ``argv`` (no shell, in the repository) and measure exactly that process.

    It is started by ``_launch.py`` (see there why the peak RSS needs a small launcher)
    under :func:`no_realtime_prefix` (``setpriv`` execs the command in the same process).
    """
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r", suffix=".json") as usage,
    ):
        launcher = [sys.executable, "-I", "-S", str(REPO / "benchmarks" / "_launch.py"), usage.name]
        proc = subprocess.Popen(
            [*launcher, *no_realtime_prefix(), *argv],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "SVT_LOG": "3"},  # SVT-AV1's info lines say which preset it really used
            cwd=REPO,
            start_new_session=True,
        )
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the launcher's own session: it and the command only
            proc.wait()
            raise RuntimeError(f"{list(argv)} took more than {timeout_s} s") from None
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"launcher failed for {list(argv)}: {err.read()[-2000:]}")
        measured = json.loads(usage.read())
        return Measured(stdout=out.read(), stderr=err.read(), **measured)


def run_worker(module: str, args: Sequence[str], timeout_s: float = 1800) -> dict[str, Any]:
    """Run ``python -m module --worker ARGS`` in a fresh process; return its JSON report plus its rusage."""
    measured = run_measured([sys.executable, "-m", module, "--worker", *args], timeout_s)
    if measured.returncode != 0:
        raise RuntimeError(f"worker {module} {list(args)} failed ({measured.returncode}):\n{measured.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(measured.stdout.strip().splitlines()[-1])
    report["process"] = {
        "wall_s": measured.wall_s,
        "cpu_s": measured.cpu_s,
        "peak_rss_mb": measured.peak_rss_mb,
    }
    report["svt_log"] = svt_log_lines(measured.stderr)
    return report


def worker_report(**fields: Any) -> None:
    """Print a worker's result as one JSON line (the parent reads the last line of stdout)."""
    fields["worker_peak_rss_mb"] = peak_rss_mb()
    fields["torch_imported"] = "torch" in sys.modules
    print(json.dumps(fields), flush=True)


def svt_log_lines(stderr: str) -> list[str]:
    """SVT-AV1's own log lines about the version and preset (it prints them to stderr)."""
    keep = ("SVT [version]", "mapped to", "preset / tune", "Level of Parallelism")
    return sorted({line.strip() for line in stderr.splitlines() if any(k in line for k in keep)})


# ---------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation (numpy's default), NaN for no values."""
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def target(name: str, value: float, limit: float, at_most: bool = True, detail: str = "") -> dict[str, Any]:
    """A target with its measured value: met when ``value <= limit`` (or ``>=`` when not ``at_most``)."""
    met = value <= limit if at_most else value >= limit
    return {"target": name, "value": round(value, 4), "limit": limit, "met": bool(met), "detail": detail}


# ---------------------------------------------------------------- output


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (printed by the scripts and pasted into README.md as is)."""
    cells = [[_cell(v) for v in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/out/<name>.json`` and return its path."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def print_header(title: str, info: dict[str, Any]) -> None:
    print(f"# {title}")
    print(
        f"{info['date_utc']} | {info['cpu_model']} x{info['nproc']} | load {info['load_avg_start']} | "
        f"PyAV {info['packages']['av']} (SVT-AV1 {info['svtav1_pyav']}) | "
        f"torchcodec {info['packages']['torchcodec']} | {info['ffmpeg_cli']} (SVT-AV1 {info['svtav1_system']})"
    )
    print(f"scheduling: {info['scheduling']}")


# ---------------------------------------------------------------- media, generated once and cached


def episode_dirs(count: int, num_frames: int = EPISODE_FRAMES, width: int = WIDTH, height: int = HEIGHT) -> list[Path]:
    """``count`` PNG episodes (natural content, compress_level=1), generated once under ``out/cache``.

    Episode ``i`` uses scene seed ``i``. An episode counts as cached when its ``.complete``
    marker exists (``write_episode`` writes it last).
    """
    from robovid.synthetic import write_episode

    root = CACHE_DIR / "episodes" / f"{width}x{height}-{num_frames}f"
    dirs = []
    for index in range(count):
        directory = root / f"episode-{index:06d}"
        if not (directory / ".complete").exists():
            shutil.rmtree(directory, ignore_errors=True)
            print(f"generating {directory} ({num_frames} frames) ...", flush=True)
            write_episode(directory, index, num_frames, width, height, seed=index, compress_level=1)
        dirs.append(directory)
    return dirs


def frame_paths(episode_dir: Path) -> list[Path]:
    return sorted(episode_dir.glob("frame-*.png"))


def episode_videos(count: int, num_frames: int = EPISODE_FRAMES) -> list[Path]:
    """``count`` distinct episodes encoded by robovid with its default settings, cached under ``out/cache``."""
    from robovid.encode import encode_frames
    from robovid.settings import EncoderSettings

    settings = EncoderSettings()
    root = CACHE_DIR / "videos"
    videos = []
    for directory in episode_dirs(count, num_frames):
        video = root / f"{directory.parent.name}-{directory.name}-{settings.vcodec}-p{settings.effective_preset}.mp4"
        if not video.exists():
            print(f"encoding {video.name} ...", flush=True)
            encode_frames(frame_paths(directory), video, FPS, settings)
        videos.append(video)
    return videos


def read_sources(paths: Sequence[Path]) -> list[np.ndarray]:
    """The source frames as RGB arrays (robovid's PNG reader)."""
    from robovid.frames import read_frame_rgb

    return [read_frame_rgb(p) for p in paths]


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    import numpy as np

    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def index_strip_rows(width: int) -> int:
    """Rows at the top covered by ``robovid.synthetic``'s burnt-in index strip, rounded up to 16.

    The strip (3 rows of 16 black/white cells, ``max(4, width // 16)`` px wide and half as tall)
    changes every frame; it is test scaffolding, not camera content, and some presets code it
    badly (see README), so quality is reported for the whole frame and for the scene below it.
    """
    cell_w = max(4, width // 16)
    return -(-3 * max(4, cell_w // 2) // 16) * 16


@dataclass
class Quality:
    """How close a video is to its source frames."""

    psnr_db: float
    """Mean over frames of the RGB PSNR of the whole frame."""
    scene_psnr_db: float
    """The same below the burnt-in index strip (the camera-like content only)."""
    strip_psnr_db: float
    """The same for the index strip alone (sharp black/white blocks that change every frame)."""
    unreadable_index_frames: int
    """Frames whose burnt-in (episode, frame) index can no longer be read, or reads wrong."""
    frames: int
    """Frames in the video (packets with data)."""


def mean_psnr(video: Path, sources: Sequence[np.ndarray], episode: int | None = None) -> Quality:
    """Mean per-frame RGB PSNR of ``video`` (decoded with PyAV) against ``sources``.

    With ``episode``, each decoded frame's burnt-in index must read ``(episode, i)``.
    """
    import av

    from robovid.synthetic import read_index

    full: list[float] = []
    scene: list[float] = []
    strip: list[float] = []
    unreadable = 0
    top = index_strip_rows(sources[0].shape[1])
    with av.open(str(video)) as container:
        for i, (frame, source) in enumerate(zip(container.decode(video=0), sources, strict=False)):
            rgb = frame.to_ndarray(format="rgb24")
            full.append(psnr_db(rgb, source))
            scene.append(psnr_db(rgb[top:], source[top:]))
            strip.append(psnr_db(rgb[:top], source[:top]))
            if episode is not None:
                try:
                    unreadable += read_index(rgb) != (episode, i)
                except ValueError:
                    unreadable += 1
    with av.open(str(video)) as container:
        count = sum(1 for packet in container.demux(video=0) if packet.size)
    return Quality(_mean(full), _mean(scene), _mean(strip), unreadable, count)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def print_targets(targets: Sequence[dict[str, Any]]) -> None:
    """The targets table every benchmark prints."""
    print()
    print(
        table(["target", "value", "limit", "met"], [[t["target"], t["value"], t["limit"], t["met"]] for t in targets])
    )


def print_ratios(ratios: dict[str, Any], header: str = "ratio") -> None:
    """The ratios table every benchmark prints."""
    print()
    print(table([header, "value"], [[k, v] for k, v in ratios.items()]))


def encode_yuv_frames(
    out: Path | BinaryIO, encoder_name: str, options: dict[str, str], frames: Iterable[Any], size: tuple[int, int]
) -> None:
    """Encode ready ``yuv420p`` PyAV frames into an MP4 file or file object (the encoder alone, for the CPU split)."""
    import av

    with av.open(str(out) if isinstance(out, Path) else out, "w", format="mp4") as output:
        stream = output.add_stream(encoder_name, FPS, options=options)
        stream.pix_fmt, (stream.width, stream.height) = "yuv420p", size
        for frame in frames:
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and process-CPU seconds of ``fn()``, and its result."""
    wall, cpu = time.perf_counter(), cpu_s()
    result = fn()
    return time.perf_counter() - wall, cpu_s() - cpu, result
