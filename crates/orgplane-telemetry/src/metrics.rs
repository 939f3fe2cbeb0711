//! Prometheus metrics and their HTTP endpoint (`--metrics-listen`).
