"""Bus metrics (exposed on the admin port's /metrics with the shared ones)."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("bus_requests_total", "Exchanges through the bus", ["service", "status"])
LATENCY = Histogram("bus_request_seconds", "Exchange latency through the bus", ["service"],
                    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
ERRORS = Counter("bus_errors_total", "Exchanges refused or failed, by reason", ["service", "code"])
QUEUE_DEPTH = Gauge("bus_queue_depth", "Asynchronous messages not yet delivered", ["stream"])
DELIVERIES = Counter("bus_async_deliveries_total", "Asynchronous delivery attempts by outcome", ["outcome"])
