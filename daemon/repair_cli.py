"""``robovid verify --repair ROOT``: rebuild the rows no longer in the segment table from the chunk files' records,
then verify as ``robovid verify`` does (:func:`robovid.repair.repair_root`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from robovid.errors import MetadataError, RepairError
from robovid.layout import info_json_path
from robovid.remote import is_url

from .errors import EXIT_FAILURE

LEROBOT_NOTE = (
    "LeRobot metadata is not rewritten here: robovid-watch fills the rebuilt rows' video columns into LeRobot's "
    "episodes files at its next pass (roots it exported: run `robovid lerobot ROOT` to export them again)"
)


def run_repair(root: str | Path, as_json: bool) -> tuple[int, dict[str, Any]]:
    """Rebuild what can be rebuilt; (exit status so far, report). The caller verifies the root afterwards."""
    from robovid.repair import repair_root

    if is_url(root):
        print(
            "robovid verify --repair: only a local root can be repaired (a remote root holds what was shipped).",
            file=sys.stderr,
        )
        return EXIT_FAILURE, {}
    try:
        report = repair_root(root)
    except (RepairError, MetadataError, OSError) as error:
        print(f"robovid verify --repair: {error}", file=sys.stderr)
        return EXIT_FAILURE, {}
    lerobot = info_json_path(root).is_file()
    if not as_json:
        for row in report.rebuilt:
            last = row["first_frame"] + row["num_frames"] - 1
            print(
                f"REBUILT {row['video_key']!r} episode {row['episode_index']} take {row['take']}: "
                f"frames {row['first_frame']}..{last} of {row['chunk']}"
            )
        for message in report.refused:
            print(f"NOT REBUILT {message}")
        print(f"{len(report.rebuilt)} rows rebuilt, {len(report.refused)} runs of frames left without a row")
        if lerobot and report.rebuilt:
            print(LEROBOT_NOTE)
    summary: dict[str, Any] = {"rebuilt": report.rebuilt, "not_rebuilt": report.refused}
    if lerobot and report.rebuilt:
        summary["lerobot"] = LEROBOT_NOTE
    return (EXIT_FAILURE if report.refused else 0), summary
