"""Check the durability ordering of robovid's commit protocol on a real ``strace`` log.

How: the real service runs under ``strace -f -tt -y`` (:func:`strace_argv`). :func:`parse_trace`
reads the log, joining the ``<unfinished ...>`` and ``<... resumed>`` halves that threads leave,
with every fd named by its path (``-y``). :class:`Trace` turns the calls into file operations and
each ``check_*`` function returns the breaches of one rule of the protocol, each carrying the
syscall lines (with their line numbers in the log) that break it.

The model of what a power cut keeps is POSIX ``fsync(2)`` taken literally:

- a file's data is durable only once an ``fsync``/``fdatasync`` of that file (any fd on it) that
  *started after its last write returned* has returned; ``sync_file_range`` is no barrier;
- a directory entry change (create, mkdir, rename, unlink, rmdir) is durable only once an
  ``fsync`` of that directory that started after the change has returned. One extension: an
  unlink inside a directory also counts as durable once that directory's removal (rmdir, which
  needs it empty) is durable; journaling filesystems honour this, POSIX does not promise it;
- "A before B" means A's result line precedes B's first line in the log: strace writes lines as
  it sees calls enter and return, so calls that overlap in two threads are never taken as ordered.

What this proves: that the real process, through this kernel's syscall interface, issues the
durability barriers the protocol relies on, in the order it relies on them, on the paths this
run took: each published file is fsynced before it is renamed into place and its directory after,
before the thread's next step; the chunk's 4-byte commit flip sits between two fsyncs of the
chunk and before the metadata commit; the journal intent is durable before the chunk is touched;
no PNG is unlinked before a durable metadata commit that started once its episode's append was
durable; the intent is removed only once the PNG deletions are durable; new directories are
durable in their parents; nothing is written outside the root. Under the model, a power cut at
any instant of this run leaves every episode either recoverable from its PNGs or committed.

What it does not prove: that the filesystem and the disk honour fsync (volatile write caches,
disabled barriers, a lying controller, NFS or FUSE semantics); anything about a real crash image:
no block-level state is replayed, no torn or reordered writes inside the filesystem are simulated,
and the 4-byte flip is assumed atomic under a power cut (true of one sector in practice, not a
POSIX promise). It does not model filesystem specifics: ext4 ``data=ordered`` commits all earlier
metadata with any fsync, so a missing directory fsync flagged here may be harmless on ext4 but not
on another filesystem or mount mode (and ext4 ``data=writeback`` or a non-journaling filesystem
may need more than the model asks). It does not read contents: the flip is recognised as a 4-byte
write of ``free`` into a chunk file (``lseek`` is not traced, so its offset is not checked), and
the Parquet commit holding an episode's row by time order; writes through ``mmap`` would be
invisible (robovid makes none). It sees only the code paths this run took: crash recovery, a full
disk and error branches are exercised by the kill -9 suite (``tests/test_crash_consistency.py``),
not here. It identifies an episode's append through the journal intent its thread wrote last, so
it assumes (as the service does) one episode at a time per worker thread, and a fresh root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from robovid_watch.state import camera_id

TRACED_SYSCALLS = (
    "openat,open,creat,write,pwrite64,writev,pwritev,ftruncate,truncate,fsync,fdatasync,sync_file_range,"
    "rename,renameat,renameat2,unlink,unlinkat,rmdir,mkdir,mkdirat,close,dup,dup2,dup3"
)
STATE = ".cache/huggingface/robovid/"
PUBLISHED = ("videos/", "meta/", "data/", f"{STATE}journal/", f"{STATE}failed/", f"{STATE}segments/")
"""Where robovid publishes files (relative to the root): every file there is renamed into place."""

_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
_CHUNK = re.compile(r"videos/[^/]+/chunk-\d{3,}/file-\d{3,}\.mp4")
_PART = re.compile(re.escape(STATE) + r"segments/part-\d{6,}\.parquet")
_JOURNAL = re.compile(re.escape(STATE) + r"journal/([0-9a-f]+)--(\d+)\.json")
_PNG = re.compile(r"images/([^/]+)/episode-(\d+)/[^/]+\.png", re.IGNORECASE)
_LINE = re.compile(r"(\d+)\s+(?:\d\d:\d\d:\d\d\.\d+\s+)?(.*)", re.DOTALL)
_RESUMED = re.compile(r"<\.\.\. (\w+) resumed>(.*)", re.DOTALL)
_START = re.compile(r"(\w+)\((.*)", re.DOTALL)
_FD = re.compile(r"(?:\d+|AT_FDCWD)<(.*)>", re.DOTALL)
_UNFINISHED = " <unfinished ...>"
_ESCAPES = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, "e": 27, "\\": 92, '"': 34, "'": 39}


def strace_argv(trace_path: Path, command: Sequence[str]) -> list[str]:
    """``command`` run under strace, every thread traced, fds shown with paths, log in ``trace_path``."""
    return ["strace", "-f", "-tt", "-y", "-e", f"trace={TRACED_SYSCALLS}", "-o", str(trace_path), *command]


def strace_unusable() -> str | None:
    """Why strace cannot trace here (not installed, ptrace forbidden), or None when it can."""
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install strace)"
    probe = subprocess.run(["strace", "-f", "-o", os.devnull, "true"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"strace cannot trace here (ptrace not permitted?): {probe.stderr.strip()}"
    return None


# parsing -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One system call as strace logged it (its two halves joined when a thread was interrupted)."""

    seq: int
    """Line number of its first line: the order strace saw it enter."""
    done: int
    """Line number of the line with its result."""
    tid: int
    name: str
    args: tuple[str, ...]
    result: str
    """``0``, ``7</path>``, ``-1 ENOENT (...)``, or empty when the process died inside the call."""
    lines: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return bool(self.result) and not self.result.startswith(("-1", "?"))

    def __str__(self) -> str:
        return "\n".join(f"    {line}" for line in self.lines)


