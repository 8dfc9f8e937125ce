"""``robovid-ship``: the shipper's entry point (systemd runs this as robovid-ship.service)."""

from __future__ import annotations

import sys

import structlog

from ..errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    JournalReplacedError,
)
from ..logs import configure_logging, log_run_ended
from ..stop_signals import stop_signals_handled
from .config import load_ship_settings
from .shipper import Shipper
from .store import RemoteStore

USAGE = """usage: robovid-ship

Ship the chunk files robovid-watch has finished (sealed) under ROBOVID_ROOT, and the segment
metadata that points at them, to ROBOVID_SHIP_DEST/ROBOVID_SHIP_ROBOT_ID/; verify each remote
copy (size and SHA-256 read back); for a LeRobot root, ship its dataset restricted to the
episodes whose videos are shipped (the prefix loads in LeRobotDataset); commit the remote
manifest; then delete local copies that the retention policy (ROBOVID_SHIP_KEEP_GB,
ROBOVID_SHIP_KEEP_DAYS) lets go and the remote metadata covers. SIGTERM, SIGINT or SIGHUP stop it. Configured only
by ROBOVID_* variables (systemd/robovid-ship.env); credentials come from the store's own
mechanisms (AWS_* variables, ~/.aws/credentials, ...).

Exit codes: 0 stopped, 1 error (systemd restarts), 78 bad configuration (no restart),
75 another robovid-ship holds the root.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        print(USAGE, file=sys.stdout if args[0] in ("-h", "--help") else sys.stderr)
        return EXIT_OK if args[0] in ("-h", "--help") else EXIT_USAGE
    try:
        settings = load_ship_settings()
    except ConfigError as error:
        print(f"robovid-ship: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_format)
    log = structlog.get_logger("robovid_ship")
    try:
        store = RemoteStore(settings.ship_dest, settings.ship_robot_id, settings.storage_options, settings.part_bytes)
    except (TypeError, ValueError, ImportError) as error:
        print(
            f"robovid-ship: Invalid configuration, nothing was touched:\n  ROBOVID_SHIP_STORAGE_OPTIONS="
            f"{settings.ship_storage_options!r} (with ROBOVID_SHIP_DEST={settings.ship_dest!r}): {error}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    shipper = Shipper(settings, store)
    try:
        with stop_signals_handled(shipper.request_stop):  # SIGHUP too, like robovid-watch
            return shipper.run()
    except JournalReplacedError as error:
        log.error("journal_replaced", detail=str(error))
        return EXIT_FAILURE
    except Exception as error:
        return log_run_ended(log, error, user="shipper's user")


if __name__ == "__main__":
    sys.exit(main())
