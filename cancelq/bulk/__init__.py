"""Bulk runs: a file of rows becomes one run of jobs on the bulk queue.

`intake` reads and validates rows, `writer` records and pushes them a chunk per Lua call,
`runs` reports a run's progress and exports it, `inbox` turns dropped files into runs.
"""