def parse_trace(text: str) -> list[Call]:
    """The calls of an ``strace -f -y`` log, in the order they entered."""
    calls: list[Call] = []
    pending: dict[int, tuple[int, str, str, str]] = {}
    for number, line in enumerate(text.split("\n"), 1):
        match = _LINE.fullmatch(line)
        if match is None or match[2].startswith(("+++", "---")):
            continue
        tid, body, shown = int(match[1]), match[2], f"{number}: {line}"
        resumed = _RESUMED.fullmatch(body)
        if resumed:
            start = pending.pop(tid, None)
            if start is not None and start[1] == resumed[1]:
                calls.append(_call(start[0], number, tid, start[1], start[2] + resumed[2], (start[3], shown)))
            continue
        started = _START.fullmatch(body)
        if started is None:
            continue
        if body.endswith(_UNFINISHED):
            pending[tid] = (number, started[1], started[2][: -len(_UNFINISHED)], shown)
        else:
            calls.append(_call(number, number, tid, started[1], started[2], (shown,)))
    calls.extend(_call(seq, seq, tid, name, rest, (shown,)) for tid, (seq, name, rest, shown) in pending.items())
    return sorted(calls, key=lambda call: call.seq)


def _call(seq: int, done: int, tid: int, name: str, text: str, lines: tuple[str, ...]) -> Call:
    args, result = _split_arguments(text)
    return Call(seq, done, tid, name, args, result, lines)


def _split_arguments(text: str) -> tuple[tuple[str, ...], str]:
    """``a, "b, c", 3<p>) = 0`` -> (("a", '"b, c"', "3<p>"), "0")."""
    args: list[str] = []
    start, depth, i = 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch in '"<':
            i = _skip_quoted(text, i, '"' if ch == '"' else ">")
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}" and depth:
            depth -= 1
        elif ch == ")" or (ch == "," and depth == 0):
            args.append(text[start:i].strip())
            start = i + 1
            if ch == ")":
                return tuple(a for a in args if a), text[i + 1 :].strip().removeprefix("=").strip()
        i += 1
    args.append(text[start:].strip())
    return tuple(a for a in args if a), ""


def _skip_quoted(text: str, i: int, closing: str) -> int:
    i += 1
    while i < len(text) and text[i] != closing:
        i += 2 if text[i] == "\\" else 1
    return i + 1


