"""The vendor layer: the Care360 HTTP client and the table that classifies its answers.

Kept apart from the store and the pipeline so the client can be tested with httpx's
`MockTransport` alone, and so the only module that knows Care360's wire format is here.
"""
