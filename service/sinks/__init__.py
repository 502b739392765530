"""Sinks: answered requests leaving the process (CloudEvents in KServe's payload-logger format)."""

from tabserve.service.sinks.cloudevents import CloudEventSink, SinkConfig

__all__ = ["CloudEventSink", "SinkConfig"]
