"""One virtual environment per peer, outside the repository, made (or reused) by ``run.py``.

Each env gets, in this order: torch (the same release as the project's, as pip resolves it: on a
machine whose index serves PyPI's CUDA build, export PIP_INDEX_URL=https://download.pytorch.org/whl/cpu
first for the CPU one), dopt's few
runtime dependencies for its PyTorch supernet, the peer with whatever its import needs, and dopt
itself as an editable install without dependencies, so that the peer's worker can time dopt and
the peer interleaved in one process. An env whose marker file records the same install steps is
reused as it is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Peer", "PEERS", "DOPT_DEPS", "ensure"]

# What dopt's PyTorch supernet imports besides torch (pyproject.toml's dependencies, minus the
# plotting, logging and progress packages that the supernet never loads).
DOPT_DEPS = ("numpy", "ruamel.yaml", "scipy", "pymoo")


@dataclass(frozen=True)
class Peer:
    """A peer: its table name, its worker script and its pip steps (each one ``pip install`` call)."""

    name: str
    worker: str
    steps: tuple[tuple[str, ...], ...]
    why: str = ""  # install facts worth a line in the docs


PEERS = {
    "modelopt": Peer(
        "ModelOpt AutoNAS",
        "worker_modelopt.py",
        (
            # modelopt's declared dependencies pull CUDA-only packages (nvidia-ml-py, ninja) and
            # its import needs undeclared ones: these are what `import modelopt.torch.nas` needs.
            (
                "requests",
                "huggingface_hub",
                "torchprofile==0.0.4",
                "omegaconf",
                "pydantic",
                "pulp",
                "rich",
                "regex",
                "safetensors",
                "PyYAML",
                "tqdm",
            ),
            ("--no-deps", "nvidia-modelopt==0.47.0"),
        ),
    ),
    "ofa": Peer("Once-for-All", "worker_ofa.py", (("ofa==0.1.0.post202307202001",),)),
    "nni": Peer("NNI 3.0", "worker_nni.py", (("nni==3.0", "pytorch_lightning"),)),
    # BootstrapNAS left NNCF in 3.0 (nncf.experimental.torch.nas is absent from 3.0-3.4): 2.19.0 is
    # the last release that ships it.
    "bootstrapnas": Peer("NNCF BootstrapNAS", "worker_bootstrapnas.py", (("nncf==2.19.0",),)),
}


def _python(env: Path) -> Path:
    return env / "bin" / "python"


def ensure(peer: Peer, env: Path, torch_version: str, repo: Path, log: Path) -> Path:
    """The env's python, after creating or completing the env; raises RuntimeError with pip's
    last error line if a step fails (the full output is in ``log``)."""
    steps = [(f"torch=={torch_version}",), DOPT_DEPS, *peer.steps, ("--no-deps", "-e", str(repo))]
    marker = env / ".dopt-peer.json"
    if marker.exists() and json.loads(marker.read_text()) == [list(s) for s in steps]:
        return _python(env)
    env.parent.mkdir(parents=True, exist_ok=True)
    print(f"[peers] installing {peer.name} into {env} (log {log})", file=sys.stderr, flush=True)
    with log.open("w") as out:
        if not _python(env).exists():
            base = getattr(sys, "_base_executable", sys.executable)  # not the project venv's python
            subprocess.run([base, "-m", "venv", str(env)], check=True, stdout=out, stderr=subprocess.STDOUT)
        for step in steps:
            cmd = [str(_python(env)), "-m", "pip", "install", "-q", "--disable-pip-version-check", *step]
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode:
                raise RuntimeError(f"pip install {' '.join(step)} failed: {_last_error(log)} (log: {log})")
    marker.write_text(json.dumps([list(s) for s in steps]))
    return _python(env)


def _last_error(log: Path) -> str:
    lines = [ln for ln in log.read_text().splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
    errors = [ln for ln in lines if "ERROR" in ln or "Error" in ln]
    return (errors or lines or ["(no output)"])[-1].strip()
