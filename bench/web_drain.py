"""`python -m bench.web_drain`: the web console while a bulk run drains (issue 18's third
figure): its RSS stays flat, and real-time latency does not move.

The same drain twice on the bench's stack (a private Redis, the fake Care360 API at 50 ms, the
worker, `cancelq bulk` of `--rows` rows, a real-time job every 0.1 s from
bench/drivers/realtime.py): once without the console, once with `cancelq web` running and a
signed-in client asking, every second, for the run's page, the run's progress (what the
page's script polls) and the overview. Printed: each drain's real-time p50/p99 and drain
time, and the console's RSS when the drain starts, at its peak and at the end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import argon2
import httpx

from bench.fake_control import spawn_fake_api
from bench.harness import BENCH_ROOT, Checkout, Stack, rss_mb, stack, wait_until, write_rows
from bench.results import percentile
from bench.throughput import go, start_driver
from producers.dev.local_redis import free_port

PASSWORD = "bench-password"


def start_console(s: Stack) -> tuple[Any, httpx.Client]:
    """`cancelq web` on a free port, and a client signed in to it."""
    url = f"http://127.0.0.1:{free_port()}"
    hashed = argon2.PasswordHasher().hash(PASSWORD)
    web = s.spawn([*s.checkout.cancelq_argv(), "web"], "web", s.env(
        WEB_USERS=f"bench:viewer:{hashed}", WEB_SECRET="w" * 40,
        WEB_ADDRESS=url.removeprefix("http://")))
    client = httpx.Client(base_url=url, timeout=10)

    def up() -> bool:
        try:
            return client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, 60, "the web console to answer")
    form = client.get("/login").text
    token = form.split('name="csrf_token" value="')[1].split('"')[0]
    client.post("/login", data={"name": "bench", "password": PASSWORD, "csrf_token": token})
    assert client.get("/", follow_redirects=False).status_code == 200
    return web, client


def drain(fake_url: str, logs: Path, path: Path, rows: int, with_web: bool) -> dict[str, Any]:
    with stack(Checkout(BENCH_ROOT), fake_url, logs) as s:
        s.warm_up(s.start_worker())
        web, client = start_console(s) if with_web else (None, None)
        driver = start_driver(s, "trickle", "--interval", "0.1")
        run_id = f"drain-{uuid.uuid4().hex[:8]}"
        rss: list[float] = []
        started = time.time()
        s.bulk(path, run_id)
        go(driver)
        deadline = time.monotonic() + 120 + rows / 20
        while s.done(run_id) < rows:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: the bulk run did not drain; see {logs}")
            if client is not None and web is not None:
                for page in (f"/runs/{run_id}", f"/api/v1/runs/{run_id}", "/"):
                    status = client.get(page).status_code  # 404: the run is not written yet
                    assert status == 200 or (status == 404 and page != "/"), (page, status)
                rss.append(rss_mb(web.pid))
            time.sleep(1.0)
        drained = time.time() - started
        s.client.set("bench:stop", "1")
        assert driver.stdout is not None
        out = json.loads(driver.stdout.readline())
        if client is not None and web is not None:
            rss.append(rss_mb(web.pid))
            client.close()
    latencies = [1000 * x for x in out["latency"]]
    return {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
            "drained": drained, "rss": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    fake = spawn_fake_api(50)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
            logs = Path(tmp)
            path = logs / "rows.csv"
            write_rows(path, args.rows)
            without = drain(fake.url, logs, path, args.rows, with_web=False)
            with_web = drain(fake.url, logs, path, args.rows, with_web=True)
    finally:
        fake.stop()
    for name, one in (("without the console", without), ("with the console polled", with_web)):
        print(f"| real-time latency, {args.rows:,}-row drain {name} | p50 {one['p50']:.0f} ms,"
              f" p99 {one['p99']:.0f} ms, drained in {one['drained']:.0f} s |")
    rss = with_web["rss"]
    print(f"| console RSS during the drain ({len(rss)} samples, a page a second) | start "
          f"{rss[0]:.0f} MB, peak {max(rss):.0f} MB, end {rss[-1]:.0f} MB | flat |")


if __name__ == "__main__":
    main()
