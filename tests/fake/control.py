"""What a test can make the fake backend do (interrupt a run at a chosen point) and see (what a
run wrote to TensorBoard)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Control", "RecordingWriter"]


class RecordingWriter:
    """Stands in for tensorboardX's SummaryWriter, which imports torch when it is installed; keeps
    what a run reports so that tests can read it."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.scalars: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.images: list[tuple[str, int]] = []
        self.closed = False

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars[tag].append((int(step), float(value)))

    def add_image(self, tag: str, image: Any, step: int, dataformats: str = "CHW") -> None:
        self.images.append((tag, int(step)))

    def add_text(self, tag: str, text: str, step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@dataclass(kw_only=True)
class Control:
    """Shared by every backend the test's factory makes.

    ``interrupt(event, at)`` raises KeyboardInterrupt (what Ctrl-C raises) when ``event`` reaches
    ``at``: ``"epoch"`` as that epoch (0-based) begins, ``"metric"`` at that candidate metric
    (1-based, counted from the call to ``interrupt``; the per-epoch monitor is not counted).
    """

    interrupts: dict[str, int] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    writers: list[RecordingWriter] = field(default_factory=list)
    figures: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (which, keyword arguments)

    def interrupt(self, event: str, at: int) -> None:
        self.interrupts[event] = at
        self.counts[event] = 0

    def tick(self, event: str, value: int | None = None) -> None:
        self.counts[event] += 1
        reached = self.counts[event] if value is None else value
        if self.interrupts.get(event) == reached:
            del self.interrupts[event]
            raise KeyboardInterrupt(f"fake backend: interrupted at {event} {reached}")

    def writer(self, log_dir: Path) -> RecordingWriter:
        self.writers.append(RecordingWriter(log_dir))
        return self.writers[-1]
