"""LeRobot v3's task table (``meta/tasks.parquet``) and the tasks of its episodes: written and read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from robovid.errors import LeRobotMetadataError
from robovid.layout import lerobot_episodes_files, tasks_path


def tasks_parquet(tasks: Sequence[str]) -> bytes:
    """``meta/tasks.parquet`` as pandas writes it: column ``task_index``, the task text as the index."""
    table = pa.table(
        {
            "task_index": pa.array(range(len(tasks)), pa.int64()),
            "__index_level_0__": pa.array(list(tasks), pa.string()),
        }
    )
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": "__index_level_0__",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
    }
    table = table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="snappy")
    return bytes(sink.getvalue())


def read_tasks(root: Path) -> list[str]:
    """The task texts of a root's ``meta/tasks.parquet`` in ``task_index`` order (none when it has none)."""
    path = tasks_path(root)
    if not path.exists():
        return []
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as error:
        raise LeRobotMetadataError(f"{path}: unreadable ({error}). Restore it, or export the root again.") from error
    names = {int(r["task_index"]): r.get("__index_level_0__", r.get("task")) for r in rows}
    return [str(names[i]) for i in sorted(names)]


def episode_tasks(root: Path) -> dict[int, list[str]]:
    """Each episode's ``tasks`` from a root's LeRobot episodes files (none when it has none)."""
    found: dict[int, list[str]] = {}
    for path in lerobot_episodes_files(root):
        try:
            table = pq.read_table(path, columns=["episode_index", "tasks"])
        except (OSError, pa.ArrowException, KeyError) as error:
            raise LeRobotMetadataError(
                f"{path}: unreadable ({error}). Restore it, or export the root again."
            ) from error
        for row in table.to_pylist():
            found[int(row["episode_index"])] = [str(t) for t in row["tasks"] or []]
    return found
