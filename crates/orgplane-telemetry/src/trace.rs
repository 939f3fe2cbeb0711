//! Tracing: log output (text or JSON), W3C trace context, optional OTLP export.
