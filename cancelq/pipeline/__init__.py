"""The pipeline: one attempt of one job, as plain Python that needs no Celery.

`attempt` orchestrates begin -> gates -> call -> classify -> finish; `gates` is the seam for
policies (`auth_gate`, `rate_limit`); `runtime` is the composition root that wires the
settings, the store, the client and the gates once per process.
"""
