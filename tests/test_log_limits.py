"""The repeat limiter on Kafka client loggers (pure: a fake clock, no broker)."""

from __future__ import annotations

import logging

from agents.log_limits import RepeatLimiter, limit_client_logs


def _record(msg: str, level: int = logging.ERROR, name: str = "aiokafka") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, ("node", 111), None)


def test_repeats_are_dropped_within_the_window_and_counted_after_it() -> None:
    now = [0.0]
    limiter = RepeatLimiter(30.0, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    assert limiter.filter(_record(template))
    passed = 1
    for _ in range(149):  # 30 s of aiokafka retries, five a second
        now[0] += 0.2
        passed += limiter.filter(_record(template))
    assert passed == 1
    now[0] = 30.0  # the window is over: the next one passes, with the count of the rest
    record = _record(template)
    assert limiter.filter(record)
    assert "(suppressed=149 in the last 30s)" in str(record.msg)


def test_other_messages_loggers_and_info_lines_pass() -> None:
    limiter = RepeatLimiter(30.0, clock=lambda: 0.0)
    assert limiter.filter(_record("a %s %s"))
    assert limiter.filter(_record("b %s %s"))
    assert limiter.filter(_record("a %s %s", name="aiokafka.conn"))
    assert limiter.filter(_record("a %s %s", level=logging.INFO))
    assert limiter.filter(_record("a %s %s", level=logging.INFO))
    assert not limiter.filter(_record("a %s %s"))


def test_attached_to_every_aiokafka_logger() -> None:
    import aiokafka.consumer.fetcher  # noqa: F401  (creates its module logger)

    limit_client_logs()
    limit_client_logs()  # again (every app built in a process): still one per logger

    def limiters(name: str) -> int:
        return sum(isinstance(f, RepeatLimiter) for f in logging.getLogger(name).filters)

    assert limiters("aiokafka") == 1
    assert limiters("aiokafka.consumer.fetcher") == 1
    assert limiters("churnguard") == 0
