"""Monitoring test kit: the chart's prometheus-operator objects as plain Prometheus
configuration (`scrape`), Debian's Prometheus run by tests (`promserver`), a dashboard's queries
as Grafana sends them (`grafana`) and a picture of their data (`snapshot`)."""
