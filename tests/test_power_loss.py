"""Power loss: the commit protocol's durability barriers, checked on the real service's syscalls.

kill -9 cannot prove the fsyncs (the kernel still writes back whatever the process wrote), so the
real robovid-watch runs under strace on a fresh root with two cameras, and every rule of the
protocol is checked against its syscall trace under the model of what a power cut keeps described
in ``tests/syscall_trace.py`` (which also says what this proves and what it does not).

That the checker catches breaches is shown twice: on a hand-written trace per rule, and on a real
trace of the service with its directory fsyncs removed. Last, the one state the rules leave a power
cut to produce after the PNGs are gone (their deletion durable, the intent not yet removed) is
made with a fault point, and the restarted service must cope with it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Episode, daemon_env, png_digest, record, rows_by_key, run_daemon, start_daemon, wait_for
from syscall_trace import (
    RULES,
    Trace,
    Violation,
    check_commit_flips,
    check_intent_before_append,
    check_intent_cleared_last,
    check_new_directories,
    check_png_unlinks_after_commit,
    check_publish_renames,
    check_writes_only_under_root,
    format_violations,
    parse_trace,
    strace_argv,
    strace_unusable,
)

from robovid.layout import episode_dir, state_dir
from robovid.synthetic import write_episode
from robovid_watch.state import camera_id

CAMERAS = ["front", "wrist"]
FRAMES = 8


@dataclass
class TracedRun:
    """One run of the real service under strace, from a fresh root to a clean stop."""

    trace: Trace
    episodes: list[Episode]
    events: list[dict[str, Any]]


def _require_strace() -> None:
    reason = strace_unusable()
    if reason is None:
        return
    if os.environ.get("ROBOVID_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(f"ROBOVID_REQUIRE_SYSTEM_TOOLS=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory: pytest.TempPathFactory) -> TracedRun:
    _require_strace()
    return _run_traced(tmp_path_factory.mktemp("power_loss").resolve())


def _run_traced(base: Path, **env: str) -> TracedRun:
    """Record 2 episodes x 2 cameras, start the service under strace, record 2 more, wait until all are done."""
    root = base / "root"
    root.mkdir()
    episodes = record(root, CAMERAS, range(0, 2), num_frames=FRAMES)
    # The bytecode cache is the interpreter's, not robovid's (read-only under the unit's ProtectSystem=strict);
    # without this a stale .pyc would count as a write outside the root.
    full_env = daemon_env(root, PYTHONDONTWRITEBYTECODE="1", **env)
    command = strace_argv(base / "strace.log", [sys.executable, "-m", "robovid_watch.main"])
    with open(base / "stdout.log", "w") as out, open(base / "stderr.log", "w") as err:
        tracer = subprocess.Popen(command, env=full_env, stdout=out, stderr=err, cwd=base)
    try:
        _wait(lambda: any(e.get("event") == "started" for e in _events(base)), "the service to start", base)
        episodes += record(root, CAMERAS, range(2, 4), num_frames=FRAMES)  # while it watches
        _wait(lambda: len(rows_by_key(root)) == len(episodes), "a row per episode", base)
        _wait(lambda: all(png_digest(root, e) is None for e in episodes), "every PNG deleted", base)
    finally:
        code = _stop_under_strace(tracer, root)
    assert code == 0, f"robovid-watch exited {code}: {(base / 'stderr.log').read_text()[-3000:]}"
    return TracedRun(Trace.from_file(base / "strace.log", root), episodes, _events(base))


def _events(base: Path) -> list[dict[str, Any]]:
    events = []
    for line in (base / "stdout.log").read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def _wait(condition: Callable[[], bool], what: str, base: Path) -> None:
    try:
        wait_for(condition, what, timeout=60)
    except AssertionError as error:
        raise AssertionError(f"{error}\nstderr: {(base / 'stderr.log').read_text()[-3000:]}") from error


def _stop_under_strace(tracer: subprocess.Popen[bytes], root: Path) -> int:
    """SIGTERM the service itself (strace launched with -o ignores SIGTERM); strace exits with its status."""
    service_pid = _service_pid(tracer.pid, root)
    if service_pid is not None:
        os.kill(service_pid, signal.SIGTERM)
    try:
        return tracer.wait(timeout=60)
    except subprocess.TimeoutExpired:
        if service_pid is not None:
            os.kill(service_pid, signal.SIGKILL)
        tracer.kill()
        tracer.wait(timeout=30)
        raise


def _service_pid(tracer_pid: int, root: Path) -> int | None:
    """The traced robovid-watch: strace's child (else the pid in the root lock it holds)."""
    children = Path(f"/proc/{tracer_pid}/task/{tracer_pid}/children")
    pids = children.read_text().split() if children.exists() else []
    lock = state_dir(root) / "lock"
    if not pids and lock.exists() and lock.read_text().strip().isdigit():
        pids = [lock.read_text().strip()]
    return int(pids[0]) if pids else None


