"""Distributed tracing with OpenTelemetry: SERVER spans per HTTP request and gRPC call.

Off by default (`TABSERVE_TRACING_ENABLED`). Only this package imports OpenTelemetry,
and only the composition root imports its modules that do, when tracing is on, so a
server without the `tracing` extra installed runs as before. See docs/tracing.md.
"""
