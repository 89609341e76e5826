"""The running product watched: what each part last went through (for the
`health` query and `ticketing status`), the worker's word on its parts, and
the Prometheus metrics with readiness and liveness beside them."""
