"""`cancelq metrics`: the cluster's Prometheus exporter (one target however many workers run).

Every scrape reads Redis (`cancelq.ops.metrics.ClusterCollector`); nothing is cached, so
any number of exporters may run and all say the same. Each worker's own metrics (the call
latency histogram) are served by the worker itself when `WORKER_METRICS_PORT` is set.
"""

from __future__ import annotations

import signal
import threading

import click

from cancelq.ops.metrics import cluster_registry, serve, served_url
from producers.cli.common import EXIT_FAILED, epilog, fail, one_line_errors, store_from_env


@click.command(epilog=epilog(
    "cancelq metrics                    # 127.0.0.1:9808, scrape every 15-30 s",
    "cancelq metrics --port 9900 --addr 0.0.0.0",
    notes=["Loopback unless --addr or METRICS_ADDRESS says otherwise: the metrics",
           "have no authentication (docs/security.md)."],
))
@click.option("--port", type=click.IntRange(0, 65535), default=9808, show_default=True,
              help="Port to serve /metrics on (0: any free port, printed).")
@click.option("--addr", default=None, metavar="ADDRESS",
              help="Address to listen on [default: METRICS_ADDRESS, else 127.0.0.1].")
@one_line_errors
def metrics(port: int, addr: str | None) -> None:
    """Serve the cluster's metrics for Prometheus at http://ADDR:PORT/metrics.

    Runs until stopped. Scrape config and alert rules: docs/metrics.md.
    """
    stop = threading.Event()
    with store_from_env() as (settings, store):
        where = addr or settings.metrics_address
        try:
            server = serve(cluster_registry(store), port, where)
        except OSError as exc:
            fail(f"cannot listen on {where}:{port}: {exc.strerror}", EXIT_FAILED)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        click.echo(f"cancelq metrics: serving {served_url(server)}", err=True)
        stop.wait()
        server.shutdown()
        server.server_close()
