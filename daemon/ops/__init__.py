"""Operations: Prometheus metrics, /healthz + /readyz + /metrics HTTP server, systemd notify and
watchdog, event-loop lag monitor. See ``docs/ops.md``."""