def _assert_none(violations: list[Violation]) -> None:
    assert not violations, format_violations(violations)


# the real service ---------------------------------------------------------------------------------
def test_the_trace_holds_every_step_of_every_episode(traced_run: TracedRun) -> None:
    """A checker that saw no fsync proves nothing: the trace must hold each step of each episode."""
    stats = traced_run.trace.stats()
    print(f"syscall trace: {stats}")
    episodes = len(traced_run.episodes)
    assert stats["chunk creations"] == len(CAMERAS)
    assert stats["chunk creations"] + stats["commit flips"] == episodes, "one commit point per append"
    assert stats["journal intents"] >= episodes
    assert stats["intent removals"] >= episodes
    assert stats["parquet commits"] >= 1
    assert stats["png unlinks"] == episodes * FRAMES
    assert stats["fsyncs"] >= 2 * stats["published renames"] + 2 * stats["commit flips"]
    assert len(traced_run.events) > 0 and not [e for e in traced_run.events if e.get("event") == "episode_failed"]


def test_published_files_are_fsynced_before_their_rename_and_their_directory_after(traced_run: TracedRun) -> None:
    _assert_none(check_publish_renames(traced_run.trace))


def test_chunk_commit_flip_sits_between_two_fsyncs_and_before_the_metadata_commit(traced_run: TracedRun) -> None:
    _assert_none(check_commit_flips(traced_run.trace))


def test_journal_intent_is_durable_before_the_chunk_is_touched(traced_run: TracedRun) -> None:
    _assert_none(check_intent_before_append(traced_run.trace))


def test_no_png_is_deleted_before_a_durable_metadata_commit_that_follows_its_append(traced_run: TracedRun) -> None:
    _assert_none(check_png_unlinks_after_commit(traced_run.trace))


def test_intent_is_removed_only_after_the_png_deletions_are_durable(traced_run: TracedRun) -> None:
    _assert_none(check_intent_cleared_last(traced_run.trace))


def test_new_directories_are_durable_in_their_parents_before_they_are_relied_on(traced_run: TracedRun) -> None:
    _assert_none(check_new_directories(traced_run.trace))


def test_the_service_writes_nothing_outside_the_root(traced_run: TracedRun) -> None:
    """Every open for writing, create, rename, unlink, rmdir, mkdir and truncate of the process is under the root."""
    _assert_none(check_writes_only_under_root(traced_run.trace))


def test_checker_catches_the_real_service_with_its_directory_fsyncs_removed(tmp_path: Path) -> None:
    """Negative control on a real trace: the same run with ``durable.fsync_dir`` made a no-op must fail the rules."""
    _require_strace()
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text("import robovid.durable as d\nd.fsync_dir = lambda directory: None\n")
    python_path = os.pathsep.join(filter(None, [str(inject), os.environ.get("PYTHONPATH")]))
    trace = _run_traced(tmp_path.resolve(), PYTHONPATH=python_path).trace
    for rule in (check_publish_renames, check_intent_before_append, check_png_unlinks_after_commit):
        violations = rule(trace)
        assert violations, f"{rule.__name__} missed the missing directory fsyncs"
        assert re.search(r"^    \d+: \d+ +\S+ (rename|unlink|openat)\(", str(violations[0]), re.MULTILINE)
    assert not check_commit_flips(trace), "the flips' fsyncs were left in place"


