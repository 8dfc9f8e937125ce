"""The service's backlog watch, fed samples at chosen times: it warns when the backlog grew over a whole window."""

from __future__ import annotations

import itertools

from structlog.testing import capture_logs

from robovid_watch.health import BacklogWatch


def _warnings(samples: list[tuple[float, int]], window_s: float = 1.0) -> list[float]:
    """The times at which ``backlog_growing`` was logged."""
    watch = BacklogWatch(window_s)
    times = []
    for now, backlog in samples:
        with capture_logs() as logs:
            watch.sample(backlog, now=now)
        times += [now for entry in logs if entry["event"] == "backlog_growing"]
    return times


def test_a_backlog_growing_at_every_sample_is_reported_whatever_the_sampling_period() -> None:
    for period in (0.05, 0.21, 0.26, 0.34, 0.5, 1.0, 1.7):  # some never put a sample near the window's edge
        samples = [(i * period, 1 + i) for i in range(int(4 / period) + 2)]
        warned = _warnings(samples)
        assert warned, f"no warning at a sampling period of {period} s"
        assert warned[0] >= 1.0 and warned[0] <= 1.0 + period + 1e-9


def test_a_steady_backlog_is_not_reported() -> None:
    assert _warnings([(i * 0.2, 5) for i in range(50)]) == []


def test_a_backlog_that_emptied_within_the_window_is_not_reported() -> None:
    samples = [(i * 0.2, i % 6) for i in range(50)]  # grows, but reaches zero every 1.2 s
    assert _warnings(samples, window_s=1.0) == []


def test_a_backlog_that_keeps_growing_is_reported_once_a_window() -> None:
    warned = _warnings([(i * 0.1, 1 + i) for i in range(100)], window_s=2.0)
    assert len(warned) >= 2
    assert all(later - earlier > 2.0 for earlier, later in itertools.pairwise(warned))
