"""Flower's configuration file (`--conf=flowerconfig.py`, Flower's default from its cwd).

Only settings here: the refusal to start without authentication lives with the Celery app
(`worker.flower_auth.install_flower_guard`), so it holds from any working directory, with
or without this file. Only underscore names besides options: Flower treats every other
top-level name as one of its options.
"""

# Forget offline workers after 10 minutes (autoscaled containers come and go).
purge_offline_workers = 600
