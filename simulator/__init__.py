"""A simulated Care360 "Cancel Custom Calendar Event" API, with fault injection.

The pipeline's test double for the one upstream it calls: the documented responses byte for
byte, plus the failures a real deployment adds (latency, 5xx, throttling, hangs, lost
responses), random or scripted per event, and a ``/_sim/`` control API to drive and inspect
it. Serve it with ``python -m simulator`` (or ``cancelq simulator``), in a thread with
:class:`BackgroundSimulator`, or in-process through ``httpx.ASGITransport(app=create_app())``.
"""

from simulator.app import DEFAULT_API_KEY, SimulatorApp, SimulatorConfig, create_app
from simulator.cli import BackgroundSimulator, serve, simulator_command
from simulator.control import SimulatorControl, SimulatorControlError
from simulator.faults import FaultConfig, FaultConfigError, ForcedStatus, ScriptBook
from simulator.state import CalendarEvent, Call, CallLog, SeedError, SimState, parse_uuid

__all__ = [
    "DEFAULT_API_KEY",
    "BackgroundSimulator",
    "CalendarEvent",
    "Call",
    "CallLog",
    "FaultConfig",
    "FaultConfigError",
    "ForcedStatus",
    "ScriptBook",
    "SeedError",
    "SimState",
    "SimulatorApp",
    "SimulatorConfig",
    "SimulatorControl",
    "SimulatorControlError",
    "create_app",
    "parse_uuid",
    "serve",
    "simulator_command",
]