def decode_c_string(text: str) -> bytes:
    """Undo strace's C escapes (``\\n``, ``\\"``, ``\\303``, ``\\x41``)."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        nxt = text[i + 1]
        octal = re.match(r"[0-7]{1,3}", text[i + 1 :])
        if nxt == "x":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        elif octal:
            out.append(int(octal.group(), 8) & 0xFF)
            i += 1 + len(octal.group())
        else:
            out.append(_ESCAPES.get(nxt, ord(nxt)))
            i += 2
    return bytes(out)


def _quoted(arg: str) -> bytes | None:
    """The bytes of a ``"..."`` argument (``"..."...`` when strace cut it short), else None."""
    if not arg.startswith('"'):
        return None
    end = _skip_quoted(arg, 0, '"')
    return decode_c_string(arg[1 : end - 1])


def _fd_path(arg: str) -> str | None:
    """The path strace's ``-y`` shows for an fd (``7</a/b>``), None for pipes, sockets and the like."""
    match = _FD.fullmatch(arg)
    if match is None:
        return None
    path = os.fsdecode(decode_c_string(match[1])).removesuffix(" (deleted)")
    return path if path.startswith("/") else None


# operations ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Op:
    """What a successful call did to the file system, in robovid's terms."""

    kind: str
    """write (data, truncation), fsync, rename, unlink, rmdir or mkdir."""
    call: Call
    path: str
    """The file or directory acted on (the target of a rename)."""
    src: str = ""
    """The source of a rename."""
    fid: int = 0
    """Identity of the file whose data is written, synced or renamed (follows renames)."""
    data: bytes = b""
    size: int = 0

    @property
    def seq(self) -> int:
        return self.call.seq

    @property
    def done(self) -> int:
        return self.call.done

    @property
    def tid(self) -> int:
        return self.call.tid


