"""Sinks: answered requests leaving the process (CloudEvents in KServe's payload-logger format).

`cloudevents.CloudEventSink` sends them; `settings.SinkSettings` configures it;
`metrics.SinkMetrics` counts what was sent, dropped and failed; `component` runs it
with the app. Importing this package imports none of them (settings stay light).
"""
