"""The pure core: no I/O. Errors, settings, the message contract and the lifecycle names.

Everything else in the project imports from here; this layer imports nothing of ours.
"""
