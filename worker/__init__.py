"""The Celery shell: what `celery -A worker worker` (and beat, and Flower) run.

    celery       the Celery app; refuses to start on a bad setting
    tasks        the thin tasks: validate, then call `cancelq.pipeline` / `cancelq.bulk`
    scheduler    a worker thread moving due retries from the delayed set to their queue
    beat         the beat schedule (cleanup inbox) from settings
    healthcheck  liveness checks for docker-compose
    flower_auth  Flower refuses to start without credentials

Everything these modules do is in `cancelq/`; nothing here is imported by `producers/`.
"""
