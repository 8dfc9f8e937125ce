"""Logging setup for the entry points: JSON lines under systemd, a readable console on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure_logging(log_format: str = "auto", level: int = logging.INFO) -> None:
    """Configure structlog once, in an entry point (library modules only call get_logger)."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr if not use_json else sys.stdout),
        cache_logger_on_first_use=True,
    )


def log_run_ended(log: Any, error: Exception, user: str) -> int:
    """Log why a run of an entry point ended with ``error`` and return its exit code.

    Shared by robovid-watch and robovid-ship for what both can hit; each handles its own errors
    first. Call it inside the ``except`` block, so a crash is logged with its traceback.
    """
    from .errors import EXIT_FAILURE, EXIT_LOCKED, RootLockedError

    if isinstance(error, RootLockedError):
        log.error("root_locked", detail=str(error))
        return EXIT_LOCKED
    if isinstance(error, OSError):
        log.error(
            "root_unusable",
            detail=str(error),
            path=getattr(error, "filename", None),
            action=f"check that the recording root is mounted read-write and writable by the {user}",
        )
        return EXIT_FAILURE
    log.exception("crashed", detail=str(error))
    return EXIT_FAILURE
