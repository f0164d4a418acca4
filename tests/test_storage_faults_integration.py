"""A data directory the worker cannot use, and a corrupt RocksDB directory.

Never silent loss: a data directory that cannot be created stops the worker with an error
naming it and a non-zero exit code; a RocksDB directory whose files are garbage is either
refused the same way or rebuilt from the changelog (the customer's state comes back whole).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Broker, Producer, Topics, Worker, private_topics
from tests.test_restart_integration import _login

pytestmark = [pytest.mark.integration, pytest.mark.faults]

LOGINS = 12


def _worker(broker: Broker, topics: Topics, data_dir: Path, log: Path) -> Worker:
    return Worker(broker, topics, data_dir, log, app_id=f"cg-{topics.prefix}")


async def test_a_data_directory_that_cannot_be_created_stops_the_worker(
    broker: Broker, tmp_path: Path
) -> None:
    topics = await private_topics(broker, "d")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory should be\n")
    worker = _worker(broker, topics, blocker / "data", tmp_path / "w.log").start()
    assert worker.proc is not None
    code = worker.proc.wait(120)
    log = worker.log()
    assert code == 2, log[-2000:]
    assert "data_dir_unusable" in log and str(blocker / "data") in log, log[-2000:]


async def test_a_corrupt_rocksdb_directory_is_refused_or_rebuilt_from_the_changelog(
    broker: Broker, tmp_path: Path
) -> None:
    topics = await private_topics(broker, "c")
    cid = f"corrupt-{uuid.uuid4().hex[:6]}"
    at = datetime.now(UTC) - timedelta(hours=2)
    producer = Producer(broker.bootstrap)
    await producer.start()
    data = tmp_path / "data"
    first = _worker(broker, topics, data, tmp_path / "w1.log").start()
    try:
        for i in range(LOGINS):
            await producer.send(topics.name("logins"), _login(cid, i, at), cid)
        await first.wait_customer(cid, lambda s: s["features"]["logins_7d"] == LOGINS)
    finally:
        await producer.stop()
        assert first.stop() == 0, first.log()[-3000:]
    databases = [p for p in data.rglob("*.db") if p.is_dir()]
    assert databases
    for db in databases:  # every file of every partition's database is garbage now
        for f in db.iterdir():
            if f.is_file():
                f.write_bytes(b"\x00garbage\xff" * 64)
    second = _worker(broker, topics, data, tmp_path / "w2.log").start()
    try:
        try:
            snap = await second.wait_customer(cid, lambda s: True, timeout=90)
        except AssertionError:
            snap = None
        if snap is None:  # refused: a clear error and a non-zero exit code
            assert second.proc is not None
            code = second.proc.wait(60)
            assert code != 0
            assert "state_store_unreadable" in second.log(), second.log()[-3000:]
        else:  # rebuilt from the changelog, whole
            snap = await second.wait_customer(
                cid, lambda s: s["features"]["logins_7d"] == LOGINS, timeout=60
            )
            assert snap["features"]["logins_7d"] == LOGINS
            assert "state_store_corrupt" in second.log()  # said loudly, moved aside
            assert list(data.rglob("*.db.corrupt-*"))
    finally:
        second.stop()
