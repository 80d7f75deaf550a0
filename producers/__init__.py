"""Producers: the Python API (`enqueue_cancellation`) and the `cancelq` CLI."""

from producers.enqueue import enqueue_cancellation
from worker.audit import Enqueued
from worker.errors import InvalidInput

__all__ = ["Enqueued", "InvalidInput", "enqueue_cancellation"]
