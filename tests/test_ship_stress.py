"""`make stress`: the shipper killed (kill -9) at random moments, with the network cut at random, many times.

After every kill the oracle holds (each original file local and intact, or committed and
intact in the bucket); a last undisturbed run then finishes, and every sealed file is
committed once, intact, with no temp object or open multipart upload left.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from conftest import ShipTemplate
from daemon_harness import wait_for
from s3server import FaultProxy, MotoServer
from ship_harness import (
    BIG,
    SMALL,
    Bucket,
    RootSpec,
    check_fully_shipped,
    check_nothing_lost,
    copy_root,
    file_hashes,
    journal_states,
    s3_dest,
    start_shipper,
)

ROUNDS = 30


@pytest.mark.slow
@pytest.mark.parametrize("spec", [SMALL, BIG], ids=["small-files", "multipart"])
def test_random_kills_and_network_cuts_lose_nothing(
    tmp_path: Path, s3_server: MotoServer, ship_template: ShipTemplate, spec: RootSpec
) -> None:
    rng = random.Random(11)
    root = copy_root(ship_template(spec), tmp_path / "root")
    originals = file_hashes(root)
    bucket = Bucket(s3_server, s3_server.new_bucket())
    proxy = FaultProxy(s3_server.port).start()
    try:
        for _round in range(ROUNDS):
            proxy.upload_rate = rng.choice([None, 200_000, 2_000_000])
            shipper = start_shipper(
                root, s3_dest(bucket.name), proxy.url, ROBOVID_SHIP_RECHECK_S=rng.choice(["0", "86400"])
            )
            deadline = time.monotonic() + rng.uniform(0.5, 6.0)
            while time.monotonic() < deadline and shipper.process.poll() is None:
                if rng.random() < 0.05:
                    proxy.cut() if proxy.is_up else proxy.restore()
                time.sleep(0.1)
            shipper.kill()
            proxy.restore()
            check_nothing_lost(root, originals, bucket.objects())
        proxy.upload_rate = None
        final = start_shipper(root, s3_dest(bucket.name), proxy.url)
        try:
            wait_for(lambda: set(journal_states(root).values()) == {"pruned"}, "all shipped at last", daemon=final)
        finally:
            assert final.stop() == 0
        check_fully_shipped(root, originals, bucket)
    finally:
        proxy.close()