class _FileIds:
    """Which file a path names at each point of the trace (a rename moves the identity)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._next = 1

    def get(self, path: str, new: bool = False) -> int:
        if new or path not in self._ids:
            self._ids[path] = self._next
            self._next += 1
        return self._ids[path]

    def rename(self, src: str, dst: str) -> int:
        fid = self.get(src)
        del self._ids[src]
        self._ids[dst] = fid
        return fid

    def drop(self, path: str) -> None:
        self._ids.pop(path, None)


def _join(base: str | None, path: str) -> str:
    return os.path.normpath(path if path.startswith("/") or base is None else os.path.join(base, path))


def _path_arg(call: Call, dirfd_index: int | None, index: int) -> str:
    base = _fd_path(call.args[dirfd_index]) if dirfd_index is not None else None
    raw = _quoted(call.args[index])
    return _join(base, os.fsdecode(raw if raw is not None else b""))


def _interpret(calls: list[Call]) -> tuple[list[Op], list[tuple[str, Call]]]:
    """File operations of the successful calls, and every attempt to change a path (for rule e)."""
    ops: list[Op] = []
    attempts: list[tuple[str, Call]] = []
    ids = _FileIds()
    for call in calls:
        for op, attempted in _operations(call, ids):
            if op is not None:
                ops.append(op)
            attempts.extend((path, call) for path in attempted)
    return ops, attempts


def _operations(call: Call, ids: _FileIds) -> Iterator[tuple[Op | None, list[str]]]:
    name, ok = call.name, call.ok
    if name in ("openat", "open", "creat"):
        yield from _open(call, ids)
    elif name in ("write", "pwrite64", "writev", "pwritev", "ftruncate"):
        path = _fd_path(call.args[0]) if call.args else None
        if path is None:
            return
        data = _quoted(call.args[1]) if name in ("write", "pwrite64") else None
        size = int(call.result.split()[0]) if ok and name != "ftruncate" else 0
        if ok:  # the fd was opened (and checked) above, or inherited (stdout, stderr): not an attempt of its own
            yield Op("write", call, path, fid=ids.get(path), data=data or b"", size=size), []
    elif name in ("fsync", "fdatasync"):
        path = _fd_path(call.args[0]) if call.args else None
        if path is not None and ok:
            yield Op("fsync", call, path, fid=ids.get(path)), []
    elif name in ("rename", "renameat", "renameat2"):
        src, dst = (_path_arg(call, None, 0), _path_arg(call, None, 1)) if name == "rename" else _renameat(call)
        yield (Op("rename", call, dst, src=src, fid=ids.rename(src, dst)) if ok else None), [src, dst]
    elif name in ("unlink", "unlinkat", "rmdir", "truncate"):
        path = _path_arg(call, 0, 1) if name == "unlinkat" else _path_arg(call, None, 0)
        kind = {"unlink": "unlink", "rmdir": "rmdir", "truncate": "write"}.get(name, "unlink")
        if name == "unlinkat" and "AT_REMOVEDIR" in call.args[-1]:
            kind = "rmdir"
        op = Op(kind, call, path, fid=ids.get(path)) if ok else None
        if ok and kind == "unlink":
            ids.drop(path)
        yield op, [path]
    elif name in ("mkdir", "mkdirat"):
        path = _path_arg(call, 0, 1) if name == "mkdirat" else _path_arg(call, None, 0)
        yield (Op("mkdir", call, path) if ok else None), [path]


def _renameat(call: Call) -> tuple[str, str]:
    return _path_arg(call, 0, 1), _path_arg(call, 2, 3)


def _open(call: Call, ids: _FileIds) -> Iterator[tuple[Op | None, list[str]]]:
    if call.name == "creat":
        path, flags = _path_arg(call, None, 0), "O_CREAT|O_WRONLY|O_TRUNC"
    elif call.name == "openat":
        path, flags = _path_arg(call, 0, 1), call.args[2]
    else:
        path, flags = _path_arg(call, None, 0), call.args[1]
    if not any(flag in flags for flag in _WRITE_FLAGS):
        return
    real = _fd_path(call.result) if call.ok else None
    path = real or path
    if call.ok and "O_CREAT" in flags:
        ids.get(path, new="O_EXCL" in flags or "O_TRUNC" in flags)
    truncated = call.ok and "O_TRUNC" in flags
    yield (Op("write", call, path, fid=ids.get(path)) if truncated else None), [path]


# the trace, with the questions the rules ask of it ----------------------------------------------------
@dataclass(frozen=True)
class Violation:
    """A breach of one rule, with the syscall lines that show it."""

    rule: str
    message: str
    calls: tuple[Call, ...]

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}\n" + "\n".join(str(call) for call in self.calls)


def format_violations(violations: list[Violation], limit: int = 8) -> str:
    shown = "\n".join(str(v) for v in violations[:limit])
    more = f"\n... and {len(violations) - limit} more" if len(violations) > limit else ""
    return f"{len(violations)} violation(s) in the syscall trace:\n{shown}{more}"


class Trace:
    """The file operations of one traced run, and what the model says about their durability."""

    def __init__(self, calls: list[Call], root: Path | str) -> None:
        self.root = os.path.normpath(str(root))
        self.calls = calls
        self.end = max((call.done for call in calls), default=0) + 1
        self.ops, self.attempts = _interpret(calls)
        self._by_fid: dict[int, list[Op]] = defaultdict(list)
        self._fsyncs_by_path: dict[str, list[Op]] = defaultdict(list)
        self._by_tid: dict[int, list[Op]] = defaultdict(list)
        for op in self.ops:
            self._by_fid[op.fid].append(op)
            self._by_tid[op.tid].append(op)
            if op.kind == "fsync":
                self._fsyncs_by_path[op.path].append(op)

    @classmethod
    def from_file(cls, path: Path, root: Path | str) -> Trace:
        return cls(parse_trace(path.read_text(encoding="utf-8", errors="surrogateescape")), root)

    @classmethod
    def from_lines(cls, lines: Sequence[str], root: Path | str) -> Trace:
        return cls(parse_trace("\n".join(lines)), root)

    # where things are
    def rel(self, path: str) -> str | None:
        """``path`` relative to the root, None when it is outside."""
        if path == self.root:
            return ""
        prefix = self.root.rstrip("/") + "/"
        return path[len(prefix) :] if path.startswith(prefix) else None

    def is_published(self, path: str) -> bool:
        return (self.rel(path) or "").startswith(PUBLISHED)

    def in_videos(self, path: str) -> bool:
        return (self.rel(path) or "").startswith("videos/")

    def is_chunk(self, path: str) -> bool:
        return _CHUNK.fullmatch(self.rel(path) or "") is not None

    def is_part(self, path: str) -> bool:
        return _PART.fullmatch(self.rel(path) or "") is not None

    def journal_key(self, path: str) -> tuple[str, int] | None:
        match = _JOURNAL.fullmatch(self.rel(path) or "")
        return (match[1], int(match[2])) if match else None

    def png_key(self, path: str) -> tuple[str, int] | None:
        match = _PNG.fullmatch(self.rel(path) or "")
        return (camera_id(match[1]), int(match[2])) if match else None

    # kinds of operations
    def of_kind(self, kind: str) -> list[Op]:
        return [op for op in self.ops if op.kind == kind]

    def is_flip(self, op: Op) -> bool:
        return op.kind == "write" and op.data == b"free" and op.size == 4 and self.is_chunk(op.path)

    def is_chunk_creation(self, op: Op) -> bool:
        return op.kind == "rename" and self.is_chunk(op.path)

    def touches_chunk(self, op: Op) -> bool:
        return op.kind in ("write", "rename") and self.in_videos(op.path)

    def is_step(self, op: Op) -> bool:
        """A protocol step that depends on the ones before it being durable."""
        if op.kind == "rename":
            return self.is_published(op.path)
        if op.kind == "unlink":
            return self.png_key(op.path) is not None or self.journal_key(op.path) is not None
        return op.kind == "write" and self.in_videos(op.path)

    def next_by_thread(self, after: Op, wanted: Callable[[Op], bool]) -> Op | None:
        """The first operation of ``after``'s thread, started once ``after`` returned, that is ``wanted``."""
        return next((op for op in self._by_tid[after.tid] if op.seq > after.done and wanted(op)), None)

    def next_step(self, after: Op) -> Op | None:
        """The first protocol step the same thread takes after ``after`` returned."""
        return self.next_by_thread(after, self.is_step)

    # durability
    def last_write_before(self, fid: int, seq: int) -> Op | None:
        writes = [op for op in self._by_fid[fid] if op.kind == "write" and op.seq < seq]
        return writes[-1] if writes else None

    def fsync_between(self, fid: int, after: int, before: int) -> Op | None:
        """An fsync of file ``fid`` that started after line ``after`` and returned before line ``before``."""
        return next(
            (op for op in self._by_fid[fid] if op.kind == "fsync" and after < op.seq and op.done < before), None
        )

    def data_durable_before(self, op: Op) -> Op | None:
        """The last write of the file ``op`` acts on, when it is not fsynced before ``op`` starts."""
        last = self.last_write_before(op.fid, op.seq)
        if last is None or self.fsync_between(op.fid, last.done, op.seq) is not None:
            return None
        return last

    def dir_fsync_between(self, directory: str, after: int, before: int) -> Op | None:
        return next((op for op in self._fsyncs_by_path[directory] if after < op.seq and op.done < before), None)

    def entry_durable(self, path: str, after: int, before: int) -> bool:
        """Is a change of ``path``'s directory entry (made by line ``after``) durable by line ``before``?"""
        directory = os.path.dirname(path)
        if self.dir_fsync_between(directory, after, before) is not None:
            return True
        removals = [op for op in self.of_kind("rmdir") if op.path == directory and after < op.seq < before]
        return any(op.done < before and self.entry_durable(directory, op.done, before) for op in removals)

    def step_limit(self, op: Op) -> tuple[int, Op | None]:
        step = self.next_step(op)
        return (step.seq if step is not None else self.end), step

    def stats(self) -> dict[str, int]:
        """How much of the protocol the trace holds (a checker that saw nothing proves nothing)."""
        renames = [op for op in self.of_kind("rename") if self.is_published(op.path)]
        return {
            "published renames": len(renames),
            "chunk creations": sum(self.is_chunk_creation(op) for op in renames),
            "parquet commits": sum(self.is_part(op.path) for op in renames),
            "journal intents": sum(self.journal_key(op.path) is not None for op in renames),
            "commit flips": sum(self.is_flip(op) for op in self.ops),
            "fsyncs": len(self.of_kind("fsync")),
            "png unlinks": sum(self.png_key(op.path) is not None for op in self.of_kind("unlink")),
            "intent removals": sum(self.journal_key(op.path) is not None for op in self.of_kind("unlink")),
            "directories created": sum(self.rel(op.path) is not None for op in self.of_kind("mkdir")),
            "path changes checked for the root": len(self.attempts),
        }


