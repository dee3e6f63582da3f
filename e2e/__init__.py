"""The deployment run for real: `make e2e-compose`, `make e2e-k8s`, `make e2e-handover`.

Plain `docker`, `docker compose` and `kubectl` against whatever engine and cluster the
environment points at (Docker Desktop and kind on a laptop; ../shared/infra on our machines).
The Kafka side runs in agent.py, on the host or in a pod; the pure parts (records, overlay,
settings) are unit-tested in tests/e2e without Docker.
"""
