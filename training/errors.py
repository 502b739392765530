"""Errors the training package raises; each message names what was wrong and where."""


class TrainingError(Exception):
    """Bad input to training: unknown dataset, unreadable or unusable data."""


class ExportError(TrainingError):
    """A fitted model or reference sample that cannot be exported; the message says the fix."""
