#!/usr/bin/env python3
"""Record what a dopt checkout does on a fixed set of short, seeded scenarios, and compare two records.

    python scripts/compare_behaviour.py run --dopt-root ROOT --python PY --out DIR [--cases a,b,...]
    python scripts/compare_behaviour.py diff DIR_A DIR_B

``run`` copies demo folders into a scratch directory, runs ``PY -m dopt ...`` there for every case
(with ``PYTHONPATH=ROOT`` so that ROOT's ``dopt`` package is the one imported; the interpreter used
and the ``dopt`` module it imported are checked and written to ``DIR/meta.json``), and records under
``DIR/<case>/``:

    exit_code.txt   the command's exit status
    files.txt       every file in the working directory afterwards, sorted, relative paths
                    (log_YYYYmmdd-HHMMSS -> log_X, events.out.tfevents.<time>.<host>... -> events.out.tfevents.X)
    digests.txt     sha256 of the deterministic binary outputs (weights, checkpoints, pictures)
    files/<path>    normalised copies of pareto.json, pareto.csv, journal*.jsonl, search_state.json,
                    model_arch_result_*.py, *.trained.json, space_analysis.json, and the other small
                    JSON records (run.json, pretrain.json, train.json)
    _logs/          the command line, stdout, stderr and wall time: for reading, never compared

Normalisation: timing fields are dropped (JSON keys eval_seconds, elapsed_s, build_s, seconds,
wall_s, *_seconds; CSV column eval_seconds); absolute scratch, cache and checkout paths are
replaced by <WORKDIR>, <SCRATCH>, <DOPT_ROOT>. Everything else is kept as written. JSON files
that hold a timing field are re-serialised after dropping it (same indent, key order and float
repr, so a file without timings compares as the bytes dopt wrote); all others are copied as bytes.

``diff`` prints every difference between two such records and exits 1 if there is any (0 if none).

Environment of every dopt command: the caller's, minus launcher variables (WORLD_SIZE, HOROVOD_*,
OMPI_*, PMI_*, ...) and minus CUDA devices, plus DOPT_CACHE_DIR (a scratch folder, so no latency
table from ~/.cache is used), MPLBACKEND=Agg, TF_CPP_MIN_LOG_LEVEL=2, PYTHONHASHSEED=0,
PYTHONDONTWRITEBYTECODE=1 (nothing is written into ROOT, and no __pycache__ in the records), and
OMP_NUM_THREADS=1 (--threads to change). The thread count changes the numbers: the same case run
with 1 and with 2 threads gives other metrics (floating-point sums split differently), while two
runs with the same count agree byte for byte. dopt sets torch's threads from OMP_NUM_THREADS
(default: all cores) and records them in checkpoints/run.json, so fixing it makes a record
independent of the machine's core count; one thread is also the fastest on a busy 2-core machine
(no oversubscription). `diff` reports records made with different --threads as a difference.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------------------------- cases

_S = "scenario.strategy."
SHORT = [
    f"{_S}epochs=1",
    f"{_S}searcher.pop_size=8",
    f"{_S}searcher.generation_num=2",
    f"{_S}searcher.seed=0",
]

LATENCY_FUNC = '''

def _latency_func(self, model):
    """Deterministic stand-in for a device measurement (compare_behaviour.py): milliseconds from the
    parameter count and the kernel areas of the model's convolutions."""
    params = sum(p.numel() for p in model.parameters())
    kernels = sum(m.kernel_size[0] * m.kernel_size[1] for m in model.modules() if isinstance(m, nn.Conv2d))
    return 0.1 + params / 50000.0 + kernels / 2000.0


