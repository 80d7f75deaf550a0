"""The Redis layer: key layout, queue topology, broker messages and the audit store.

Every change to a job is one Lua script (`lua/`), so the record, its indexes, its counters
and the broker queue never disagree. Nothing above this layer talks to Redis directly.
"""
