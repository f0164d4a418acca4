"""The Faust app, its topics and its one table, built from :class:`Settings`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TopicT
from faust.types.auth import CredentialsT

from streams.gc_tuning import tune_gc
from streams.kafka_security import ssl_context
from streams.settings import Settings

DEFAULT_BROKER = "kafka://127.0.0.1:9092"
TABLE_NAME = "customer-state"
log = logging.getLogger("churnguard.app")


@dataclass(frozen=True)
class Topics:
    """Every topic churnguard reads or writes."""

    inputs: dict[str, TopicT]  # event kind → input topic
    rekeyed: TopicT
    ticks: TopicT
    alerts: TopicT
    tasks: TopicT
    health: TopicT
    deadletter: TopicT
    rfm: TopicT  # per-partition RFM summaries, read by every worker


class App(faust.App):
    """Faust's app with hooks that run first when it stops (``before_stop``).

    Faust stops the consumer first, which closes the tables' stores, then flushes and closes
    the producer. Work in flight of our own (the input reader's last flush and commit) must
    end before either; a hook that fails is logged and the stop goes on.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_stop: list[Callable[[], Awaitable[None]]] = []
        self.exit_code: int | None = None  # set by a crash whose reason names one

    async def crash(self, reason: BaseException) -> None:
        """Crash as Faust does; remember the reason's ``exit_code`` (the CLI exits with it)."""
        code = getattr(reason, "exit_code", None)
        if isinstance(code, int) and self.exit_code is None:
            self.exit_code = code
        await super().crash(reason)

    async def on_stop(self) -> None:
        """Run the ``before_stop`` hooks, then Faust's own stop."""
        for hook in self.before_stop:
            try:
                await hook()
            except Exception as exc:
                log.error("before_stop_hook_failed hook=%r error=%r action=stop", hook, exc)
        await super().on_stop()


class Worker(faust.Worker):
    """Faust's worker without its terminal spinner.

    At log level WARN and above (Faust's default) the spinner sets the root logger to DEBUG
    so that every debug call spins it; aiokafka and Faust then build a log record for every
    message sent or received and drop it (about 5 % of the worker's time under a profiler).
    Without the spinner the root logger keeps the level given with ``-l``.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """No spinner handler: the root logger stays at ``level``."""
        self.spinner = None

    async def on_startup_finished(self) -> None:
        """Once started: tune the garbage collector (:func:`tune_gc`)."""
        await super().on_startup_finished()
        settings = getattr(self.app, "churnguard_settings", None)
        if settings is not None:
            tune_gc(settings.gc_gen0_threshold)


def _raw_topic(app: faust.App, name: str, settings: Settings, **kwargs: object) -> TopicT:
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        replicas=settings.replication_factor,
        internal=True,  # created with our partition count when missing (see docs/broker.md)
        **kwargs,  # type: ignore[arg-type]
    )


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's credentials for the configured Kafka security protocol (None: plaintext)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        assert context is not None
        return faust.SSLCredentials(context)
    password = settings.kafka_sasl_password
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password.get_secret_value() if password else None,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )


EXACTLY_ONCE_UNSUPPORTED = (
    "CHURNGUARD_PROCESSING_GUARANTEE=exactly_once is not supported yet: the input reader and "
    "the write-behind flush produce outside Kafka transactions, so Faust's exactly_once would "
    "not cover them. Use at_least_once (the default): input offsets are committed only after "
    "the state changelog and every output are acknowledged, a crash re-reads the uncommitted "
    "tail, and event_id deduplication and deterministic alert and task ids make the repeats "
    "harmless (docs/operations.md, 'Processing guarantee')"
)


def check_supported(settings: Settings) -> None:
    """Refuse settings the worker cannot honour (raises ValueError with the reason)."""
    if settings.processing_guarantee == "exactly_once":
        raise ValueError(EXACTLY_ONCE_UNSUPPORTED)


def create_app(settings: Settings) -> faust.App:
    """A configured Faust app (no agents yet); ``app.churnguard_topics`` and table attached.

    Raises ValueError for settings the worker cannot honour (:func:`check_supported`).
    """
    check_supported(settings)
    conf: dict[str, object] = {
        "broker": settings.broker or DEFAULT_BROKER,
        "store": settings.store,
        "datadir": str(settings.data_dir),
        "web_port": settings.web_port,
        "web_host": settings.web_host,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "broker_session_timeout": settings.broker_session_timeout_s,
        "broker_heartbeat_interval": settings.broker_heartbeat_interval_s,
        "consumer_auto_offset_reset": "earliest",
        # Unflushed events stay unacked; on rebalance or stop we commit what was flushed
        # and let the next owner replay the rest (deduplicated by event_id).
        "stream_wait_empty": False,
        "autodiscover": False,
        "table_standby_replicas": settings.standby_replicas,
        "processing_guarantee": "at_least_once",
        # a changelog behind the local store (it lost records) would stop Faust with
        # ConsistencyError; the pipeline writes the local states back instead
        # (Pipeline.restore_lost_changelog, after every assignment)
        "recovery_consistency_check": False,
        "Worker": Worker,
    }
    credentials = broker_credentials(settings)
    if credentials is not None:
        conf["broker_credentials"] = credentials
    conf["producer_linger"] = settings.producer_linger_ms / 1000.0
    conf["producer_max_batch_size"] = settings.producer_max_batch_size
    app = App(settings.app_id, **conf)
    compact = {"cleanup.policy": "compact"}
    delete = {"cleanup.policy": "delete"}
    topics = Topics(
        inputs={
            kind: _raw_topic(app, name, settings, config=compact if kind == "account" else delete)
            for kind, name in settings.input_topics.items()
        },
        rekeyed=_raw_topic(app, settings.topic_rekeyed, settings, config=delete),
        ticks=_raw_topic(app, settings.topic_ticks, settings, config={"retention.ms": "3600000"}),
        alerts=_raw_topic(app, settings.topic_alerts, settings, config=delete),
        tasks=_raw_topic(app, settings.topic_tasks, settings, config=delete),
        health=_raw_topic(app, settings.topic_health, settings, config=compact),
        deadletter=_raw_topic(app, settings.topic_deadletter, settings, config=delete),
        rfm=app.topic(
            settings.topic_rfm,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=1,
            replicas=settings.replication_factor,
            internal=True,
            config=compact,
        ),
    )
    table = app.Table(
        TABLE_NAME,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
    )
    # Faust derives table serializers from the types ("json" for bytes); states are
    # already encoded (streams.storage), so store them as they are.
    table.key_serializer = "raw"  # type: ignore[attr-defined]
    table.value_serializer = "raw"  # type: ignore[attr-defined]
    app.churnguard_topics = topics  # type: ignore[attr-defined]
    app.churnguard_table = table  # type: ignore[attr-defined]
    app.churnguard_settings = settings  # type: ignore[attr-defined]
    return app
