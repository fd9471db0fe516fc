"""Liveness, readiness and Prometheus metrics of the API process."""