# the rules -------------------------------------------------------------------------------------------
def _violation(rule: str, message: str, *ops: Op | None) -> Violation:
    return Violation(rule, message, tuple(op.call for op in ops if op is not None))


def _when(step: Op | None, what: str = "the thread's next protocol step") -> str:
    return f"before {what}" if step is not None else "before the process ended"


def check_publish_renames(trace: Trace) -> list[Violation]:
    """(a) A published file is fsynced after its last write and before its rename; its directory after."""
    out = []
    for rename in (op for op in trace.of_kind("rename") if trace.is_published(op.path)):
        target = trace.rel(rename.path)
        unsynced = trace.data_durable_before(rename)
        if unsynced is not None:
            message = f"{trace.rel(rename.src)} renamed onto {target} with its last write not fsynced (torn file after a power cut)"
            out.append(_violation("publish", message, unsynced, rename))
        limit, step = trace.step_limit(rename)
        directory = os.path.dirname(rename.path)
        if trace.dir_fsync_between(directory, rename.done, limit) is None:
            message = f"directory {trace.rel(directory)} not fsynced after the rename onto {target} {_when(step)}"
            out.append(_violation("publish", message, rename, step))
    return out


def check_commit_flips(trace: Trace) -> list[Violation]:
    """(b) The 4-byte flip follows an fsync of the new tail and is itself fsynced before the metadata commit."""
    out = []
    for flip in (op for op in trace.ops if trace.is_flip(op)):
        chunk = trace.rel(flip.path)
        unsynced = trace.data_durable_before(flip)
        if unsynced is not None:
            message = f"commit flip in {chunk} before the new mdat/moov were fsynced (the live moov may point at lost samples)"
            out.append(_violation("flip", message, unsynced, flip))
        commit = trace.next_by_thread(flip, lambda op: op.kind == "rename" and trace.is_part(op.path))
        if trace.fsync_between(flip.fid, flip.done, commit.seq if commit else trace.end) is None:
            message = f"commit flip in {chunk} not fsynced {_when(commit, 'the metadata commit')} (a row may outlive its append)"
            out.append(_violation("flip", message, flip, commit))
    return out


