"""Producers: the Python API (`enqueue_cancellation`) and the `cancelq` CLI."""

from cancelq.core.errors import InvalidInput
from cancelq.store.records import Enqueued
from producers.enqueue import enqueue_cancellation

__all__ = ["Enqueued", "InvalidInput", "enqueue_cancellation"]
