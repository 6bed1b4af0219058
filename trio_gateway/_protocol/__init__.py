"""The sans-IO core: wire formats, SSE framing, usage accounting and error rendering.

Nothing in this package imports trio, httpx, hypercorn or prometheus_client, and nothing in
it awaits (``tests/test_layering.py`` enforces it).
"""