def test_a_cut_after_the_png_deletions_does_not_doom_a_later_recording_of_the_same_index(tmp_path: Path) -> None:
    """The state rule (f) allows (PNG deletions durable, intent still there) must not delete a re-recorded folder."""
    root = tmp_path / "root"
    root.mkdir()
    [episode] = record(root, ["cam"], range(1), num_frames=FRAMES)
    killed = run_daemon(root, timeout=120, ROBOVID_FAULT_POINT="clean:before-clear-intent:1")
    assert killed.returncode == -signal.SIGKILL and png_digest(root, episode) is None, killed.stderr[-2000:]
    daemon = start_daemon(root)
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "the restart", daemon=daemon)
        scratch = tmp_path / "scratch"
        write_episode(episode_dir(scratch, "cam", 0), 0, FRAMES, 64, 48, seed=99)
        again = png_digest(scratch, episode)
        write_episode(episode_dir(root, "cam", 0), 0, FRAMES, 64, 48, seed=99)  # recorded again, same index
        wait_for(
            lambda: bool(daemon.events_named("episode_failed") or daemon.events_named("episode_cleaned")),
            "the service to look at the re-recorded folder",
            daemon=daemon,
        )
    finally:
        assert daemon.stop() == 0
    assert png_digest(root, episode) == again, "the re-recorded PNGs were deleted without being encoded"
    assert [e["error_type"] for e in daemon.events_named("episode_failed")] == ["DuplicateEpisodeError"]


# the checker catches each breach --------------------------------------------------------------------
ROOT = "/rec"
CID = camera_id("cam")
STATE = ".cache/huggingface/robovid"
JOURNAL = f"{ROOT}/.cache/huggingface/robovid/journal/{CID}--000001.json"
JOURNAL_TMP = f"{ROOT}/.cache/huggingface/robovid/journal/.{CID}--000001.json.robovid-tmp-9-aa"
CHUNK = f"{ROOT}/videos/cam/chunk-000/file-000.mp4"
SEGMENTS = f"{ROOT}/.cache/huggingface/robovid/segments"
PART = f"{SEGMENTS}/part-000000.parquet"
PART_TMP = f"{SEGMENTS}/.part-000000.parquet.robovid-tmp-9-bb"
EPISODE = f"{ROOT}/images/cam/episode-000001"


def _durable_write(path: str, fd: int, data: str, size: int, label: str) -> list[tuple[str, int, str]]:
    """Lines of robovid's atomic_output: write a temp, fsync it by path, rename it (by the caller)."""
    return [
        ("", 201, f'openat(AT_FDCWD</srv>, "{path}", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = {fd}<{path}>'),
        ("", 201, f'write({fd}<{path}>, "{data}", {size}) = {size}'),
        ("", 201, f"close({fd}<{path}>) = 0"),
        ("", 201, f'openat(AT_FDCWD</srv>, "{path}", O_RDONLY|O_CLOEXEC) = {fd}<{path}>'),
        (f"{label}-fsync", 201, f"fsync({fd}<{path}>) = 0"),
        ("", 201, f"close({fd}<{path}>) = 0"),
    ]


def _fsync_dir(directory: str, label: str) -> list[tuple[str, int, str]]:
    return [
        ("", 201, f'openat(AT_FDCWD</srv>, "{directory}", O_RDONLY|O_DIRECTORY|O_CLOEXEC) = 3<{directory}>'),
        (label, 201, f"fsync(3<{directory}>) = 0"),
        ("", 201, f"close(3<{directory}>) = 0"),
    ]


