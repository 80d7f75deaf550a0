"""`cancelq metrics`: the cluster's Prometheus exporter (one target however many workers run).

Every scrape reads Redis (`cancelq.ops.metrics.ClusterCollector`); nothing is cached, so
any number of exporters may run and all say the same. Each worker's own metrics (the call
latency histogram) are served by the worker itself when `WORKER_METRICS_PORT` is set.
"""

from __future__ import annotations

import signal
import threading

import click

from cancelq.ops.metrics import cluster_registry, serve
from producers.cli.common import EXIT_FAILED, epilog, fail, one_line_errors, store_from_env


@click.command(epilog=epilog(
    "cancelq metrics                    # :9808, scrape every 15-30 s",
    "cancelq metrics --port 9900 --addr 127.0.0.1",
))
@click.option("--port", type=click.IntRange(0, 65535), default=9808, show_default=True,
              help="Port to serve /metrics on (0: any free port, printed).")
@click.option("--addr", default="0.0.0.0", show_default=True, help="Address to listen on.")
@one_line_errors
def metrics(port: int, addr: str) -> None:
    """Serve the cluster's metrics for Prometheus at http://ADDR:PORT/metrics.

    Runs until stopped. Scrape config and alert rules: docs/metrics.md.
    """
    stop = threading.Event()
    with store_from_env() as (_, store):
        try:
            server = serve(cluster_registry(store), port, addr)
        except OSError as exc:
            fail(f"cannot listen on {addr}:{port}: {exc.strerror}", EXIT_FAILED)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        click.echo(f"cancelq metrics: serving http://{addr}:{server.server_port}/metrics",
                   err=True)
        stop.wait()
        server.shutdown()
        server.server_close()
