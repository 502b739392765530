"""The prediction log's journal (`TABSERVE_PREDLOG_DURABILITY=journal`): no answered row lost.

In the default `queued` mode a row waits in memory until the writer thread stores
it, so a process that dies (SIGKILL, out of memory) loses what waited. In
`journal` mode the listener also appends the request's rows, as JSON lines, to
this process's journal file before the answer leaves: one `write(2)` per request,
so the rows are in the operating system's hands, and survive the process, but
not a crash of the machine itself (no fsync per request).

Files live in one folder (`<data_dir>/predlog-journal/`), named by process id:
`<pid>.lock`, held locked (flock) for the process's life, and segments
`<pid>-<n>.jsonl`. Each time the writer takes the queue it seals the current
segment (the rows of exactly what it took) and starts the next; once those rows
are stored it deletes the segment. At start-up a writer replays the segments of
every process whose lock it can take (that process is gone) into the store, then
deletes them; the store ignores rows it already holds (same model, request id,
row), so a segment stored just before a crash is not stored twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import orjson

from tabserve.service.core.digits import parse_digits
from tabserve.service.predlog.records import LoggedRow

log = logging.getLogger("tabserve.predlog")


class Journal:
    """One process's journal files, and the replay of those of processes that died."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pid = os.getpid()
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._segment = 0
        self._written = False

    def open(self) -> None:
        """Take this process's lock and open its first segment."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pid = os.getpid()  # after a fork, the worker's own
        self._lock_fd = os.open(self._lock_path(self.pid), os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        # Segments under this pid are a dead process's that had the same pid: next_segment
        # starts past them, and `orphans` hands them to the replay.
        self._segment = 1 + max((n for _, n in self._segments(self.pid)), default=0)
        self._open_segment()

    def append(self, rows: list[LoggedRow]) -> None:
        """Append rows as JSON lines in one write (the caller holds the queue's lock)."""
        assert self._fd is not None, "the journal is open"
        data = b"".join(orjson.dumps(asdict(row)) + b"\n" for row in rows)
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        self._written = True

    def seal(self) -> Path | None:
        """End the current segment and start the next; the sealed one, if it holds rows."""
        if not self._written:
            return None
        sealed = self._segment_path(self.pid, self._segment)
        self._close_segment()
        self._segment += 1
        self._open_segment()
        return sealed

    def discard(self, segment: Path) -> None:
        """Forget a segment whose rows are stored."""
        segment.unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the (empty) current segment and the lock: nothing is left to replay."""
        current = self._segment_path(self.pid, self._segment)
        self._close_segment()
        if not self._written:
            current.unlink(missing_ok=True)
        if self._lock_fd is not None:
            if not self._written:
                self._lock_path(self.pid).unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- replay -----------------------------------------------------------------------------

    def orphans(self) -> Iterator[tuple[Path, list[LoggedRow]]]:
        """Segments of processes that are gone, with their rows, oldest first per process."""
        for lock in sorted(self.folder.glob("*.lock")):
            pid = int(lock.stem)
            if pid == self.pid:
                yield from self._replayable(pid, skip=self._segment)
                continue
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its process is alive: its writer stores its rows
                continue
            try:
                yield from self._replayable(pid, skip=None)
                lock.unlink(missing_ok=True)
            finally:
                os.close(fd)

    def _replayable(self, pid: int, skip: int | None) -> Iterator[tuple[Path, list[LoggedRow]]]:
        for path, number in sorted(self._segments(pid), key=lambda s: s[1]):
            if number != skip:
                yield path, read_rows(path)

    # --- files ------------------------------------------------------------------------------

    def _lock_path(self, pid: int) -> Path:
        return self.folder / f"{pid}.lock"

    def _segment_path(self, pid: int, number: int) -> Path:
        return self.folder / f"{pid}-{number}.jsonl"

    def _segments(self, pid: int) -> list[tuple[Path, int]]:
        found = []
        for path in self.folder.glob(f"{pid}-*.jsonl"):
            number = parse_digits(path.stem.rpartition("-")[2])
            if number is not None:
                found.append((path, number))
        return found

    def _open_segment(self) -> None:
        path = self._segment_path(self.pid, self._segment)
        self._fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        self._written = False

    def _close_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_rows(path: Path) -> list[LoggedRow]:
    """The rows of a segment; a last line cut short (the machine stopped mid-write) is skipped."""
    rows = []
    for line in path.read_bytes().split(b"\n"):
        if not line:
            continue
        try:
            rows.append(LoggedRow(**orjson.loads(line)))
        except (orjson.JSONDecodeError, TypeError) as exc:
            log.warning("prediction log journal %s: skipping a damaged line: %s", path, exc)
    return rows
