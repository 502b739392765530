"""The serving core: registry, runtimes, validation, inference, metrics. No web code here."""
