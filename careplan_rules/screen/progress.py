"""The progress bar on stderr: stage, bar, done/total, rate and ETA; silent when not a terminal.

Workers cannot draw; they add to shared counters (:class:`Counters`) every few patients, and
the main process redraws from them a few times a second.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

REPORT_EVERY = 16  # patients between counter updates in a worker (a lock per update)


class LocalValue:
    """Stands in for ``multiprocessing.Value`` when the work runs in this process."""

    def __init__(self) -> None:
        self.value = 0

    def get_lock(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


class Counters:
    """Patients and resources evaluated so far, shared with the worker processes."""

    def __init__(self, ctx: Any | None = None, on_add: Callable[[], None] | None = None) -> None:
        self.patients: Any = ctx.Value("q", 0) if ctx is not None else LocalValue()
        self.resources: Any = ctx.Value("q", 0) if ctx is not None else LocalValue()
        self._on_add = on_add  # in-process runs redraw here (nobody else polls)

    def __getstate__(self) -> dict[str, Any]:
        return {"patients": self.patients, "resources": self.resources}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.patients, self.resources, self._on_add = state["patients"], state["resources"], None

    def add(self, patients: int, resources: int) -> None:
        with self.patients.get_lock():
            self.patients.value += patients
        with self.resources.get_lock():
            self.resources.value += resources
        if self._on_add is not None:
            self._on_add()


class ProgressBar:
    """A rich progress bar, or nothing when ``enabled`` is false."""

    def __init__(self, enabled: bool) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._start = time.monotonic()
        self._unit = ""
        if enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()

    def stage(self, description: str, total: int, unit: str) -> None:
        """Start a new bar (the previous one stays on screen, complete)."""
        if self._progress is None:
            return
        self._start = time.monotonic()
        self._unit = unit
        self._task = self._progress.add_task(description, total=max(total, 1), detail="")

    def update(self, completed: int, patients: int | None = None) -> None:
        if self._progress is None or self._task is None:
            return
        elapsed = max(time.monotonic() - self._start, 1e-6)
        if patients is not None:
            detail = f"{patients:,} patients · {patients / elapsed:,.0f}/s"
        else:
            detail = f"{completed / 1e6 / elapsed:,.1f} M{self._unit}/s"
        self._progress.update(self._task, completed=completed, detail=detail)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
