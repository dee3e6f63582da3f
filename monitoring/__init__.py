"""Monitoring as code: the Grafana dashboard (built with grafana-foundation-sdk) and the
Kubernetes manifests derived from the alert rules and the dashboard. `python -m monitoring`
writes them; `python -m monitoring --check` fails when a committed file is out of date."""
