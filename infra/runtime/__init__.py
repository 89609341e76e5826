"""The running product and what watches it: the worker's wiring
(`worker.py`), supervision of the worker process and the embedded
nats-server (`supervision.py`), the health report (`health.py`, with what
each part keeps about itself in `parts.py`), the Prometheus metrics with
readiness and liveness (`metrics.py`), child processes and the clock."""
