"""Operator back-ends used by the CLI: dead letters and replay, the live stats snapshot."""
