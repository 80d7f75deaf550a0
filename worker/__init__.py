"""The cancellation worker.

    settings     the one typed configuration object          contract   the message contract
    errors       the exception tree (retryable or final)     care360    the HTTP client
    outcomes     the classification table                    backoff    retry delays
    keys         the Redis key layout                        messages   broker wire format
    audit        the audit store (Lua scripts in lua/)       attempt    one attempt of one job
    scheduler    due retries back onto the queue             runtime    process-wide wiring
    celery       the Celery app (`celery -A worker`)         tasks      the one thin task
    auth_gate    pause calls after a 401 (a Gate)            deadletters  dead jobs, replay
    livestats    the `cancelq stats` snapshot                connections  Redis / Sentinel
    flower_auth  Flower refuses to start without auth        healthcheck  compose checks
    rate_limit   the global limit on calls (a Gate)          cron       CLEANUP_SCHEDULE -> beat
    cleanup      inbox files -> bulk runs (beat's task)
"""
