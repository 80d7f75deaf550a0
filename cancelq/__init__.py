"""cancelq: the library that both the worker and the producers stand on.

It imports neither `worker/` (the Celery shell) nor `producers/` (the API and CLI); they
import it. Its sub-packages are layers, each importing only the ones listed before it:

    core       errors, settings, the message contract, the lifecycle vocabulary, backoff
    care360    the vendor: the HTTP client and the classification of its answers
    store      Redis: key layout, queue topology, broker messages, the audit store, Lua
    pipeline   one attempt of one job, and the gates (policies) asked before each call
    bulk       files of rows -> bulk runs: reader, intake, writer, run progress, inbox
    ops        operator back-ends: dead letters and replay, the stats snapshot

Why a package beneath both rather than inside `worker/`: producers need the contract and
the store but must not drag in the Celery app, and the worker must not depend on the CLI.
See docs/architecture.md.
"""
