"""The week of bench/archive.py, shortened: with an archive and a one-day retention, Redis
holds one day's jobs at the end of every day while the archive holds them all (what the
benchmark's RAM figures rest on), on a real Redis and PostgreSQL."""

from __future__ import annotations

from bench.archive import week


def test_redis_keeps_only_the_hot_window_while_the_archive_keeps_every_job(pg_url: str) -> None:
    days = list(week(pg_url, jobs=3 * 24 * 4, days=3))  # 4 jobs an hour
    assert [(d.settled, d.in_redis, d.pending, d.archived) for d in days] == [
        (96, 96, 0, 96), (192, 96, 0, 192), (288, 96, 0, 288)]
    assert days[-1].key_bytes < days[0].key_bytes * 1.1  # flat
