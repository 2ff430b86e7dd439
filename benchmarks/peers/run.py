"""Weight-sharing overhead and extraction exactness of dopt and its peers, on one small space.

Run with the project's venv:  python benchmarks/peers/run.py [--threads 1] [--peers modelopt,ofa,...]

The space (shared_space.py): 3x32x32 input, batch 64 (--batch), a stem conv, five MobileNetV2-style
inverted-residual layers with kernel {3,5,7} x expansion {3,6} x width {0.5,0.75,1.0}, a pooled
linear head. Each peer writes its closest equivalent in its own API (each worker's docstring says
where it differs). For every contender, over several random subnets:

  (a) training step (forward + backward + SGD step) of the supernet with the subnet active
      / the same step of the subnet as a plain static network;
  (b) eval-mode forward of the supernet with the subnet active / forward of the static network;
  (c) max |supernet output - extracted model output| over 50 random subnets, eval mode, one input,
      after 10 training steps on random subnets (so BatchNorm statistics are not at their defaults).

Ratios are medians over subnets of medians over interleaved rounds; every timing of a process
(dopt's and the peer's, supernet and static) is interleaved, so load from other processes hits
them alike. Each peer runs in its own venv (envs.py; default ~/.cache/dopt/peers/<peer>, or
--envs / $DOPT_PEERS_DIR) with dopt installed beside it, so dopt's PyTorch row is measured in the
same process as the peer's. dopt's Keras/TensorFlow row runs in this (the project's) venv
(worker_keras.py): there the static network is the extracted Keras model that dopt writes for
results, trained as a Keras user would (compile + train_on_batch, Keras' traced step) and run
with predict_on_batch; its notes add the ratios against the same model run eagerly. Every
process uses the same --threads for torch and TensorFlow.

Peers as installed (envs.py): ModelOpt 0.47.0 with --no-deps plus what its import needs; OFA
0.1.0 with a torchvision stub; NNI 3.0 with pytorch_lightning and its freeze patched at run time;
NNCF 2.19.0, the last release with BootstrapNAS, with NNCF_TORCH_LEGACY_TRACING=1.

Prints one table last. Exit status 1 if a measured run failed (dopt's rows included, and a
dopt row that is missing); a peer that cannot be installed or built here is a row saying why.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from envs import PEERS, ensure
from shared_space import add_common_args
from timing import Row, parse, table

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ALL = (*PEERS, "keras")


def _run_worker(python: Path, worker: str, args: argparse.Namespace, log: Path, process: str) -> list[Row]:
    cmd = [str(python), str(HERE / worker), *_common(args)]
    print(f"[peers] {process}: {' '.join(cmd)} (log {log})", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return [Row(worker, process, error=f"timed out after {args.timeout} s")]
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    rows = parse(done.stdout)
    if rows is None:
        last = [ln for ln in done.stderr.splitlines() if ln.strip()][-1:] or [f"exit {done.returncode}"]
        return [Row(worker, process, error=f"worker crashed: {last[0].strip()}")]
    return rows


def _common(args: argparse.Namespace) -> list[str]:
    keys = ("threads", "subnets", "rounds", "steps", "exact", "batch", "seed")
    return [x for k in keys for x in (f"--{k}", str(getattr(args, k)))]


def _torch_version() -> str:
    from importlib.metadata import version

    return version("torch").split("+")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", default=",".join(ALL), help=f"comma-separated, from {', '.join(ALL)}")
    default_envs = os.environ.get("DOPT_PEERS_DIR") or str(Path.home() / ".cache" / "dopt" / "peers")
    parser.add_argument("--envs", default=default_envs, help="folder of the peers' venvs (or $DOPT_PEERS_DIR)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per worker")
    add_common_args(parser)
    args = parser.parse_args()
    chosen = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(ALL))
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    envs = Path(args.envs).expanduser()
    envs.mkdir(parents=True, exist_ok=True)

    rows: list[Row] = []
    processes = 0  # each one owes a dopt row
    for key in chosen:
        if key == "keras":
            rows += _run_worker(Path(sys.executable), "worker_keras.py", args, envs / "keras.log", "project venv")
            processes += 1
            continue
        peer = PEERS[key]
        try:
            python = ensure(peer, envs / key, _torch_version(), REPO, envs / f"{key}.install.log")
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            rows.append(Row(peer.name, f"{key} env", unavailable=f"install: {exc}"))
            continue
        rows += _run_worker(python, peer.worker, args, envs / f"{key}.log", f"{key} env")
        processes += 1

    own = [r for r in rows if r.own]
    failed = [r for r in rows if r.error]
    print(
        f"\nthreads {args.threads}, batch {args.batch}, 3x32x32, {args.subnets} subnets x {args.rounds} interleaved rounds "
        f"x {args.steps} steps per timing, exactness over {args.exact} subnets; a dopt row and a peer row with "
        "the same process were timed interleaved"
    )
    print(table(rows))
    if failed or len(own) < processes:
        missing = processes - len(own)
        print(f"{len(failed)} measured run(s) failed" + (f", {missing} dopt row(s) missing" if missing > 0 else ""))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
