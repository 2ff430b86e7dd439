"""Supernet-training throughput of dopt in 1 process against 2 processes on this machine's CPU.

For each launcher and framework (torchrun + PyTorch over torch.distributed/gloo; horovodrun + PyTorch
and horovodrun + TensorFlow over Horovod/gloo) it runs the digits demo (demos/digits_torch,
demos/digits_tf, copied to a temporary folder) as a user does, with `--set` options that make
training the bulk of the run (few epochs, one small search generation, no convergence monitor), and
measures images per second of the *training stage only*, from the run's own log
(log_*/dopt.log): the time from "training the supernet" to "supernet trained: E epochs, S steps",
and images = S (steps per process, all epochs) × batch_size × processes. Per-epoch checkpoints and
the first steps' warm-up (TensorFlow's tracing) are inside that stage, as in any run.

Configurations, each run as a separate dopt run, interleaved over --repeats, medians reported:

- 1 process with all the cores (plain `python -m dopt`, OMP_NUM_THREADS = cores);
- 1 process with cores / 2 threads (OMP_NUM_THREADS), for the per-process comparison;
- 2 processes with cores / 2 threads each (DOPT_THREADS), under each launcher.

"2p / 1p" is the speed-up a user gets from launching two processes on the same machine; "2p / 1p
same threads" is the per-process efficiency (2.00 would be perfect: the second process then costs
nothing). Where torch sees 2 or more GPUs, 1 GPU against N GPUs (`gpu_id` lists, dopt starting one
process per GPU) is measured too; the digits demo is far too small to load a GPU, so pass a larger
--batch there and read the figure as an upper bound on communication overhead, not a speed-up.

What limits the result on a 2-core machine: both processes share the same 2 cores, so two
processes of one thread can at best match one process of two threads (a ratio near 1.0, not 2.0);
what they can gain is only what one process fails to get from its second thread (the digits
network is small: per-op threading scales poorly). Against that, every step pays two gloo
all-reduces (which parameters have a gradient, then the gradients, ~100k floats) and waits for the
slower process, plus a check that the ranks sampled alike every 20 steps; on steps of tens of
milliseconds that is a visible share. Another job on the machine hurts the 1-process, 2-thread run
most (its threads wait for each other), so run it alone. The ratio says nothing about several
machines or GPUs.

Horovod comes from scripts/install_horovod.sh, built into the environment whose Python runs this
script; where `horovodrun` is missing there (or lacks a framework), those rows are skipped with a
message.

    python benchmarks/scaling.py [--repeats 3] [--epochs 5] [--batch 64] [--quick]
        [--frameworks pytorch tensorflow] [--launchers torchrun horovodrun gpu_id]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dopt.backends.cpus import available_cpus, cpu_name  # noqa: E402

DEMOS = {"pytorch": ROOT / "demos" / "digits_torch", "tensorflow": ROOT / "demos" / "digits_tf"}
NAMES = {"pytorch": "PyTorch", "tensorflow": "TensorFlow"}
STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ \S+: "


@dataclass(frozen=True)
class Config:
    framework: str
    launcher: str | None  # None: plain `python -m dopt` (which starts its own processes for a gpu_id list)
    processes: int
    threads: int | None  # None: dopt's default
    gpu_id: str = "cpu"

    @property
    def label(self) -> str:
        if self.gpu_id != "cpu":
            return f"{self.processes} GPU{'s' if self.processes > 1 else ''}"
        return f"{self.processes}p×{self.threads}t"

    @property
    def name(self) -> str:
        return f"{self.launcher or 'plain'} {NAMES[self.framework]} {self.label}"


def horovodrun() -> str | None:
    found = Path(sys.executable).with_name("horovodrun")
    return str(found) if found.exists() else shutil.which("horovodrun")


def horovod_frameworks() -> set[str]:
    """The frameworks `horovodrun --check-build` reports as built."""
    exe = horovodrun()
    if exe is None:
        return set()
    out = subprocess.run([exe, "--check-build"], capture_output=True, text=True).stdout
    return {fw for fw, name in NAMES.items() if re.search(rf"\[X\] {name}\b", out)}


def command(cfg: Config) -> list[str]:
    dopt = ["-m", "dopt", "-c", "scen.yaml"]
    n = str(cfg.processes)
    if cfg.launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", *dopt]
    if cfg.launcher == "horovodrun":
        return [str(horovodrun()), "-np", n, "-H", f"localhost:{n}", "--gloo", sys.executable, *dopt]
    return [sys.executable, *dopt]


def environment(cfg: Config) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DOPT_THREADS", "OMP_NUM_THREADS")}
    if cfg.threads is not None:
        env["OMP_NUM_THREADS"] = str(cfg.threads)  # read by a single process
        if cfg.processes > 1:
            env["DOPT_THREADS"] = str(cfg.threads)  # read under a launcher
    return env


def measure(cfg: Config, sets: list[str], batch: int, tmp: Path) -> tuple[float, float]:
    """(images/s, seconds) of one run's training stage."""
    work = Path(tempfile.mkdtemp(dir=tmp))
    shutil.copytree(DEMOS[cfg.framework], work, dirs_exist_ok=True)
    sets = [*sets, f"scenario.strategy.batch_size={batch}", f"scenario.resource.gpu_id={cfg.gpu_id}"]
    args = [a for s in sets for a in ("--set", s)]
    proc = subprocess.run(
        command(cfg) + args, cwd=work, env=environment(cfg), capture_output=True, text=True, timeout=3600
    )
    if proc.returncode != 0:
        sys.exit(f"{cfg.name} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    log = next(work.glob("log_*/dopt.log")).read_text()
    shutil.rmtree(work)

    def when(message: str) -> datetime:
        match = re.search(STAMP + message, log, re.MULTILINE)
        if match is None:
            sys.exit(f"{cfg.name}: no line {message!r} in its dopt.log")
        return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")

    seconds = (when(r"supernet trained:") - when(r"training the supernet$")).total_seconds()
    steps = int(re.search(r"supernet trained: \d+ epochs, (\d+) steps", log).group(1))  # type: ignore[union-attr]
    found = re.search(r"^\S+ \S+ \w+ \S+: (\d+) processes \(", log, re.MULTILINE)
    processes = int(found.group(1)) if found else 1
    if processes != cfg.processes:
        sys.exit(f"{cfg.name}: the log says {processes} processes")
    return steps * batch * processes / seconds, seconds


def plan(args: argparse.Namespace, gpus: int) -> list[tuple[str, str, Config, Config, Config | None]]:
    """Rows: (launcher, framework, 1-process config, several-process config, 1p config of equal threads)."""
    cores = available_cpus()
    half = max(1, cores // 2)
    hvd = horovod_frameworks() if {"horovodrun", "gpu_id"} & set(args.launchers) else set()
    rows = []
    for fw in args.frameworks:
        module = "torch" if fw == "pytorch" else "tensorflow"
        if importlib.util.find_spec(module) is None:
            print(f"skipped {NAMES[fw]}: {module} is not installed for {sys.executable}")
            continue
        one, same = Config(fw, None, 1, cores), Config(fw, None, 1, half)
        for launcher in args.launchers:
            if launcher == "torchrun" and fw == "pytorch" or launcher == "horovodrun" and fw in hvd:
                rows.append((launcher, fw, one, Config(fw, launcher, 2, half), same))
            elif launcher == "horovodrun":
                print(
                    f"skipped horovodrun + {NAMES[fw]}: "
                    + (f"Horovod is built without {NAMES[fw]}" if horovodrun() else "horovodrun is not installed")
                    + f" beside {sys.executable} (scripts/install_horovod.sh builds it into that environment)"
                )
            elif launcher == "gpu_id" and gpus >= 2 and (fw == "pytorch" or fw in hvd):
                ids = ",".join(map(str, range(gpus)))
                rows.append(("gpu_id", fw, Config(fw, None, 1, None, "0"), Config(fw, None, gpus, None, ids), None))
    if "gpu_id" in args.launchers and gpus < 2:
        print(f"1 GPU against several (gpu_id lists): not measured, torch sees {gpus} GPU(s)")
    return rows


def facts(gpus: int) -> list[str]:
    def version(*names: str) -> str:
        for name in names:  # TensorFlow's CPU wheel is the distribution tensorflow-cpu
            try:
                return f"{name} {metadata.version(name)}"
            except metadata.PackageNotFoundError:
                pass
        return f"{names[0]} not installed"

    libs = ", ".join(version(*n) for n in (("torch",), ("tensorflow", "tensorflow-cpu"), ("horovod",)))
    return [
        f"CPU: {cpu_name()}, {available_cpus()} cores available; GPUs visible to torch: {gpus}",
        f"Python {sys.version.split()[0]} ({sys.executable}); {libs}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64, help="batch_size per process")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 repeat of 2 epochs")
    parser.add_argument("--frameworks", nargs="+", choices=list(NAMES), default=list(NAMES))
    parser.add_argument("--launchers", nargs="+", choices=["torchrun", "horovodrun", "gpu_id"])
    args = parser.parse_args()
    args.launchers = args.launchers or ["torchrun", "horovodrun", "gpu_id"]
    if args.quick:
        args.repeats, args.epochs = 1, 2
    try:
        import torch

        gpus = torch.cuda.device_count()
    except ImportError:
        gpus = 0
    rows = plan(args, gpus)
    if not rows:
        sys.exit("nothing to measure")
    configs = list(dict.fromkeys(c for row in rows for c in row[2:] if c is not None))
    sets = [
        f"scenario.strategy.epochs={args.epochs}",
        "scenario.strategy.searcher.generation_num=1",
        "scenario.strategy.searcher.pop_size=4",
        "scenario.strategy.training.monitor_batches=0",
        "scenario.strategy.constraint.constraint_value=1000000",  # every subnet: no empty front (exit 3)
    ]
    speed: dict[Config, list[float]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            shift = r % len(configs)  # interleaved, each repeat starting one configuration later
            for cfg in configs[shift:] + configs[:shift]:
                ips, seconds = measure(cfg, sets, args.batch, Path(tmp))
                speed[cfg].append(ips)
                print(f"[{r + 1}/{args.repeats}] {cfg.name}: {ips:,.0f} images/s ({seconds:.1f} s training)")

    def med(cfg: Config | None) -> float:
        return statistics.median(speed[cfg]) if cfg is not None else float("nan")

    print()
    for line in facts(gpus):
        print(line)
    print(f"digits demo, {args.epochs} epochs, batch_size {args.batch} per process, medians of {args.repeats}")
    print("images/s of the training stage; p = processes, t = threads per process\n")
    head = f"{'launcher':<11} {'framework':<11} {'1 process':>16} {'several':>16} {'ratio':>6}"
    print(f"{head} {'1p, same threads':>22} {'ratio (ideal 2.00)':>19}")
    for launcher, fw, one, many, same in rows:
        a, b = f"{one.label} {med(one):,.0f}", f"{many.label} {med(many):,.0f}"
        line = f"{launcher:<11} {NAMES[fw]:<11} {a:>16} {b:>16} {med(many) / med(one):>6.2f}"
        if same is not None:
            line += f" {f'{same.label} {med(same):,.0f}':>22} {med(many) / med(same):>19.2f}"
        print(line)


if __name__ == "__main__":
    main()
