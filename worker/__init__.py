"""The cancellation worker.

    settings     the one typed configuration object          contract   the message contract
    errors       the exception tree (retryable or final)     care360    the HTTP client
    outcomes     the classification table                    backoff    retry delays
    keys         the Redis key layout                        messages   broker wire format
    audit        the audit store (Lua scripts in lua/)       attempt    one attempt of one job
    scheduler    due retries back onto the queue             runtime    process-wide wiring
    celery       the Celery app (`celery -A worker`)         tasks      the one thin task
"""
