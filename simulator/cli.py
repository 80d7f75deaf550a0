"""Running the simulator: the ``simulator`` click command, :func:`serve`, and a thread runner.

The command prints exactly one line to stdout once the socket accepts connections,
``simulator listening on http://HOST:PORT``, so a parent process (tests, the demo) can start
it with ``--port 0`` and learn the port. SIGTERM and SIGINT shut it down gracefully with exit
status 0; requests still hanging after :data:`GRACEFUL_SHUTDOWN_SECONDS` are cancelled.

uvicorn's access log is off unless asked for, and the simulator never logs headers, so the
API key is never written anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from types import TracebackType
from typing import Any

import click
import uvicorn
from click.decorators import FC

from simulator.app import DEFAULT_API_KEY, SimulatorApp, SimulatorConfig, create_app
from simulator.faults import DEFAULT_HANG_SECONDS, FaultConfig, FaultConfigError
from simulator.state import SeedError, SimState

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8360
GRACEFUL_SHUTDOWN_SECONDS = 2
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

ReadyCallback = Callable[[str, int], None]


class _Server(uvicorn.Server):
    """uvicorn's server, telling us its real port once listening and exiting 0 on a signal.

    Stock uvicorn re-raises a captured SIGTERM after shutting down, so the process would die
    "killed by signal" even though it stopped cleanly.
    """

    def __init__(self, config: uvicorn.Config, on_ready: ReadyCallback | None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then report the bound address (URL form, IPv6 bracketed)."""
        await super().startup(sockets)
        if self.started and self._on_ready is not None:
            sock = self.servers[0].sockets[0]
            host, port = sock.getsockname()[:2]
            self._on_ready(f"[{host}]" if ":" in host else host, port)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _uvicorn_config(
    app: SimulatorApp, host: str, port: int, log_level: str, access_log: bool
) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        server_header=False,
    )
    if access_log:
        # uvicorn gives its access logger --log-level too, and access lines are INFO: with
        # the default `warning`, --access-log would print nothing. Asking for it is enough.
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    return config


def serve(
    host: str,
    port: int,
    app_config: SimulatorConfig,
    *,
    state: SimState | None = None,
    log_level: str = "warning",
    access_log: bool = False,
    on_ready: ReadyCallback | None = None,
) -> None:
    """Serve the simulator until SIGTERM/SIGINT (in the main thread). Blocks.

    ``port=0`` picks a free port; ``on_ready(host, port)`` is called once it accepts.
    """
    app = create_app(app_config, state=state)
    server = _Server(_uvicorn_config(app, host, port, log_level, access_log), on_ready)
    server.run()
    if not server.started:
        raise SystemExit(1)


