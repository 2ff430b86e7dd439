"""Which launcher started this process, read from its environment in one place
(docs/cli.md#one-run-per-working-directory).

torchrun (torch.distributed's elastic launcher) sets ``RANK``/``WORLD_SIZE`` and
``TORCHELASTIC_RUN_ID``; horovodrun sets ``HOROVOD_RANK``/``HOROVOD_SIZE``; MPI launchers
(``mpirun``, ``horovodrun`` over MPI) set ``OMPI_COMM_WORLD_*`` (Open MPI) or ``PMI_*`` (MPICH,
Intel MPI). This version runs a search in one process, so a launch of several processes is
refused here with a clear line instead of N independent runs writing into one folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from dopt.errors import UserError

__all__ = ["Launch", "detect", "refuse_many"]

# (launcher, rank variable, size variable), the most specific first: horovodrun over MPI sets both
# Horovod's and Open MPI's variables.
_VARIABLES = (
    ("torchrun", "RANK", "WORLD_SIZE"),
    ("horovodrun", "HOROVOD_RANK", "HOROVOD_SIZE"),
    ("mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("mpirun", "PMI_RANK", "PMI_SIZE"),
)


@dataclass(frozen=True)
class Launch:
    launcher: str | None  # None: started directly
    rank: int = 0
    world_size: int = 1


def detect(environ: Mapping[str, str] | None = None) -> Launch:
    """The launcher and this process's place in the launch; ``Launch(None)`` when started directly."""
    env = os.environ if environ is None else environ
    found = []
    for launcher, rank_var, size_var in _VARIABLES:
        if size_var in env:
            try:
                found.append(Launch(launcher, int(env.get(rank_var, "0")), int(env[size_var])))
            except ValueError:
                continue  # not a launcher's value: some other tool's variable of the same name
    # All are read: a stale `export WORLD_SIZE=1` must not hide an mpirun of two processes.
    many = [f for f in found if f.world_size > 1]
    return (many or found or [Launch(None)])[0]


def refuse_many(launch: Launch) -> None:
    """Exit 2 (UserError) when several processes were launched: each would be a whole run."""
    if launch.world_size > 1:
        raise UserError(
            f"started as process {launch.rank} of {launch.world_size} by {launch.launcher}; this version of dopt "
            f"trains and searches in one process, and {launch.world_size} processes would be "
            f"{launch.world_size} separate runs writing into one working directory",
            fix="start one process: dopt -c scen.yaml (it uses the first GPU of gpu_id)",
        )