def check_intent_before_append(trace: Trace) -> list[Violation]:
    """(c) The journal intent is fsynced, renamed and its directory fsynced before the chunk is touched."""
    out = []
    intents: dict[int, Op] = {}
    checked: set[tuple[int, int]] = set()
    for op in trace.ops:
        if op.kind == "rename" and trace.journal_key(op.path) is not None:
            intents[op.tid] = op
        elif op.kind == "unlink" and op.tid in intents and intents[op.tid].path == op.path:
            del intents[op.tid]
        elif trace.touches_chunk(op):
            intent = intents.get(op.tid)
            first_of_append = (op.tid, intent.seq if intent is not None else -1)
            if first_of_append not in checked:
                checked.add(first_of_append)
                out += _intent_problems(trace, intent, op)
    return out


def _intent_problems(trace: Trace, intent: Op | None, first: Op) -> list[Violation]:
    """What makes ``intent`` not durable before ``first``, the first change of a chunk that follows it."""
    if intent is None:
        return [_violation("intent", f"{trace.rel(first.path)} changed with no journal intent written before", first)]
    out = []
    unsynced = trace.data_durable_before(intent)
    if unsynced is not None:
        out.append(_violation("intent", "journal intent renamed before its data was fsynced", unsynced, intent))
    if trace.dir_fsync_between(os.path.dirname(intent.path), intent.done, first.seq) is None:
        message = (
            f"{trace.rel(first.path)} changed before the journal directory was fsynced after the intent's rename "
            "(after a power cut the append has no intent to resolve it)"
        )
        out.append(_violation("intent", message, intent, first))
    return out


def _appends(trace: Trace) -> dict[tuple[str, int], list[tuple[Op, int]]]:
    """Each episode's appends, by the intent of the thread that made them: the commit point (flip, or
    rename of a new chunk) and the line by which it was durable (fsync of the chunk, or of its directory).
    """
    current: dict[int, tuple[str, int]] = {}
    appends: dict[tuple[str, int], list[tuple[Op, int]]] = defaultdict(list)
    for op in trace.ops:
        key = trace.journal_key(op.path) if op.kind == "rename" else None
        if key is not None:
            current[op.tid] = key
        elif (trace.is_flip(op) or trace.is_chunk_creation(op)) and op.tid in current:
            if op.kind == "write":
                sync = trace.fsync_between(op.fid, op.done, trace.end)
            else:
                sync = trace.dir_fsync_between(os.path.dirname(op.path), op.done, trace.end)
            appends[current[op.tid]].append((op, sync.done if sync is not None else trace.end))
    return appends


def _durable_commits(trace: Trace) -> list[tuple[Op, int]]:
    """Each Parquet part rename whose data was fsynced, with the line by which its directory fsync returned."""
    out = []
    for rename in trace.of_kind("rename"):
        if trace.is_part(rename.path) and trace.data_durable_before(rename) is None:
            sync = trace.dir_fsync_between(os.path.dirname(rename.path), rename.done, trace.end)
            if sync is not None:
                out.append((rename, sync.done))
    return out


