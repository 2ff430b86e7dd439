"""``gpu_id: "0,1,2,3"`` without a launcher: one process per GPU, started through the framework's
own launcher (docs/distributed.md#several-gpu_ids-without-a-launcher)."""

from __future__ import annotations

import logging
import os
import shutil
import sys

from dopt.errors import UserError
from dopt.scenario import Scenario

__all__ = ["spawn_per_gpu", "launch_command"]

log = logging.getLogger(__name__)


def launch_command(framework: str, n: int, argv: list[str]) -> list[str] | None:
    """The command line that runs ``dopt argv`` as ``n`` processes on this machine: torch.distributed's
    launcher (torchrun) for PyTorch, horovodrun for TensorFlow; None when horovodrun is not installed."""
    if framework == "pytorch":
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={n}",
            "-m",
            "dopt",
            *argv,
        ]
    horovodrun = shutil.which("horovodrun")
    if horovodrun is None:
        return None
    return [horovodrun, "-np", str(n), "-H", f"localhost:{n}", sys.executable, "-m", "dopt", *argv]


def spawn_per_gpu(scenario: Scenario, argv: list[str]) -> None:
    """Replace this process by ``len(gpu_id)`` processes when gpu_id lists several GPUs that are all
    here; return (one process goes on) when it lists one, or GPUs that are not here (one warning).

    Raises:
        UserError: TensorFlow on several GPUs without Horovod installed.
    """
    ids = scenario.resource.gpu_ids
    if len(ids) < 2:
        return
    from dopt.backends import get_backend

    count = get_backend(scenario.framework).gpu_count()
    missing = [i for i in ids if i >= count]
    listed = ",".join(map(str, ids))
    if missing and ids[0] >= count:
        return  # the backend's device choice says, in one line, that the run is on the CPU
    if missing:
        log.warning(
            "gpu_id %s: this machine has %d GPU(s), so GPU %s %s not here; one process runs, on GPU %d, without "
            "learning-rate scaling",
            listed,
            count,
            ",".join(map(str, missing)),
            "is" if len(missing) == 1 else "are",
            ids[0],
        )
        return
    command = launch_command(scenario.framework, len(ids), argv)
    if command is None:
        raise UserError(
            f"gpu_id {listed}: TensorFlow runs one process per GPU through Horovod, which is not installed",
            key="scenario.resource.gpu_id",
            fix="install it with scripts/install_horovod.sh (from dopt's repository), or list one GPU",
            **scenario.where("scenario.resource.gpu_id"),
        )
    log.info("gpu_id %s: one process per GPU: %s", listed, " ".join(command))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
