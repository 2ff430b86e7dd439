"""Which launcher started this process, read from its environment in one place
(docs/cli.md#one-run-per-working-directory).

torchrun (torch.distributed's elastic launcher) sets ``RANK``/``WORLD_SIZE`` and
``TORCHELASTIC_RUN_ID``; horovodrun sets ``HOROVOD_RANK``/``HOROVOD_SIZE``; MPI launchers
(``mpirun``, ``horovodrun`` over MPI) set ``OMPI_COMM_WORLD_*`` (Open MPI) or ``PMI_*`` (MPICH,
Intel MPI). A run (``dopt -c``) of several processes is data-parallel (docs/distributed.md); the
other commands run in one process and refuse a launch of several.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from dopt.errors import UserError

__all__ = ["Launch", "detect", "refuse_many", "engine"]

# (launcher, rank variable, size variable), the most specific first: horovodrun over MPI sets both
# Horovod's and Open MPI's variables.
_VARIABLES = (
    ("torchrun", "RANK", "WORLD_SIZE"),
    ("horovodrun", "HOROVOD_RANK", "HOROVOD_SIZE"),
    ("mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("mpirun", "PMI_RANK", "PMI_SIZE"),
)
# Each launcher's (local rank, local size) variables: the processes sharing this machine.
_LOCAL = {
    "torchrun": ("LOCAL_RANK", "LOCAL_WORLD_SIZE"),
    "horovodrun": ("HOROVOD_LOCAL_RANK", "HOROVOD_LOCAL_SIZE"),
    "mpirun": ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
}


@dataclass(frozen=True, kw_only=True)
class Launch:
    launcher: str | None  # None: started directly
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # index among the processes on this machine (which GPU)
    local_size: int = 1  # processes on this machine (they share its CPU cores)


def detect(environ: Mapping[str, str] | None = None) -> Launch:
    """The launcher and this process's place in the launch; ``Launch(None)`` when started directly."""
    env = os.environ if environ is None else environ
    found = []
    for launcher, rank_var, size_var in _VARIABLES:
        if size_var in env:
            try:
                rank, size = int(env.get(rank_var, "0")), int(env[size_var])
                local_rank_var, local_size_var = _LOCAL.get(launcher, ("", ""))
                local_rank = int(env.get(local_rank_var, rank))
                local_size = int(env.get(local_size_var, size))
                found.append(
                    Launch(launcher=launcher, rank=rank, world_size=size, local_rank=local_rank, local_size=local_size)
                )
            except ValueError:
                continue  # not a launcher's value: some other tool's variable of the same name
    # All are read: a stale `export WORLD_SIZE=1` must not hide an mpirun of two processes.
    many = [f for f in found if f.world_size > 1]
    return (many or found or [Launch(launcher=None)])[0]


def refuse_many(launch: Launch, command: str) -> None:
    """Exit 2 (UserError) when several processes were launched for a command that runs in one:
    each would be a whole run of it."""
    if launch.world_size > 1:
        raise UserError(
            f"dopt {command} was started as process {launch.rank} of {launch.world_size} by {launch.launcher}; "
            f"it runs in one process, and {launch.world_size} processes would each run it in full",
            fix=f"start it without the launcher: dopt {command} ... (only a run, dopt -c scen.yaml, uses several processes)",
        )


def engine(launch: Launch, framework: str) -> str:
    """The communication engine of a launch: "torch.distributed" under torchrun, "horovod" under
    horovodrun or mpirun (docs/distributed.md#launching).

    Raises:
        UserError: TensorFlow under torchrun (TensorFlow's processes talk through Horovod).
    """
    if launch.launcher == "torchrun":
        if framework != "pytorch":
            raise UserError(
                "torchrun starts PyTorch processes; TensorFlow runs of several processes go through Horovod",
                key="scenario.strategy.framework",
                fix=f"horovodrun -np {launch.world_size} dopt -c scen.yaml (install Horovod: scripts/install_horovod.sh)",
            )
        return "torch.distributed"
    return "horovod"
