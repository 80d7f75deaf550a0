"""A fast fake of the Care360 cancel endpoint, for throughput benchmarks only.

    python -m bench.fake_api --port 8099 [--latency-ms 50]

One aiohttp process. `POST /api/v1/cases/{case_id}` waits `latency_ms` (asyncio, so waiting
costs no CPU) and answers the spec's 200 body; a missing `cv-api-key` header gets the spec's
401. It keeps no state per event (every cancel succeeds), so it costs a few tens of
microseconds of CPU per request; `python -m bench` measures what it can do by itself.

`POST /_bench/config {"latency_ms": 50, "status": 200}` changes the latency or makes every
call answer 500 (retries) from then on; `GET /_bench/stats` counts the calls answered.
The simulator (`simulator/`) is the faithful double for tests; this one is only fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

OK_BODY = json.dumps({
    "status": 200, "success": True, "message": "Calendar event cancelled successfully",
    "data": {"success": True},
}, separators=(",", ":")).encode()
UNAUTHORIZED_BODY = json.dumps(
    {"status": 401, "success": False, "message": "Invalid or missing API key"},
    separators=(",", ":"),
).encode()
ERROR_BODY = json.dumps(
    {"status": 500, "success": False, "message": "Internal error"}, separators=(",", ":")
).encode()

CONFIG = web.AppKey("config", dict)


#: The case of a key probe (`cancelq.ops.doctor.NIL_UUID`): no real job has it.
NIL_CASE = "00000000-0000-0000-0000-000000000000"


def make_app(latency_ms: float = 0.0) -> web.Application:
    """The fake as an aiohttp application (the tests run it in-process)."""
    app = web.Application()
    app[CONFIG] = {"latency_ms": latency_ms, "status": 200, "calls": 0}
    app.router.add_post("/api/v1/cases/{case_id}", _cancel)
    app.router.add_post("/_bench/config", _configure)
    app.router.add_get("/_bench/stats", _stats)
    return app


async def _cancel(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    await request.read()
    if request.match_info.get("case_id") == NIL_CASE:
        # a worker's key probe at start (as `cancelq doctor` sends): refused, not counted
        status = 401 if not request.headers.get("cv-api-key") else 404
        return web.Response(status=status, body=UNAUTHORIZED_BODY, content_type="application/json")
    config["calls"] += 1
    if config["latency_ms"]:
        await asyncio.sleep(config["latency_ms"] / 1000)
    if not request.headers.get("cv-api-key"):
        return web.Response(status=401, body=UNAUTHORIZED_BODY, content_type="application/json")
    if config["status"] != 200:
        return web.Response(status=500, body=ERROR_BODY, content_type="application/json")
    return web.Response(status=200, body=OK_BODY, content_type="application/json")


async def _configure(request: web.Request) -> web.Response:
    changes = await request.json()
    config = request.app[CONFIG]
    for name in ("latency_ms", "status"):
        if name in changes:
            config[name] = changes[name]
    return web.json_response(config)


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONFIG])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    web.run_app(make_app(args.latency_ms), host="127.0.0.1", port=args.port,
                access_log=None, print=None, backlog=2048)


if __name__ == "__main__":
    main()
