"""Operating a service: Prometheus metrics and the health/readiness endpoints."""
