"""Replay, against a trained PyTorch digits working directory, the damaged, hostile and absurd
inputs of docs/resume.md and docs/scenario.md: each case runs `dopt` as a user would and prints
its exit code, its first error line and whether what must survive survived.

    python scripts/hostile_inputs.py [--keep DIR]

Takes a few minutes (one trained run, then mostly refusals). Not a test: a check to run by hand
after changing how dopt reads its inputs or writes its outputs; the suite holds the same cases one
by one (tests/pipeline, tests/scenario, tests/store).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.digits_workdir import make_workdir  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def dopt(work: Path, *args: str, timeout: float = 600, limit_kb: int | None = None) -> subprocess.CompletedProcess:
    prefix = ["bash", "-c", f'ulimit -f {limit_kb}; exec "$@"', "_"] if limit_kb else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "dopt", *args],
        cwd=work,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def first_error(proc: subprocess.CompletedProcess) -> str:
    lines = [x for x in proc.stderr.splitlines() if "error" in x or "Traceback" in x]
    return (lines[0] if lines else proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")[:220]


def report(name: str, proc: subprocess.CompletedProcess, ok: bool) -> bool:
    print(f"{'PASS' if ok else 'FAIL'} {name}: exit {proc.returncode}: {first_error(proc)}", flush=True)
    return ok


def copy(trained: Path, base: Path, name: str) -> Path:
    return Path(shutil.copytree(trained, base / name, symlinks=True))


def data_loss(trained: Path, base: Path) -> list[bool]:
    results = []
    for target in ("..", ".", "checkpoints", "data", str(base / "other")):
        (base / "other").mkdir(exist_ok=True)
        (base / "other" / "unrelated.txt").write_text("keep me")
        work = copy(trained, base / f"results_{len(results)}", "w")
        (work.parent / "unrelated.txt").write_text("keep me")
        before = sorted(p.relative_to(work.parent) for p in work.parent.rglob("*"))
        proc = dopt(work, "-c", "scen.yaml", "--stage", "search", "--results", target, "--overwrite")
        after = sorted(p.relative_to(work.parent) for p in work.parent.rglob("*"))
        kept = before == after and (base / "other" / "unrelated.txt").exists()
        results.append(report(f"--results {target} --overwrite", proc, proc.returncode == 2 and kept))
    work = copy(trained, base, "lock")
    victim = base / "victim.txt"
    victim.write_text("victim")
    (work / ".dopt.lock").symlink_to(victim)
    proc = dopt(work, "-c", "scen.yaml", "--stage", "search", "--results", "again")
    results.append(report("symlinked .dopt.lock", proc, proc.returncode == 2 and victim.read_text() == "victim"))
    for folder in ("checkpoints", "log_mine"):
        work = copy(trained, base, f"mine_in_{folder}")
        (work / folder).mkdir(exist_ok=True)
        (work / folder / "notes.txt").write_text("keep me")
        proc = dopt(work, "-c", "scen.yaml", "--overwrite")
        kept = (work / folder / "notes.txt").exists()
        results.append(
            report(f"whole-run --overwrite, a file of mine in {folder}/", proc, proc.returncode == 2 and kept)
        )
    work = copy(trained, base, "two_smalls")
    first = dopt(work, "-c", "scen.yaml", "--stage", "search", "--results", "mine/small")
    proc = dopt(work, "-c", "scen.yaml", "--stage", "search", "--results", "small")
    both = first.returncode == 0 and (work / "checkpoints" / "mine" / "small" / "journal.jsonl").exists()
    results.append(report("--results mine/small, then small", proc, both and proc.returncode == 0))
    proc = dopt(work, "-c", "scen.yaml", "--workdir", "w" * 5000)
    results.append(report("--workdir of 5,000 characters", proc, proc.returncode == 2))
    return results


def silent_wrong(trained: Path, base: Path) -> list[bool]:
    results = []
    work = copy(trained, base, "float")
    final = work / "checkpoints" / "supernet_final.pt"
    data = bytearray(final.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    final.write_bytes(bytes(data))
    proc = dopt(work, "-c", "scen.yaml", "--stage", "search", "--results", "again")
    results.append(
        report("one bit flipped in supernet_final.pt", proc, proc.returncode == 2 and "SHA-256" in proc.stderr)
    )
    edits: dict[str, Callable[[str], str]] = {
        "metric renamed": lambda line: line.replace('"metric"', '"metrik"', 1),
        "size as text": lambda line: line.replace('"size": ', '"size": "', 1).replace(', "flops"', '", "flops"', 1),
        "metric as text": lambda line: line.replace('"metric": 0.', '"metric": "x", "was": 0.', 1),
        "flipped digit": lambda line: line.replace('"metric": 0.', '"metric": 0.9', 1),
    }
    for name, edit in edits.items():
        work = copy(trained, base, f"journal_{name.replace(' ', '_')}")
        shutil.rmtree(work / "results")
        (work / "checkpoints" / "results" / "search_state.json").unlink()
        journal = work / "checkpoints" / "results" / "journal.jsonl"
        lines = journal.read_text().splitlines()
        n = next(i for i, x in enumerate(lines) if '"metric": 0.' in x)
        lines[n] = edit(lines[n])
        journal.write_text("\n".join(lines) + "\n")
        proc = dopt(work, "-c", "scen.yaml", "--resume")
        same = (
            proc.returncode == 0
            and (work / "results" / "pareto.json").read_bytes() == (trained / "results" / "pareto.json").read_bytes()
        )
        results.append(report(f"journal line: {name}", proc, same and "torn or altered" in proc.stderr))
    work = copy(trained, base, "pareto")
    pareto = work / "results" / "pareto.json"
    pareto.write_bytes(pareto.read_bytes()[:200])
    proc = dopt(work, "-c", "scen.yaml", "--resume")
    same = pareto.read_bytes() == (trained / "results" / "pareto.json").read_bytes()
    results.append(report("truncated pareto.json, --resume", proc, proc.returncode == 0 and same))
    return results


PAYLOAD = "import torch, os\nclass P:\n    def __reduce__(self):\n        return (os.system, ('touch PWNED',))\ntorch.save({'model': P()}, '{path}')\n"


def crashes(trained: Path, base: Path) -> list[bool]:
    results = []
    work = copy(trained, base, "pickle")
    for path in (work / "checkpoints" / "supernet_epoch_2.pt", work / "checkpoints" / "supernet_final.pt"):
        subprocess.run([sys.executable, "-c", PAYLOAD.replace("{path}", str(path))], check=True, cwd=work)
    proc = dopt(work, "-c", "scen.yaml", "--stage", "search", "--results", "again")
    results.append(
        report(
            "pickle in supernet_final.pt, --stage search", proc, proc.returncode == 2 and not (work / "PWNED").exists()
        )
    )
    shutil.rmtree(work / "results")
    (work / "checkpoints" / "results" / "search_state.json").unlink()
    proc = dopt(work, "-c", "scen.yaml", "--resume")
    ok = proc.returncode == 0 and "falling back" in proc.stderr and not (work / "PWNED").exists()
    results.append(report("pickle in the final and newest epoch checkpoint, --resume", proc, ok))
    for record in ('{"identity": {"seed": "zero"}}', '{"identity": {}}'):
        work = copy(trained, base, f"record_{len(results)}")
        (work / "checkpoints" / "run.json").write_text(record)
        proc = dopt(work, "-c", "scen.yaml", "--resume")
        results.append(report(f"run.json {record}", proc, proc.returncode == 2 and "Traceback" not in proc.stderr))
    work = make_workdir(base / "efbig")
    proc = dopt(work, "-c", "scen.yaml", limit_kb=64)  # files over 64 KiB: EFBIG
    one_line = proc.returncode == 1 and "could not write" in proc.stderr and "Traceback" not in proc.stderr
    results.append(report("file too large (ulimit -f)", proc, one_line))
    return results


BOMB = (
    "{"
    + ", ".join(
        ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
        + [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 9)]
    )
    + ", b: *a8}"
)

ABSURD = {
    "alias bomb at epochs": ("    epochs: 1\n", f"    epochs: {BOMB}\n"),
    "filters nested 1,000 deep": ("      filters: [16, 24, 48]\n", "      filters: " + "[" * 1000 + "]" * 1000 + "\n"),
    "seed 10^30": ("      seed: 7\n", "      seed: 1000000000000000000000000000000\n"),
    "NUL in a path": ("      train_dir: data/train.npz\n", '      train_dir: "data/tr\\0ain.npz"\n'),
    "5,000-character path": ("      train_dir: data/train.npz\n", "      train_dir: " + "d/" * 2500 + "\n"),
    "kernel_sizes [3, 20001]": (
        "      strides: [1, 2, 2]\n",
        "      strides: [1, 2, 2]\n      search_space: {kernel_sizes: [3, 20001]}\n",
    ),
    "expand_ratios [3, 10^7]": (
        "      strides: [1, 2, 2]\n",
        "      strides: [1, 2, 2]\n      search_space: {expand_ratios: [3, 10000000]}\n",
    ),
    "a filter of 1e9": ("      filters: [16, 24, 48]\n", "      filters: [16, 1000000000, 48]\n"),
    "pop_size 10^30": ("      pop_size: 6\n", "      pop_size: 1000000000000000000000000000000\n"),
    "epochs 10^30": ("    epochs: 1\n", "    epochs: 1000000000000000000000000000000\n"),
    "generation_num 10^30": ("      generation_num: 2\n", "      generation_num: 1000000000000000000000000000000\n"),
}


def hostile(base: Path) -> list[bool]:
    results = []
    for name, (old, new) in ABSURD.items():
        work = make_workdir(base / f"absurd_{len(results)}")
        scen = work / "scen.yaml"
        assert old in scen.read_text(), old
        scen.write_text(scen.read_text().replace(old, new))
        t0 = time.monotonic()
        proc = dopt(work, "validate", "-c", "scen.yaml", timeout=120)
        quick = time.monotonic() - t0 < 30
        one = len([x for x in proc.stderr.splitlines() if x.startswith("dopt: error")]) == 1
        results.append(report(name, proc, proc.returncode == 2 and quick and one and len(proc.stderr) < 3000))
    work = make_workdir(base / "devzero")
    proc = dopt(work, "-c", "/dev/zero", timeout=60)
    results.append(report("-c /dev/zero", proc, proc.returncode == 2))
    os.mkfifo(work / "fifo.yaml")
    proc = dopt(work, "-c", "fifo.yaml", timeout=60)
    results.append(report("-c fifo.yaml", proc, proc.returncode == 2))
    for bad in ("a\\x00b", "a\\x0cb", "a\\x85b", "a\\u2028b"):
        work = make_workdir(base / f"metric_{len(results)}")
        module = work / "user_module.py"
        module.write_text(
            module.read_text().replace("class UserModule:", f'class UserModule:\n    metric_name = "{bad}"', 1)
        )
        proc = dopt(work, "validate", "-c", "scen.yaml")
        results.append(report(f"metric_name {bad}", proc, proc.returncode == 2 and "metric_name" in proc.stderr))
    return results


def deleted_mid_run(base: Path) -> list[bool]:
    work = make_workdir(base / "deleted" / "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dopt", "-c", "scen.yaml"], cwd=work, stderr=subprocess.PIPE, text=True, env=ENV
    )
    deadline = time.monotonic() + 300
    while not list((work / "checkpoints").glob("supernet_epoch_1*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    shutil.rmtree(work)
    _, err = proc.communicate(timeout=600)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    ok = "user code" not in err and ("deleted or moved" in err or proc.returncode == 0)
    return [report("working directory deleted mid-run", done, ok)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="dopt_hostile_"))
    base.mkdir(parents=True, exist_ok=True)
    trained = make_workdir(base / "trained")
    proc = dopt(trained, "-c", "scen.yaml", "--set", "scenario.strategy.epochs=2")
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        return 1
    results = data_loss(trained, base) + silent_wrong(trained, base) + crashes(trained, base)
    results += hostile(base) + deleted_mid_run(base)
    print(f"\n{sum(results)} of {len(results)} cases as documented")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