def _protocol() -> list[tuple[str, int, str]]:
    """One episode appended to an existing chunk, done right, as (label, thread, call) in strace's format."""
    return [
        ("mkdir", 201, f'mkdir("{SEGMENTS}", 0777) = 0'),
        ("", 201, f'openat(AT_FDCWD<{ROOT}>, "{STATE}", O_RDONLY|O_DIRECTORY|O_CLOEXEC) = 3<{ROOT}/{STATE}>'),
        ("mkdir-fsync", 201, f"fsync(3<{ROOT}/{STATE}>) = 0"),
        *_durable_write(JOURNAL_TMP, 3, '{\\"camera\\": \\"cam\\"}', 17, "intent"),
        ("intent-rename", 201, f'rename("{JOURNAL_TMP}", "{JOURNAL}") = 0'),
        *_fsync_dir(f"{ROOT}/.cache/huggingface/robovid/journal", "intent-dir-fsync"),
        ("", 201, f'openat(AT_FDCWD</srv>, "{CHUNK}", O_RDWR|O_CLOEXEC) = 4<{CHUNK}>'),
        ("", 201, f'write(4<{CHUNK}>, "\\0\\0\\20$mdat", 8) = 8'),
        ("", 201, f'write(4<{CHUNK}>, "\\0\\0\\3\\363moov\\0\\0\\0lmvhd"..., 1011 <unfinished ...>'),
        ("", 202, 'openat(AT_FDCWD</srv>, "/srv/lib/libsvtav1.so", O_RDONLY|O_CLOEXEC) = 5</srv/lib/libsvtav1.so>'),
        ("", 201, "<... write resumed>) = 1011"),
        ("tail-fsync", 201, f"fsync(4<{CHUNK}>) = 0"),
        ("flip", 201, f'write(4<{CHUNK}>, "free", 4) = 4'),
        ("flip-fsync", 201, f"fsync(4<{CHUNK}>) = 0"),
        ("", 201, f"close(4<{CHUNK}>) = 0"),
        *_durable_write(PART_TMP, 5, "PAR1", 4, "part"),
        ("part-rename", 201, f'rename("{PART_TMP}", "{PART}" <unfinished ...>'),
        ("part-rename", 202, f"fsync(6<{ROOT}/{STATE}/tmp/other.mp4>) = 0"),
        ("part-rename", 201, "<... rename resumed>) = 0"),
        *_fsync_dir(SEGMENTS, "part-dir-fsync"),
        ("png", 201, f'unlink("{EPISODE}/frame-000000.png") = 0'),
        ("png", 201, f'unlink("{EPISODE}/frame-000001.png") = 0'),
        ("", 201, f'unlink("{EPISODE}/.complete") = 0'),
        ("", 201, f'rmdir("{EPISODE}") = 0'),
        ("", 201, f'rmdir("{ROOT}/images/cam") = -1 ENOTEMPTY (Directory not empty)'),
        *_fsync_dir(f"{ROOT}/images/cam", "clean-fsync"),
        ("intent-unlink", 201, f'unlink("{JOURNAL}") = 0'),
        *_fsync_dir(f"{ROOT}/.cache/huggingface/robovid/journal", ""),
        ("", 201, "+++ exited with 0 +++"),
    ]


def _trace(entries: list[tuple[str, int, str]]) -> Trace:
    lines = [f"{tid}  10:00:00.{n:06d} {call}" for n, (_, tid, call) in enumerate(entries)]
    return Trace.from_lines(lines, ROOT)


def _without(label: str) -> list[tuple[str, int, str]]:
    return [entry for entry in _protocol() if entry[0] != label]


def _moved_before(label: str, anchor: str) -> list[tuple[str, int, str]]:
    entries = _protocol()
    moved = [entry for entry in entries if entry[0] == label]
    rest = [entry for entry in entries if entry[0] != label]
    at = next(i for i, entry in enumerate(rest) if entry[0] == anchor)
    return rest[:at] + moved + rest[at:]