def check_png_unlinks_after_commit(trace: Trace) -> list[Violation]:
    """(d) A PNG is unlinked only after a durable metadata commit that started once its episode's append was durable.

    The commit holding the episode's row is recognised by time order only (Parquet is not decoded here).
    """
    appends, commits = _appends(trace), _durable_commits(trace)
    out = []
    reported: set[tuple[str, int]] = set()
    for unlink in trace.of_kind("unlink"):
        key = trace.png_key(unlink.path)
        if key is None or key in reported:
            continue
        before = [(op, durable) for op, durable in appends.get(key, []) if op.done < unlink.seq]
        if not before:
            reported.add(key)
            message = f"{trace.rel(unlink.path)} deleted, but no append of its episode came before"
            out.append(_violation("png", message, unlink))
            continue
        append, appended = before[-1]
        if not any(rename.seq > appended and durable < unlink.seq for rename, durable in commits):
            reported.add(key)
            later = next((rename for rename, _ in commits if rename.seq > append.done), None)
            message = (
                f"{trace.rel(unlink.path)} deleted before a durable metadata commit (rename + directory fsync) "
                "that followed its episode's durable append: a power cut here loses the episode"
            )
            out.append(_violation("png", message, append, unlink, later))
    return out


def check_intent_cleared_last(trace: Trace) -> list[Violation]:
    """(f) The intent is removed after its episode's PNG deletions, and only once they are durable."""
    out = []
    unlinks = trace.of_kind("unlink")
    for removal in (op for op in unlinks if trace.journal_key(op.path) is not None):
        pngs = [op for op in unlinks if trace.png_key(op.path) == trace.journal_key(removal.path)]
        early = [op for op in pngs if op.done < removal.seq]
        undurable = next((op for op in early if not trace.entry_durable(op.path, op.done, removal.seq)), None)
        if undurable is not None:
            message = f"intent {trace.rel(removal.path)} removed before the deletion of {trace.rel(undurable.path)} was durable"
            out.append(_violation("intent-last", message, undurable, removal))
        renames = (op.seq for op in trace.of_kind("rename") if op.path == removal.path and op.seq > removal.done)
        rewritten = next(renames, trace.end)  # a new intent for the same episode starts a new round
        late = next((op for op in pngs if removal.done < op.seq < rewritten), None)
        if late is not None:
            out.append(_violation("intent-last", "PNG deleted after its intent was removed", removal, late))
    return out


def check_new_directories(trace: Trace) -> list[Violation]:
    """(g) A directory created to hold published files is fsynced into its parent before the step relying on it."""
    out = []
    renames = [op for op in trace.of_kind("rename") if trace.is_published(op.path)]
    for mkdir in trace.of_kind("mkdir"):
        user = next((op for op in renames if op.path.startswith(mkdir.path + "/") and op.seq > mkdir.done), None)
        if user is None:
            continue
        limit, step = trace.step_limit(user)
        if not trace.entry_durable(mkdir.path, mkdir.done, limit):
            message = (
                f"directory {trace.rel(mkdir.path)} created but its parent not fsynced {_when(step, 'the step relying on it')}: "
                f"after a power cut {trace.rel(user.path)} can vanish with it"
            )
            out.append(_violation("new-dir", message, mkdir, user, step))
    return out


def check_writes_only_under_root(trace: Trace) -> list[Violation]:
    """(e) Every open for writing, create, rename, unlink, rmdir, mkdir and truncate names a path under the root.

    Writes through an fd need no check of their own: the open that made the fd was checked (by the
    real path strace resolved), and inherited fds (stdout, stderr) are the caller's.
    """
    outside = {path: call for path, call in reversed(trace.attempts) if trace.rel(path) is None}
    return [
        Violation("root", f"{path} changed (or tried) outside the root {trace.root}", (call,))
        for path, call in outside.items()
    ]


RULES: dict[str, Callable[[Trace], list[Violation]]] = {
    "publish": check_publish_renames,
    "flip": check_commit_flips,
    "intent": check_intent_before_append,
    "png": check_png_unlinks_after_commit,
    "root": check_writes_only_under_root,
    "intent-last": check_intent_cleared_last,
    "new-dir": check_new_directories,
}
