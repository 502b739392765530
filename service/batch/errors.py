"""The one error batch scoring reports: a message for the user, never a traceback."""

from __future__ import annotations


class BatchError(Exception):
    """What stopped a scoring run: a missing model, a bad file, a refused row, ...

    Built from its message alone, so it pickles: a Dask worker raises it and the
    client gets it back as it was.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
