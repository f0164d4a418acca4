"""The data directory's filesystem fills up under a running worker.

The worker's data directory is on a small tmpfs mounted for the test (root only; skipped with
the reason elsewhere). Once its customers' first logins are stored, a file fills the
filesystem and more logins arrive: the worker must stop with ``state_store_write_failed
reason=disk_full`` naming the database and exit code 74 (nothing of the failed flush
committed); restarted on the still-full disk it must refuse at start-up (exit 2,
``data_dir_unusable``); once space is freed, a restart brings every customer back with every
login produced (the uncommitted input is read again): nothing valid lost.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.store import EXIT_STORAGE
from tests.conftest import Broker, Producer, Topics, Worker, private_topics
from tests.test_restart_integration import _login

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(300)]

SIZE = "32m"
CUSTOMERS = 20
BEFORE = 5  # logins per customer stored before the disk fills
AFTER = 5  # logins per customer sent once it is full


@contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (skips the test where mounting is not allowed)."""
    path.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "churnguard-test", str(path)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"cannot mount a {size} tmpfs here (needs root): {exc} {detail.decode()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem is full; returns the bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        for size in (4096, 512, 1):  # the last pages too
            while True:
                try:
                    written += f.write(b"\0" * size)
                except OSError:
                    break
    return written


async def _send(producer: Producer, topics: Topics, customers: list[str], first: int) -> None:
    at = datetime.now(UTC) - timedelta(hours=2)
    for cid in customers:
        for i in range(first, first + (BEFORE if first == 0 else AFTER)):
            await producer.send(topics.name("logins"), _login(cid, i, at), cid)


async def test_disk_full_stops_the_worker_and_loses_nothing(broker: Broker, tmp_path: Path) -> None:
    topics = await private_topics(broker, "x")
    customers = [f"disk-{i}-{topics.prefix}" for i in range(CUSTOMERS)]
    app_id = f"cg-{topics.prefix}"
    producer = Producer(broker.bootstrap)
    await producer.start()
    with small_filesystem(tmp_path / "small", SIZE) as mount:
        data = mount / "data"

        def worker(n: int) -> Worker:
            return Worker(broker, topics, data, tmp_path / f"worker{n}.log", app_id=app_id)

        first = worker(1).start()
        try:
            await _send(producer, topics, customers, 0)
            for cid in customers:
                await first.wait_customer(cid, lambda s: s["features"]["logins_7d"] == BEFORE)
            filler = mount / "filler"
            filled = fill(filler)
            await _send(producer, topics, customers, BEFORE)
            assert first.proc is not None
            code = first.proc.wait(120)
        finally:
            first.stop()
        log = first.log()
        assert code == EXIT_STORAGE, log[-3000:]
        assert "state_store_write_failed" in log and "reason=disk_full" in log, log[-3000:]
        assert str(data) in log

        still_full = worker(2).start()
        assert still_full.proc is not None
        refused = still_full.proc.wait(120)
        assert refused == 2, still_full.log()[-3000:]
        assert "data_dir_unusable" in still_full.log()
        assert "No space left on device" in still_full.log()

        filler.unlink()
        third = worker(3).start()
        try:
            states = [
                await third.wait_customer(
                    cid, lambda s: s["features"]["logins_7d"] == BEFORE + AFTER, timeout=90
                )
                for cid in customers
            ]
        finally:
            assert third.stop() == 0, third.log()[-3000:]
            await producer.stop()
        quarantined = "state_store_corrupt" in third.log()
    whole = sum(s["features"]["logins_7d"] == BEFORE + AFTER for s in states)
    print(
        f"\ndisk full: {SIZE} tmpfs, filled with {filled / 1e6:.1f} MB; worker exit {code} "
        f"(state_store_write_failed reason=disk_full), restart on the full disk exit {refused} "
        f"(data_dir_unusable); after freeing: {whole} of {CUSTOMERS} customers with all "
        f"{BEFORE + AFTER} logins; databases moved aside: {quarantined}"
    )
    assert whole == CUSTOMERS
