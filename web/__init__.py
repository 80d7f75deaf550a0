"""`cancelq web`: the web console over the audit store, the archive and the dead letters.

A thin shell, like `worker/` and `producers/`: it imports only `cancelq`, and every read and
every replay goes through the same functions the CLI calls (`cancelq.ops`, `cancelq.bulk`),
so a page and `cancelq audit` can never disagree. docs/web.md covers running it.
"""
