"""bench.profile_categories: only the main thread's samples count, with or without --native."""

from __future__ import annotations

from bench.profile_categories import categorise

MAIN = "_run_module_as_main (<frozen runpy>:198);InputReader.step (agents/reader.py:257)"
ENGINE = MAIN + ";apply_batch (rules/batch.py:60)"
# py-spy --native puts the C frames that start a thread before its first Python frame
CONSUMER_NATIVE = (
    "0x7f755124524a (libc.so.6);Thread._bootstrap (threading.py:995);select (selectors.py:469)"
)
CONSUMER = "Thread._bootstrap (threading.py:995);select (selectors.py:469)"


def test_other_threads_are_left_out_with_and_without_native_frames() -> None:
    raw = f"{ENGINE} 3\n{MAIN} 1\n{CONSUMER_NATIVE} 40\n{CONSUMER} 50\n"
    counts, total = categorise(raw)
    assert total == 4
    assert counts["engine: apply and advance"] == 3


def test_all_threads_counts_them() -> None:
    counts, total = categorise(f"{ENGINE} 3\n{CONSUMER_NATIVE} 40\n", all_threads=True)
    assert total == 43
    assert counts["waiting for I/O (select)"] == 40
