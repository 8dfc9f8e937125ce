"""``robovid-watch``: the service's entry point (systemd runs this)."""

from __future__ import annotations

import os
import sys

import structlog

from .config import load_settings
from .errors import (
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    MetadataError,
    ObserverDiedError,
    RootReplacedError,
)
from .logs import configure_logging, log_run_ended
from .memory import limit_malloc_arenas
from .service import Service
from .stop_signals import stop_signals_handled

USAGE = """usage: robovid-watch

Watch ROBOVID_ROOT/images for finished episode folders, encode each into the camera's
chunk video under ROBOVID_ROOT/videos, record it in ROBOVID_ROOT/.cache/huggingface/robovid/segments,
then delete its PNGs. Configured only by ROBOVID_* environment variables; see
systemd/robovid.env for every variable, its default and allowed values.

Exit codes: 0 stopped, 1 error (systemd restarts), 65 unreadable segments metadata and
78 bad configuration (systemd does not restart), 75 another instance holds the root.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        print(USAGE, file=sys.stdout if args[0] in ("-h", "--help") else sys.stderr)
        return EXIT_OK if args[0] in ("-h", "--help") else EXIT_USAGE
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only, not its banner on every episode
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"robovid-watch: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_format)
    limit_malloc_arenas(settings.malloc_arenas)  # before any worker thread exists
    log = structlog.get_logger("robovid_watch")
    service = Service(settings)
    try:
        # SIGTERM, SIGINT and SIGHUP (a closed terminal, a careless kill -1) all stop it cleanly
        with stop_signals_handled(service.request_stop):
            return service.run()
    except MetadataError as error:
        log.error(
            "metadata_unreadable",
            detail=str(error),
            action="restore the file from a backup, or move it aside and run `robovid verify --repair` as the detail "
            "says; then start again",
        )
        return EXIT_DATA
    except RootReplacedError as error:
        log.error("root_replaced", detail=str(error), root=str(settings.root))
        return EXIT_FAILURE
    except ObserverDiedError as error:
        log.error("observer_died", detail=str(error))
        return EXIT_FAILURE
    except Exception as error:
        return log_run_ended(log, error, user="service user")


if __name__ == "__main__":
    sys.exit(main())
