"""Checks before a worker starts: what would otherwise fail deep inside Faust, said plainly."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("churnguard.preflight")
PROBE = ".churnguard-write-probe"


class PreflightError(RuntimeError):
    """The worker cannot start; the message says why and what to check."""


def check_data_dir(data_dir: Path) -> None:
    """Create ``data_dir`` if needed and prove it takes a write and an fsync.

    Raises PreflightError naming the directory and the OS error (not a directory, read-only,
    permission denied, no space left) instead of letting RocksDB fail on its first write.
    """
    probe = data_dir / PROBE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as f:
            f.write(b"churnguard\n" * 512)
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as exc:
        log.critical("data_dir_unusable path=%s error=%r action=exit", data_dir, exc)
        raise PreflightError(
            f"data_dir_unusable path={data_dir} error={exc.strerror or exc!r}: "
            "CHURNGUARD_DATA_DIR must be a writable directory with free space "
            "(it holds the RocksDB state tables)"
        ) from exc


def quarantine_corrupt_stores(data_dir: Path) -> list[Path]:
    """Move every RocksDB database under ``data_dir`` that does not open aside.

    Faust then rebuilds those partitions from their changelog topic (the source of truth),
    as for a worker without its volume; the moved directory stays for inspection. Returns
    where each corrupt database went (logged as ``state_store_corrupt``).
    """
    import rocksdict

    moved: list[Path] = []
    if not data_dir.is_dir():
        return moved
    for db in sorted(p for p in data_dir.rglob("*.db") if p.is_dir()):
        try:
            rocksdict.Rdict(str(db), access_type=rocksdict.AccessType.read_only()).close()
        except Exception as exc:  # rocksdict raises a bare Exception("Corruption: …")
            target = db.with_name(f"{db.name}.corrupt-{int(time.time())}")
            db.rename(target)
            moved.append(target)
            log.critical(
                "state_store_corrupt path=%s error=%r action=moved_aside_rebuild_from_changelog "
                "moved_to=%s",
                db,
                exc,
                target,
            )
    return moved
