"""A fake numpy backend and an in-process harness for fast tests of the core (STYLE.md#tests)."""

from tests.fake.backend import FakeBackend
from tests.fake.control import Control, RecordingWriter
from tests.fake.harness import Ran, installed, run_dopt
from tests.fake.workdir import make_workdir

__all__ = ["FakeBackend", "Control", "RecordingWriter", "Ran", "installed", "run_dopt", "make_workdir"]
