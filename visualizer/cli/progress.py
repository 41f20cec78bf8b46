"""A one-line progress bar on stderr, drawn only where stderr is a terminal."""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

BAR_WIDTH = 24


class Progress:
    """``[#####·····] 3/10 label`` redrawn in place; messages printed through it keep the bar."""

    def __init__(self, total: int, *, label: str = "", stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = total > 1 and self.stream.isatty()
        self._drawn = False

    def update(self, done: int, total: int | None = None, label: str | None = None) -> None:
        """Show ``done`` of ``total`` steps."""
        self.done = done
        self.total = total if total is not None else self.total
        self.label = label if label is not None else self.label
        self._draw()

    def message(self, text: str) -> None:
        """Print ``text`` as a line of its own, above the bar."""
        self._clear()
        print(text, file=self.stream, flush=True)
        self._draw()

    def close(self) -> None:
        """Remove the bar."""
        self._clear()

    def _draw(self) -> None:
        if not self.enabled:
            return
        filled = BAR_WIDTH * self.done // max(self.total, 1)
        line = f"[{'#' * filled}{'·' * (BAR_WIDTH - filled)}] {self.done}/{self.total} {self.label}"
        width = shutil.get_terminal_size((80, 24)).columns - 1
        self.stream.write("\r" + line[:width].ljust(width))
        self.stream.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            width = shutil.get_terminal_size((80, 24)).columns - 1
            self.stream.write("\r" + " " * width + "\r")
            self.stream.flush()
            self._drawn = False
