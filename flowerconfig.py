"""Flower's configuration file, read by Flower 2.2 from its working directory.

`celery -A worker flower` takes the broker and everything Celery from `celeryconfig` (via
the app); this file only refuses to start Flower without authentication (see
`worker.flower_auth` and docs/operations.md). Run Flower from the project root, or pass
`--conf=/path/to/flowerconfig.py` (an explicit path that is missing is an error, so the
guard cannot be skipped by accident there). Only underscore names here: Flower treats every
other top-level name as one of its options.
"""

import os as _os
import sys as _sys

from tornado.options import options as _options

from worker.flower_auth import INSECURE_FLAG as _FLAG
from worker.flower_auth import FlowerAuthError as _Error
from worker.flower_auth import check_auth as _check

try:
    _mode = _check(_options.basic_auth, _options.auth, _os.environ.get(_FLAG))
except _Error as _exc:
    print(f"cancelq flower: refusing to start: {_exc}", file=_sys.stderr, flush=True)
    raise SystemExit(2) from None
if _mode == "insecure":
    print(f"cancelq flower: WARNING: no authentication ({_FLAG}=1)", file=_sys.stderr, flush=True)

# Forget offline workers after 10 minutes (autoscaled containers come and go).
purge_offline_workers = 600