def test_checker_finds_nothing_wrong_with_the_protocol_done_right() -> None:
    trace = _trace(_protocol())
    assert trace.stats()["commit flips"] == 1 and trace.stats()["parquet commits"] == 1
    for rule in RULES.values():
        _assert_none(rule(trace))


def test_checker_reports_a_rename_not_preceded_by_an_fsync() -> None:
    violations = check_publish_renames(_trace(_without("part-fsync")))
    assert len(violations) == 1, format_violations(violations)
    report = str(violations[0])
    assert "not fsynced" in report
    assert f'rename("{PART_TMP}", "{PART}"' in report and f'write(5<{PART_TMP}>, "PAR1", 4)' in report


def test_checker_reports_a_png_unlink_before_the_metadata_commit() -> None:
    violations = check_png_unlinks_after_commit(_trace(_moved_before("png", "part-rename")))
    assert len(violations) == 1, format_violations(violations)
    report = str(violations[0])
    assert f'unlink("{EPISODE}/frame-000000.png")' in report and "write(4<" in report


@pytest.mark.parametrize(
    ("entries", "rule", "expected"),
    [
        pytest.param(
            lambda: _without("part-dir-fsync"),
            check_publish_renames,
            "directory .cache/huggingface/robovid/segments",
            id="no-dir-fsync",
        ),
        pytest.param(
            lambda: _without("tail-fsync"), check_commit_flips, "before the new mdat/moov", id="flip-before-fsync"
        ),
        pytest.param(
            lambda: _without("flip-fsync"), check_commit_flips, "not fsynced before the metadata", id="flip-unsynced"
        ),
        pytest.param(
            lambda: _without("intent-dir-fsync"), check_intent_before_append, "journal directory", id="intent"
        ),
        pytest.param(
            lambda: _without("intent-rename"), check_intent_before_append, "no journal intent", id="no-intent"
        ),
        pytest.param(
            lambda: _moved_before("intent-unlink", "clean-fsync"),
            check_intent_cleared_last,
            "durable",
            id="intent-last",
        ),
        pytest.param(
            lambda: _without("mkdir-fsync"), check_new_directories, ".cache/huggingface/robovid/segments", id="new-dir"
        ),
        pytest.param(
            lambda: [*_protocol(), ("", 201, 'openat(AT_FDCWD</srv>, "c", O_WRONLY|O_CREAT, 0644) = 7</srv/c>')],
            check_writes_only_under_root,
            "/srv/c",
            id="outside-root",
        ),
    ],
)
def test_checker_reports_each_broken_rule_with_its_syscall_lines(
    entries: Callable[[], list[tuple[str, int, str]]], rule: Callable[[Trace], list[Violation]], expected: str
) -> None:
    violations = rule(_trace(entries()))
    assert violations, f"{rule.__name__} missed the breach"
    report = str(violations[0])
    assert expected in report, report
    assert re.search(r"^    \d+: 20[12]  10:00:00\.\d+ ", report, re.MULTILINE), f"no syscall line shown: {report}"


def test_parser_joins_interrupted_calls_and_decodes_escaped_paths() -> None:
    lines = [
        '7  10:00:00.000001 rename("/r/a\\"b\\n$(c)\\303\\251", "/r/x\\76y" <unfinished ...>',
        "8  10:00:00.000002 fsync(3</r/x\\76y>) = 0",
        "7  10:00:00.000003 <... rename resumed>) = 0",
        "7  10:00:00.000004 +++ exited with 0 +++",
    ]
    calls = parse_trace("\n".join(lines))
    assert [(c.name, c.tid, c.seq, c.done) for c in calls] == [("rename", 7, 1, 3), ("fsync", 8, 2, 2)]
    trace = Trace(calls, "/r")
    rename, fsync = trace.ops
    assert (rename.src, rename.path) == ('/r/a"b\n$(c)é', "/r/x>y")
    assert fsync.path == "/r/x>y" and fsync.fid == rename.fid