UserModule.latency_func = _latency_func
'''


@dataclass
class Case:
    name: str
    demo: str | None  # demo folder copied as the working directory
    args: list[str]  # after `python -m dopt`
    base: str | None = None  # run on a copy of this case's working directory instead of a demo
    prepare: str | None = None  # name of a preparation step
    timeout: int = 900
    sets: list[str] = field(default_factory=list)


def _set(sets: list[str]) -> list[str]:
    out: list[str] = []
    for s in sets:
        out += ["--set", s]
    return out


CASES: list[Case] = [
    Case("a_torch_size", "digits_torch", ["-c", "scen.yaml"] + _set(SHORT)),
    Case(
        "b_torch_flops",
        "digits_torch",
        ["-c", "scen.yaml"]
        + _set(SHORT + [f"{_S}constraint.constraint_type=flops", f"{_S}constraint.constraint_value=400000"]),
    ),
    Case("c_tf_size", "digits_tf", ["-c", "scen.yaml"] + _set(SHORT)),
    Case(
        "d_tf_flops",
        "digits_tf",
        ["-c", "scen.yaml"]
        + _set(SHORT + [f"{_S}constraint.constraint_type=flops", f"{_S}constraint.constraint_value=400000"]),
    ),
    Case(
        "e_torch_latency_func",
        "digits_torch",
        ["-c", "scen.yaml"]
        + _set(SHORT + [f"{_S}constraint.constraint_type=latency", f"{_S}constraint.constraint_value=0.9"]),
        prepare="latency_func",
    ),
    Case(
        "f_seg_torch_pretrain",
        "shapes_seg_torch",
        ["-c", "scen.yaml"]
        + _set(
            [
                f"{_S}epochs=1",
                f"{_S}dataset.pre_train_epochs=1",
                f"{_S}searcher.pop_size=6",
                f"{_S}searcher.generation_num=2",
                f"{_S}searcher.seed=0",
            ]
        ),
    ),
    Case(
        "g_search_again",
        None,
        ["-c", "scen.yaml", "--stage", "search"] + _set([f"{_S}constraint.constraint_value=20000"]),
        base="a_torch_size",
    ),
    Case("h_analyze", None, ["analyze", "-c", "scen.yaml", "--samples", "12"], base="a_torch_size"),
    Case(
        "i_train_result",
        None,
        ["train", "-c", "scen.yaml", "--result", "1", "--epochs", "1"],
        base="a_torch_size",
    ),
]

# ------------------------------------------------------------------------------------- normalising

TIMING_KEYS = {"eval_seconds", "elapsed_s", "build_s", "seconds", "wall_s", "elapsed", "duration_s"}
TIMING_COLUMNS = {"eval_seconds", "elapsed_s", "elapsed"}
# Copied (normalised) and compared as text.
TEXT_PATTERNS = [
    re.compile(r"(^|/)pareto\.json$"),
    re.compile(r"(^|/)pareto\.csv$"),
    re.compile(r"(^|/)journal[^/]*\.jsonl$"),
    re.compile(r"(^|/)search_state\.json$"),
    re.compile(r"(^|/)model_arch_result_[^/]*\.py$"),
    re.compile(r"\.trained\.json$"),
    re.compile(r"(^|/)space_analysis\.json$"),
    re.compile(r"(^|/)checkpoints/run\.json$"),
    re.compile(r"(^|/)pretrain\.json$"),
    re.compile(r"(^|/)train\.json$"),
]
# Hashed and compared: binary outputs that a seeded run writes identically.
DIGEST_SUFFIXES = (".pth", ".pt", ".npz", ".h5", ".png")
# Never hashed: logs, TensorBoard events, bytecode, the lock.
NO_DIGEST = re.compile(r"(^|/)(log_[^/]*|__pycache__)/|\.dopt\.lock$|tfevents")

_STAMP = re.compile(r"\d{8}-\d{6}")
_EVENTS = re.compile(r"events\.out\.tfevents\.[^/]*$")


def normalise_relpath(rel: str) -> str:
    parts = []
    for part in rel.split("/"):
        if part.startswith("log_"):
            part = _STAMP.sub("X", part)
        parts.append(part)
    return _EVENTS.sub("events.out.tfevents.X", "/".join(parts))


def _drop_timing(obj):
    if isinstance(obj, dict):
        return {k: _drop_timing(v) for k, v in obj.items() if not (k in TIMING_KEYS or k.endswith("_seconds"))}
    if isinstance(obj, list):
        return [_drop_timing(v) for v in obj]
    return obj


def _has_timing(obj) -> bool:
    if isinstance(obj, dict):
        return any(k in TIMING_KEYS or k.endswith("_seconds") or _has_timing(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_has_timing(v) for v in obj)
    return False


def _json_indent(text: str) -> int | None:
    m = re.match(r"[\[{]\n( +)", text)
    return len(m.group(1)) if m else None


def normalise_text(rel: str, text: str, paths: list[tuple[str, str]]) -> str:
    for old, new in paths:
        text = text.replace(old, new)
    if rel.endswith(".jsonl"):
        lines = []
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                lines.append(line)  # a torn line is part of the behaviour: keep it
                continue
            lines.append(json.dumps(_drop_timing(rec), allow_nan=True) if _has_timing(rec) else line)
        return "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    if rel.endswith(".json"):
        try:
            doc = json.loads(text)
        except ValueError:
            return text
        if not _has_timing(doc):
            return text
        out = json.dumps(_drop_timing(doc), indent=_json_indent(text), allow_nan=True)
        return out + ("\n" if text.endswith("\n") else "")
    if rel.endswith(".csv"):
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            return text
        keep = [i for i, h in enumerate(rows[0]) if h not in TIMING_COLUMNS]
        if len(keep) == len(rows[0]):
            return text
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for r in rows:
            w.writerow([r[i] for i in keep if i < len(r)])
        return buf.getvalue()
    return text


# -------------------------------------------------------------------------------------------- run


def _env(root: Path, scratch: Path, threads: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (
            k in {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "PMI_SIZE", "PMI_RANK"}
            or k.startswith(("HOROVOD_", "OMPI_", "TORCHELASTIC_", "DOPT_", "PYTHON"))
        )
    }
    env.update(
        PYTHONPATH=str(root),
        PYTHONHASHSEED="0",
        PYTHONDONTWRITEBYTECODE="1",
        DOPT_CACHE_DIR=str(scratch / "cache"),
        MPLBACKEND="Agg",
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS=threads,
    )
    env.pop("CI", None)
    return env


def _prepare(step: str | None, work: Path) -> None:
    if step == "latency_func":
        um = work / "user_module.py"
        um.write_text(um.read_text() + LATENCY_FUNC)


def _record(case: Case, work: Path, dest: Path, paths: list[tuple[str, str]]) -> None:
    files = sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file() or p.is_symlink())
    (dest / "files.txt").write_text("".join(normalise_relpath(f) + "\n" for f in sorted(files, key=normalise_relpath)))
    digests = []
    for rel in files:
        src = work / rel
        if any(p.search(rel) for p in TEXT_PATTERNS):
            out = dest / "files" / normalise_relpath(rel)
            out.parent.mkdir(parents=True, exist_ok=True)
            raw = src.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                out.write_bytes(raw)
                continue
            out.write_text(normalise_text(rel, text, paths), encoding="utf-8")
        elif rel.endswith(DIGEST_SUFFIXES) and not NO_DIGEST.search(rel):
            digests.append(f"{hashlib.sha256(src.read_bytes()).hexdigest()}  {normalise_relpath(rel)}\n")
    (dest / "digests.txt").write_text("".join(sorted(digests, key=lambda s: s.split("  ", 1)[1])))


def cmd_run(a: argparse.Namespace) -> int:
    root = Path(a.dopt_root).resolve()
    py = a.python
    out = Path(a.out).resolve()
    wanted = set(a.cases.split(",")) if a.cases else None
    cases = [c for c in CASES if wanted is None or c.name in wanted or c.name.split("_")[0] in wanted]
    # a case run on another case's working directory needs that case first
    names = {c.name for c in cases}
    for c in list(cases):
        if c.base and c.base not in names:
            cases.insert(0, next(b for b in CASES if b.name == c.base))
            names.add(c.base)
    cases.sort(key=lambda c: [x.name for x in CASES].index(c.name))
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="dopt_compare_", dir=a.scratch)).resolve()
    (scratch / "cache").mkdir()
    env = _env(root, scratch, a.threads)
    probe = subprocess.run(
        [
            py,
            "-c",
            "import sys, dopt; print(dopt.__file__); print(getattr(dopt, '__version__', '?')); print(sys.version)",
        ],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        print(probe.stderr, file=sys.stderr)
        return 2
    dopt_file, version, pyver = probe.stdout.splitlines()[:3]
    if not Path(dopt_file).resolve().is_relative_to(root):
        print(f"error: {py} imports dopt from {dopt_file}, not from {root}", file=sys.stderr)
        return 2
    rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True).stdout
    meta = {
        "dopt_root": str(root),
        "git_head": rev,
        "git_dirty": bool(dirty.strip()),
        "python": py,
        "python_version": pyver,
        "dopt_file": dopt_file,
        "dopt_version": version,
        "threads": a.threads,
        "scratch": str(scratch),
        "cases": {},
    }
    paths_common = [(str(scratch), "<SCRATCH>"), (str(root), "<DOPT_ROOT>")]
    works: dict[str, Path] = {}
    t_all = time.monotonic()
    for c in cases:
        dest = out / c.name
        if dest.exists():
            shutil.rmtree(dest)
        (dest / "_logs").mkdir(parents=True)
        work = scratch / c.name
        if c.base:
            shutil.copytree(works[c.base], work, symlinks=True)
        else:
            shutil.copytree(root / "demos" / c.demo, work, symlinks=True)
        _prepare(c.prepare, work)
        argv = [py, "-m", "dopt", *c.args]
        (dest / "_logs" / "cmd.txt").write_text(" ".join(argv) + f"\n(cwd {work})\n")
        print(f"[{c.name}] {' '.join(c.args)}", flush=True)
        t0 = time.monotonic()
        try:
            p = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=c.timeout)
            rc, so, se = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc = "timeout"
            so = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            se = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        wall = time.monotonic() - t0
        (dest / "_logs" / "stdout.txt").write_text(so)
        (dest / "_logs" / "stderr.txt").write_text(se)
        (dest / "_logs" / "wall_s.txt").write_text(f"{wall:.1f}\n")
        (dest / "exit_code.txt").write_text(f"{rc}\n")
        paths = [(str(work), "<WORKDIR>")] + paths_common
        _record(c, work, dest, paths)
        meta["cases"][c.name] = {"exit_code": rc, "wall_s": round(wall, 1)}
        print(f"[{c.name}] exit {rc} in {wall:.0f} s", flush=True)
        works[c.name] = work
        # the copy for the dependent cases is taken from this state; later cases never write here
    meta["total_wall_s"] = round(time.monotonic() - t_all, 1)
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    if not a.keep_scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"recorded {len(cases)} cases in {out} ({meta['total_wall_s']:.0f} s)")
    return 0


# ------------------------------------------------------------------------------------------- diff


def _tree(d: Path) -> dict[str, Path]:
    return {p.relative_to(d).as_posix(): p for p in sorted(d.rglob("*")) if p.is_file()}


def cmd_diff(a: argparse.Namespace) -> int:
    da, db = Path(a.dir_a), Path(a.dir_b)
    ca = {p.name for p in da.iterdir() if p.is_dir()}
    cb = {p.name for p in db.iterdir() if p.is_dir()}
    n = 0
    ma, mb = (json.loads((d / "meta.json").read_text()) if (d / "meta.json").exists() else {} for d in (da, db))
    if ma.get("threads") != mb.get("threads"):
        print(
            f"== meta.json: recorded with --threads {ma.get('threads')} vs {mb.get('threads')}: the numbers differ by design"
        )
        n += 1
    for name in sorted(ca | cb):
        if name not in ca or name not in cb:
            print(f"== {name}: only in {da if name in ca else db}")
            n += 1
            continue
        ta = {k: v for k, v in _tree(da / name).items() if not k.startswith("_logs/")}
        tb = {k: v for k, v in _tree(db / name).items() if not k.startswith("_logs/")}
        for rel in sorted(set(ta) | set(tb)):
            if rel not in ta or rel not in tb:
                print(f"== {name}/{rel}: only in {da if rel in ta else db}")
                n += 1
                continue
            ba, bb = ta[rel].read_bytes(), tb[rel].read_bytes()
            if ba == bb:
                continue
            n += 1
            print(f"== {name}/{rel}: differs")
            try:
                la = ba.decode().splitlines(keepends=True)
                lb = bb.decode().splitlines(keepends=True)
            except UnicodeDecodeError:
                print("   (binary)")
                continue
            lines = list(difflib.unified_diff(la, lb, f"{da.name}/{name}/{rel}", f"{db.name}/{name}/{rel}", n=1))
            for line in lines[: a.max_lines]:
                print("   " + line.rstrip("\n")[:300])
            if len(lines) > a.max_lines:
                print(f"   ... {len(lines) - a.max_lines} more diff lines")
    print(f"{n} difference(s)" if n else "no differences")
    return 1 if n else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the cases and record their normalised outputs")
    r.add_argument(
        "--dopt-root", required=True, help="the dopt checkout (its demos/ are used, and it goes first on PYTHONPATH)"
    )
    r.add_argument("--python", required=True, help="interpreter with dopt's dependencies installed")
    r.add_argument("--out", required=True, help="output folder (one sub-folder per case)")
    r.add_argument("--cases", help="comma-separated case names or letters (default: all)")
    r.add_argument("--threads", default="1", help="OMP_NUM_THREADS for every dopt command (default 1)")
    r.add_argument("--scratch", default=None, help="where the scratch working directories go (default: $TMPDIR)")
    r.add_argument("--keep-scratch", action="store_true", help="keep the scratch working directories")
    d = sub.add_parser("diff", help="compare two records; exit 1 if they differ")
    d.add_argument("dir_a")
    d.add_argument("dir_b")
    d.add_argument("--max-lines", type=int, default=40, help="diff lines shown per file (default 40)")
    a = ap.parse_args()
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `diff ... | head` ends quietly
    return cmd_run(a) if a.cmd == "run" else cmd_diff(a)


if __name__ == "__main__":
    sys.exit(main())