class BackgroundSimulator:
    """The simulator on a daemon thread of this process, for tests that want no subprocess.

    ``with BackgroundSimulator(config) as sim: ... sim.base_url ... sim.app.state``
    """

    def __init__(
        self,
        app_config: SimulatorConfig | None = None,
        *,
        state: SimState | None = None,
        host: str = DEFAULT_HOST,
        port: int = 0,
        log_level: str = "warning",
    ) -> None:
        self.app = create_app(app_config, state=state)
        self._ready = threading.Event()
        self._address: tuple[str, int] | None = None
        self._server = _Server(
            _uvicorn_config(self.app, host, port, log_level, False), self._set_ready
        )
        self._thread = threading.Thread(target=self._server.run, name="simulator", daemon=True)

    def _set_ready(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._ready.set()

    @property
    def base_url(self) -> str:
        if self._address is None:
            raise RuntimeError("simulator not started")
        return f"http://{self._address[0]}:{self._address[1]}"

    def start(self, timeout: float = 10.0) -> BackgroundSimulator:
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("simulator did not start listening in time")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> BackgroundSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _build_state(
    seed: Path | None, generate: int, events_per_case: int, rng_seed: int | None
) -> SimState:
    state = SimState()
    if seed is not None:
        state.load_seed_file(seed)
    if generate:
        state.generate(generate, events_per_case, seed=rng_seed)
    return state


def _rate_option(flag: str, help_text: str) -> Callable[[FC], FC]:
    """A fault rate: a fraction of calls, 0 (never, the default) to 1 (every call)."""
    return click.option(flag, default=0.0, type=click.FloatRange(0, 1), help=help_text)


@click.command(name="simulator")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port; 0 picks a free one (read it from the 'listening' line).",
)
@click.option(
    "--api-key",
    envvar="SIMULATOR_API_KEY",
    default=DEFAULT_API_KEY,
    show_default=True,
    show_envvar=True,
    help="The cv-api-key the simulated API accepts.",
)
@click.option(
    "--seed",
    "seed_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='Load cases from a JSON file: {"cases":[{"id":..., "events":[...]}]}.',
)
@click.option(
    "--generate",
    default=0,
    type=click.IntRange(min=0),
    metavar="N",
    help="Generate N cases of --events-per-case custom events.",
)
@click.option(
    "--events-per-case", default=3, show_default=True, type=click.IntRange(min=0), metavar="M"
)
@click.option(
    "--auto-create",
    is_flag=True,
    help="Create unknown (well-formed) cases and events on first sight.",
)
@click.option(
    "--random-seed",
    type=int,
    default=None,
    help="Seed for generated ids and fault draws (reproducible runs).",
)
@click.option("--latency-ms", default=0.0, type=click.FloatRange(min=0), help="Added delay.")
@click.option(
    "--latency-jitter-ms",
    default=0.0,
    type=click.FloatRange(min=0),
    help="Extra uniform random delay, 0..J ms.",
)
@_rate_option("--error-rate", "Fraction answered 500, nothing applied.")
@_rate_option("--lost-response-rate", "Fraction of would-be 200s applied but answered 500.")
@_rate_option("--hang-rate", "Fraction that hang --hang-seconds before being answered.")
@click.option(
    "--hang-seconds", default=DEFAULT_HANG_SECONDS, show_default=True, type=click.FloatRange(min=0)
)
@_rate_option("--throttle-rate", "Fraction answered --throttle-status.")
@click.option(
    "--throttle-status", default="429", show_default=True, type=click.Choice(["429", "503"])
)
@click.option(
    "--retry-after",
    default=None,
    type=click.IntRange(min=0),
    help="Retry-After seconds sent with throttled answers (default: no header).",
)
@click.option("--log-level", default="warning", show_default=True, type=click.Choice(LOG_LEVELS))
@click.option(
    "--access-log",
    is_flag=True,
    help="Enable uvicorn's access log (stdout; it never shows headers).",
)
def simulator_command(
    host: str,
    port: int,
    api_key: str,
    seed_file: Path | None,
    generate: int,
    events_per_case: int,
    auto_create: bool,
    random_seed: int | None,
    log_level: str,
    access_log: bool,
    **fault_options: Any,
) -> None:
    """Serve a simulated Care360 "Cancel Custom Calendar Event" API with fault injection."""
    # The fault options arrive under FaultConfig's own field names (--error-rate is
    # error_rate), so they are passed on as they are, not listed a second time here.
    try:
        faults = _fault_config(fault_options)
        state = _build_state(seed_file, generate, events_per_case, random_seed)
    except (FaultConfigError, SeedError) as exc:
        raise click.UsageError(str(exc)) from exc
    config = SimulatorConfig(
        api_key=api_key, auto_create=auto_create, faults=faults, random_seed=random_seed
    )
    serve(
        host,
        port,
        config,
        state=state,
        log_level=log_level,
        access_log=access_log,
        on_ready=_announce,
    )


def _fault_config(options: dict[str, Any]) -> FaultConfig:
    """The fault options as a `FaultConfig` (`--throttle-status` is a choice of strings)."""
    return FaultConfig(**{**options, "throttle_status": int(options["throttle_status"])})


def _announce(bound_host: str, bound_port: int) -> None:
    """The one stdout line a parent process waits for to learn the port."""
    click.echo(f"simulator listening on http://{bound_host}:{bound_port}")
    sys.stdout.flush()
