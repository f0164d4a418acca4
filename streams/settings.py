"""One pydantic settings object for the whole worker; every field is a ``CHURNGUARD_*`` env var."""

from __future__ import annotations

from datetime import time
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.state import StateConfig

BUILTIN_PACKS = Path(__file__).resolve().parent.parent / "rules" / "packs"


class Settings(BaseSettings):
    """Runtime configuration; defaults suit a single worker against a local Kafka."""

    model_config = SettingsConfigDict(env_prefix="CHURNGUARD_", extra="ignore")

    app_id: str = Field("churnguard", description="Faust app id = consumer group id")
    broker: str = Field("kafka://127.0.0.1:9092", description="Faust broker URL(s)")
    store: str = Field("rocksdb://", description="table store: rocksdb:// or memory://")
    data_dir: Path = Field(Path("data"), description="where RocksDB tables live")
    partitions: int = Field(4, ge=1, description="partitions of every churnguard topic")
    replication_factor: int = Field(1, ge=1)
    # how every Kafka client connects (Faust's, the reader's, the sink's, the tools'):
    # streams/kafka_security.py; docs/operations.md "Security"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism with SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password")
    kafka_ca_file: Path | None = Field(
        None, description="CA bundle for the brokers' certificates (SSL, SASL_SSL; default: system)"
    )
    kafka_cert_file: Path | None = Field(None, description="client certificate (mutual TLS)")
    kafka_key_file: Path | None = Field(None, description="private key of kafka_cert_file")
    web_port: int = Field(6066, description="worker web port: /metrics, /customers/{id}/")
    web_host: str = Field("127.0.0.1", description="interface the web port binds to")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="read model (later issues)")
    serve_host: str = Field(
        "127.0.0.1", description="interface `churnguard serve` (HTTP API, dashboard) binds to"
    )
    serve_port: int = Field(
        6067, ge=0, le=65535, description="port of `churnguard serve`: API, dashboard, /metrics"
    )
    serve_token: SecretStr | None = Field(
        None,
        min_length=16,
        description="bearer token the API requires (`Authorization: Bearer …`; the dashboard "
        "takes it once as ?token=…); unset: the API is open, so keep serve_host on loopback",
    )

    topic_logins: str = "crm.logins"
    topic_orders: str = "crm.orders"
    topic_tickets: str = "crm.tickets"
    topic_contacts: str = "crm.contacts"
    topic_accounts: str = "crm.accounts"
    topic_task_updates: str = "cs.task-updates"
    topic_alerts: str = "cs.alerts"
    topic_tasks: str = "cs.tasks"
    topic_health: str = "cs.customer-health"
    topic_deadletter: str = "churnguard.deadletter"
    topic_rekeyed: str = "churnguard.rekeyed"
    topic_ticks: str = "churnguard.ticks"
    topic_rfm: str = "churnguard.rfm-sketches"

    horizon_days: int = Field(
        120, ge=97, description="how far back daily buckets reach (the 90-day baseline needs 97)"
    )
    recent_event_ids: int = Field(512, ge=16, description="event_ids kept per customer for dedup")
    flush_interval_s: float = Field(
        5.0,
        gt=0,
        description="max age of unpersisted state, and of uncommitted input (what a crash "
        "makes the worker read again); a sweep (every tick) flushes too. Quix Streams "
        "commits every 5 s by default, Kafka Streams every 30 s",
    )
    flush_max_dirty: int = Field(
        10_000,
        ge=1,
        description="flush a partition at this many dirty customers (checked between "
        "batches; a few KiB of memory each); more means fewer writes of the same customer",
    )
    state_cache_customers: int = Field(
        50_000,
        ge=0,
        description="persisted customer states a worker keeps decoded between flushes (a few "
        "KiB each), so a customer's next events skip the table read and decode; 0: none",
    )
    tick_interval_s: float = Field(1.0, gt=0, description="how often partitions sweep and flush")
    clock: Literal["wall", "event"] = Field(
        "wall", description="sweep clock: wall time (live) or event-time watermark (replay)"
    )
    allowed_lateness_s: float = Field(
        300.0,
        ge=0,
        description="watermark = max event time seen on a partition - this; older events are "
        "late: they update state but are evaluated at the watermark",
    )
    watermark_idle_s: float = Field(
        10.0,
        gt=0,
        description="an input topic that read nothing for this long stops holding its "
        "partitions' watermark back",
    )
    max_idle_ms: float = Field(
        3000.0,
        ge=0,
        description="how long a partition waits for an input topic that has unread data on the "
        "broker but nothing fetched yet, before it processes the other topics without it; "
        "longer is safer while catching up (no event is applied before older events of another "
        "topic), shorter lowers latency when one topic's broker is slow (Kafka Streams' "
        "max.task.idle.ms)",
    )
    max_buffered_records: int = Field(
        20000,
        ge=100,
        description="records fetched ahead per input topic partition before fetching pauses "
        "(a topic far ahead in event time waits in memory for the others)",
    )
    max_buffered_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024 * 1024,
        description="bytes (of the values as fetched) buffered ahead per input topic partition "
        "before fetching pauses: with large events the record limit pauses sooner, so memory "
        "stays bounded whatever the events' size",
    )
    fetch_partition_max_bytes: int = Field(
        1048576,
        ge=1024,
        description="most bytes one fetch brings per input topic partition (aiokafka's "
        "max_partition_fetch_bytes; a record larger than this is still fetched alone)",
    )
    fetch_max_wait_ms: int = Field(
        20,
        ge=0,
        description="how long the broker may hold a fetch of the input topics while it has "
        "nothing new; Apache Kafka answers as soon as data arrives, but a broker that holds "
        "the fetch the whole time (Tansu does) adds up to this much to an alert's latency",
    )
    broker_unreachable_s: float = Field(
        15.0,
        gt=0,
        description="with no fetch answered by the broker for this long, /readyz says not ready "
        "(broker unreachable) and the worker logs broker_unreachable once; it keeps retrying",
    )
    batch_max_records: int = Field(
        5000, ge=1, description="records of one partition handed to the engine in one batch"
    )
    max_future_skew_s: float = Field(
        86400.0, gt=0, description="events further ahead of wall time are dead-lettered"
    )
    deadletter_max_raw_bytes: int = Field(16384, ge=256)
    max_event_bytes: int = Field(
        524288,
        ge=1024,
        description="input values larger than this are dead-lettered (reason too_large) before "
        "they are parsed; Apache Kafka's default message.max.bytes is 1 MiB",
    )
    rule_packs: list[Path] = Field(default_factory=lambda: [BUILTIN_PACKS])
    task_fallback_assignee: str = Field(
        "cs-queue", description="assignee when the account lacks the rule's role"
    )
    task_fallback_team: list[str] = Field(
        default_factory=list,
        description="if set, the fallback is spread over these person ids by a stable hash "
        "of the customer (the same customer always lands with the same person)",
    )
    business_timezone: str = Field("UTC", description="IANA zone of business hours")
    business_hours: str = Field(
        "09:00-17:00", pattern=r"^\d\d:\d\d-\d\d:\d\d$", description="local opening hours"
    )
    business_days: list[int] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4], description="working weekdays, Monday = 0"
    )
    reporting_currency: str = "EUR"
    currency_rates: dict[str, float] = Field(
        default_factory=lambda: {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "CHF": 1.05},
        description="static rates into the reporting currency",
    )
    source: str = Field("urn:churnguard", description="ce_source of every output")
    scoring_enabled: bool = Field(
        True, description="score tiers, health, stages, RFM and CLV (false: rules only)"
    )
    clv_model: Path | None = Field(
        None, description="parameter file from `churnguard fit` (no CLV values without one)"
    )
    snapshot_interval_s: float = Field(
        3600.0, ge=0, description="at most one customer-health snapshot per customer per this"
    )
    snapshot_health_delta: int = Field(
        5, ge=1, le=100, description="health points a score must move to be material alone"
    )
    output_names: bool = Field(
        True,
        description="false: alerts, tasks and snapshots show customer and contact ids where "
        "they would show account and contact names (summaries, titles, evidence, `name`)",
    )
    rfm_refresh_s: float = Field(
        300.0, gt=0, description="how often partitions publish RFM summaries and cut points refresh"
    )

    # Redis read model (agents/redis_sink.py, docs/read-model.md)
    redis_key_prefix: str = Field("churnguard:", description="prefix of every read-model key")
    redis_username: str | None = Field(None, description="Redis ACL user (None: default user)")
    redis_password: SecretStr | None = Field(None, description="Redis password (AUTH)")
    redis_tls: bool = Field(False, description="connect with TLS (as a rediss:// URL does)")
    redis_ca_file: Path | None = Field(None, description="CA bundle that signed Redis' cert")
    redis_cert_file: Path | None = Field(None, description="client certificate for mutual TLS")
    redis_key_file: Path | None = Field(None, description="private key of redis_cert_file")
    redis_timeout_s: float = Field(
        5.0, gt=0, description="Redis connect and command timeout: how soon an outage shows"
    )
    redis_churned_ttl_s: int = Field(
        30 * 86400,
        ge=0,
        description="TTL of the keys of a customer whose lifecycle stage is churned (0: keep)",
    )
    redis_recent_alerts: int = Field(
        10000, ge=1, description="alert events kept in the alerts:recent stream (about)"
    )
    readmodel_batch_max: int = Field(
        500, ge=1, description="records the read-model sink writes to Redis in one pipeline"
    )
    readmodel_backoff_max_s: float = Field(
        5.0, gt=0, description="longest wait between two Redis retries of the read-model sink"
    )
    readmodel_fetch_max_wait_ms: int = Field(
        100, ge=0, description="how long the broker may hold the read-model sink's fetch"
    )

    standby_replicas: int = Field(
        1,
        ge=0,
        description="standby copies of each partition's state table kept warm on other "
        "workers (Faust's table_standby_replicas): a takeover reads only the changelog tail",
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="at_least_once: input offsets are committed after the state changelog "
        "and outputs are acknowledged, so a crash re-reads the uncommitted tail and event_id "
        "deduplication keeps it harmless; exactly_once (Kafka transactions) is not supported "
        "yet and stops start-up (docs/operations.md)",
    )
    broker_session_timeout_s: float = Field(30.0, gt=0)
    broker_heartbeat_interval_s: float = Field(3.0, gt=0)
    producer_max_batch_size: int = Field(
        262144,
        ge=1,
        description="most bytes in one producer batch (one batch per topic partition per "
        "request: a flush's changelog records leave in a few requests rather than one per "
        "16 KiB); 1 works around Tansu's end-offset bug in tests (broker-notes)",
    )
    gc_gen0_threshold: int = Field(
        1_000_000,
        ge=0,
        description="objects allocated between two young-generation garbage collections in "
        "the worker and the backtest (Python's default is 700; 0 keeps it); what start-up "
        "allocated (the backtest: the history) is frozen too. The core leaves no reference "
        "cycles, so a high value costs little memory and spares scans of the cached states",
    )
    producer_linger_ms: float = Field(
        5.0,
        ge=0,
        description="how long the producer gathers records into one request (changelog and "
        "outputs); a flush waits at most this much longer for its deliveries",
    )

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Settings:
        """SASL needs a user and a password; a client key goes with its certificate."""
        if self.kafka_security_protocol.startswith("SASL_") and (
            not self.kafka_sasl_username or self.kafka_sasl_password is None
        ):
            raise ValueError(
                f"kafka_security_protocol {self.kafka_security_protocol} needs "
                "CHURNGUARD_KAFKA_SASL_USERNAME and CHURNGUARD_KAFKA_SASL_PASSWORD"
            )
        if (self.kafka_cert_file is None) != (self.kafka_key_file is None):
            raise ValueError("kafka_cert_file and kafka_key_file go together")
        return self

    @property
    def bootstrap_servers(self) -> str:
        """``broker`` as a plain bootstrap list for aiokafka (``host:port,host:port``)."""
        return ",".join(part.split("://")[-1] for part in self.broker.split(";"))

    @property
    def readmodel_group(self) -> str:
        """Consumer group of the Redis read-model sink (``<app_id>-readmodel``)."""
        return f"{self.app_id}-readmodel"

    @property
    def state_config(self) -> StateConfig:
        """How customer state is kept (horizon, dedup size, currency rates): the one source
        for the worker and the offline tools, so that both summarise customers alike."""
        return StateConfig(
            horizon_days=self.horizon_days,
            recent_event_ids=self.recent_event_ids,
            currency_rates=self.currency_rates,
        )

    @property
    def business_hours_range(self) -> tuple[time, time]:
        """Opening and closing time of ``business_hours``."""
        opens, closes = (time.fromisoformat(t) for t in self.business_hours.split("-"))
        return opens, closes

    @cached_property
    def input_topics(self) -> dict[str, str]:
        """Event kind → input topic name."""
        return {
            "login": self.topic_logins,
            "order": self.topic_orders,
            "ticket": self.topic_tickets,
            "contact": self.topic_contacts,
            "account": self.topic_accounts,
            "task_update": self.topic_task_updates,
        }
