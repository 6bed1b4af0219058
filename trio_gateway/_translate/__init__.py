"""Protocol translation: any client protocol on any upstream protocol (protocols.md §5).

Sans-IO, like ``_protocol``: requests are translated through a neutral conversation model
(``_request``), streams through neutral stream events (``_events``): a reader per upstream
protocol turns SSE events into neutral events (``_read``), a writer per client protocol
turns those into the client's SSE frames or its non-streaming JSON body (``_write``).
"""
