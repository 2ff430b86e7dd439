"""The `dopt` command: argument parsing, the one place exit codes are decided, the final summary."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
import sysconfig
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from dopt import __version__
from dopt import log as dlog
from dopt.errors import EXIT_FAILED, EXIT_USAGE, UserError
from dopt.parallel.launcher import Launch, detect, refuse_many
from dopt.store.lock import hold
from dopt.store.workdir import WorkDir
from dopt.text import path_problem, shortened

if TYPE_CHECKING:
    from dopt.scenario import Scenario
    from dopt.store.identity import RunRecord

__all__ = ["main"]


# How this process signs its error lines: "dopt", or "dopt [rank N]" in a distributed run.
_TAG = "dopt"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise UserError(message, fix=f"see `{self.prog} --help`")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, metavar="scen.yaml", help="the scenario file")
    p.add_argument("--workdir", metavar="DIR", help="directory holding user_module.py, where outputs go (default: .)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one scenario key by dotted path, e.g. scenario.strategy.epochs=1 (repeatable)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more output (debug)")
    p.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only")


def _init_parser() -> argparse.ArgumentParser:
    from dopt.commands.init import FRAMEWORKS, TASKS

    p = _Parser(
        prog="dopt init",
        description="Write a commented user_module.py and scen.yaml, plus a small "
        "offline dataset in data/, so that `dopt -c scen.yaml` runs at once. Never overwrites.",
    )
    p.add_argument("--framework", choices=FRAMEWORKS, default="pytorch", type=str.lower)
    p.add_argument("--task", choices=TASKS, default="classification", type=str.lower)
    p.add_argument("--dir", default=".", metavar="DIR", help="where to write (default: the current directory)")
    p.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="count", default=0, help=argparse.SUPPRESS)
    return p


def _parsers() -> dict[str, argparse.ArgumentParser]:
    run = _Parser(
        prog="dopt",
        description="Evolutionary, hardware-aware neural architecture search: "
        "trains a weight-sharing supernet around your PreNet/PostNet and searches a Pareto front "
        "of subnets under a size, FLOPs or latency constraint; one process or several (torchrun, horovodrun).",
        usage="%(prog)s [-h] [--version] -c scen.yaml [--resume] [--stage {all,search}] [--results DIR] "
        "[--overwrite] [--set KEY=VALUE] [--workdir DIR] [-v] [-q]\n"
        "       dopt validate -c scen.yaml [--set KEY=VALUE] [--workdir DIR]\n"
        "       dopt analyze -c scen.yaml [--samples N] [--cost-range LO:HI] [--split-by DIM]\n"
        "       dopt train -c scen.yaml --result N [--epochs E] [--from-scratch] [--resume]\n"
        "       dopt init [--framework {pytorch,tensorflow}] [--task {classification,detection,segmentation}] [--dir DIR]",
        epilog="Other commands: `dopt validate -c scen.yaml` checks a scenario without training; "
        "`dopt analyze -c scen.yaml` shows which choices of the space matter; `dopt init` writes a user module, a scenario and data to start from (each has its own --help).",
    )
    run.add_argument("--version", action="version", version=f"dopt {__version__}")
    _common(run)
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run (or, with --stage search, search) from its checkpoints",
    )
    run.add_argument(
        "--stage",
        choices=("all", "search"),
        default="all",
        help="search: skip training, search again with the trained supernet (train once, search many)",
    )
    run.add_argument(
        "--results",
        metavar="DIR",
        help="with --stage search: the results folder (default results_<constraint_type>_<constraint_value>/)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results, logs and checkpoints of an earlier run (with --stage search: "
        "that search's results folder)",
    )
    analyze = _Parser(
        prog="dopt analyze",
        description="Search-space analysis of the trained supernet: evaluate subnets drawn uniformly "
        "and write results/space_analysis.{json,png} (error EDF per choice of every gene, metric vs "
        "cost, the choices that matter most). Continues where an interrupted analysis stopped.",
    )
    _common(analyze)
    analyze.add_argument("--samples", type=int, default=200, metavar="N", help="subnets to evaluate (default 200)")
    analyze.add_argument(
        "--cost-range",
        metavar="LO:HI",
        help="only subnets whose cost of the scenario's constraint_type lies in [LO, HI]",
    )
    analyze.add_argument(
        "--split-by",
        metavar="DIM",
        help="also analyse each group of one dimension separately, e.g. depth or skip@2",
    )
    analyze.set_defaults(resume=False, stage="search", results=None)
    train = _Parser(
        prog="dopt train",
        description="Train a result's model fully with the user module's data, loss and schedule and the "
        "scenario's optimizer, from its inherited weights (or from scratch); the trained weights are saved "
        "beside the script, which then loads them. Resumable.",
    )
    _common(train)
    which = train.add_mutually_exclusive_group(required=True)
    which.add_argument("--result", type=int, metavar="N", help="results/model_arch_result_N.py")
    which.add_argument(
        "--script", metavar="PATH", help="a result script by its path (what the script's --train passes)"
    )
    train.add_argument("--results", metavar="DIR", help="the results folder of --result (default results/)")
    train.add_argument("--epochs", type=int, metavar="E", help="training epochs (default: the scenario's epochs)")
    train.add_argument("--from-scratch", action="store_true", help="start from fresh weights, not the inherited ones")
    train.add_argument("--resume", action="store_true", help="continue an interrupted training of this result")
    train.add_argument("--overwrite", action="store_true", help="replace an earlier training of this result")
    train.set_defaults(stage="train")
    validate = _Parser(
        prog="dopt validate",
        description="Check scen.yaml and user_module.py, run one "
        "forward/backward through the smallest and largest subnet, print the space size and "
        "its cost range against the constraint. Writes nothing.",
    )
    _common(validate)
    return {"run": run, "validate": validate, "analyze": analyze, "train": train}


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if argv is None and detect().world_size > 1:
        _leave(code)
    return code


def _leave(code: int) -> None:
    """End a process of a distributed launch without the interpreter's finalization.

    Measured here (torch 2.13, gloo): in about 1 run in 6, a gloo worker thread was still releasing
    the last collective's tensors when Python finalized; it then needed the GIL, was torn down
    without it, and the C++ runtime aborted the process (SIGABRT) after a successful run, which
    the launcher reports as a failure and answers by killing the other ranks. Everything dopt
    writes is closed by now (files, the log, TensorBoard, the working directory's lock); only the
    standard streams are left to flush.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _main(argv: list[str] | None) -> int:
    argv = _command_first(list(sys.argv[1:] if argv is None else argv))
    # TensorFlow's C++ start-up lines (CPU features, absl) would drown dopt's own; TensorBoard's
    # writer imports TensorFlow when it is installed, even in a PyTorch run. A value set by the
    # user wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    workdir = Path.cwd()
    launch = detect()
    global _TAG
    _TAG = f"dopt [rank {launch.rank}]" if launch.rank else "dopt"
    try:
        if argv[:1] and argv[0] in COMMANDS:
            refuse_many(launch, argv[0])
        if argv[:1] == ["init"]:
            from dopt.commands.init import init_command

            init_args = _init_parser().parse_args(argv[1:])
            dlog.configure(init_args.verbose - init_args.quiet)
            return init_command(init_args)
        command = argv[0] if argv[:1] and argv[0] in COMMANDS else "run"
        args = _parsers()[command].parse_args(argv[1:] if command != "run" else argv)
        dlog.configure(args.verbose - args.quiet, launch.rank)
        _check_paths(args)
        workdir = Path(args.workdir).resolve() if args.workdir else Path.cwd()
        if not _is_dir(workdir):
            raise UserError(f"--workdir {shortened(args.workdir)}: no such directory", fix="pass an existing directory")
        _check_workdir(workdir, Path(args.config))
        _STARTED_IN[workdir] = _identity(workdir)
        return _dispatch(command, args, argv, workdir, launch)
    except UserError as exc:
        _fill_file(exc, workdir)
        print(f"{_TAG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        hint = "; continue with --resume" if WorkDir(workdir).run_file.exists() else ""
        print(f"{_TAG}: interrupted{hint}", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure during the run: user code or our own bug
        if launch.world_size > 1 and _in_collective(exc):
            return _report_peer_failure(exc)
        return _report_failure(exc, workdir)


def _dispatch(command: str, args: argparse.Namespace, argv: list[str], workdir: Path, launch: Launch) -> int:
    """Run ``command``; the working directory is locked by every command that writes into it."""
    line = " ".join(["dopt", *argv])
    if command == "validate":
        from dopt.commands.validate import validate
        from dopt.scenario import load

        scenario = load(Path(args.config), workdir=workdir, overrides=args.overrides)
        try:
            return validate(scenario)
        except UserError:
            raise
        except Exception as exc:  # validate exists to find the user's mistakes: exit 2 for theirs
            return _report_failure(exc, workdir, user_code_exit=EXIT_USAGE)
    if command == "analyze":
        from dopt.commands.analyze import analyze_command

        with hold(workdir, line):
            return analyze_command(*_load(args, workdir), args)
    if command == "train":
        from dopt.commands.train import train_command

        with hold(workdir, line):
            return train_command(*_load(args, workdir), args)
    from dopt.commands.run import run_command

    scenario, record = _load(args, workdir)
    if launch.world_size == 1:
        from dopt.parallel.spawn import spawn_per_gpu

        spawn_per_gpu(scenario, argv)  # several gpu_ids: returns only when one process runs
    # Rank 0 holds the lock for the whole launch (docs/cli.md#one-run-per-working-directory).
    with hold(workdir, line) if launch.rank == 0 else contextlib.nullcontext():
        return run_command(scenario, record, args, launch)


COMMANDS = ("init", "validate", "analyze", "train")
_VERBOSITY = ("-v", "-vv", "-vvv", "-q", "-qq", "--verbose", "--quiet")


def _command_first(argv: list[str]) -> list[str]:
    """``dopt -q train ...`` as ``dopt train -q ...``: verbosity flags may come before a command."""
    lead = 0
    while lead < len(argv) and argv[lead] in _VERBOSITY:
        lead += 1
    if 0 < lead < len(argv) and argv[lead] in COMMANDS:
        return [argv[lead], *argv[:lead], *argv[lead + 1 :]]
    return argv


def _load(args: argparse.Namespace, workdir: Path) -> tuple[Scenario, RunRecord | None]:
    from dopt.pipeline.plan import load_scenario

    return load_scenario(
        Path(args.config), workdir, tuple(args.overrides), resume=args.resume, stage=args.stage, results=args.results
    )


# The options that name a path, as argparse stores them.
_PATH_OPTIONS = {"config": "-c", "workdir": "--workdir", "results": "--results", "script": "--script"}


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse a path option that cannot be a path (empty, control characters, absurdly long)
    before anything is looked up or created by that name."""
    for dest, flag in _PATH_OPTIONS.items():
        raw = getattr(args, dest, None)
        problem = None if raw is None else path_problem(raw)
        if problem:
            raise UserError(f"{flag} {shortened(ascii(raw))}: not a path ({problem})", fix=f"pass {flag} a path")


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long for the file system
        return False


def _check_workdir(workdir: Path, config: Path) -> None:
    """Relative paths and user_module.py are found where dopt runs (as in NASEA), not beside scen.yaml."""
    beside = config.resolve().parent
    if not (workdir / "user_module.py").exists() and (beside / "user_module.py").exists():
        raise UserError(
            f"no user_module.py in the working directory {workdir}; dopt reads it, and resolves relative paths, "
            "where it runs",
            fix=f"cd {beside} first, or pass --workdir {beside}",
        )


def _fill_file(exc: UserError, workdir: Path) -> None:
    """Name user_module.py in errors raised about its classes without a file."""
    if exc.file is None and exc.key and exc.key.split(".")[0] in {"UserModule", "PreNet", "PostNet"}:
        exc.file = str(workdir / "user_module.py")


def _report_failure(exc: BaseException, workdir: Path, user_code_exit: int = EXIT_FAILED) -> int:
    """Report an exception raised during a run; the exit code is ``user_code_exit`` when it came
    from the user's code (``dopt validate``: 2, a run: 1), 1 otherwise."""
    stage = dlog.current_stage()
    if _gone(workdir):  # whatever failed next (often the user's data loading) only followed from it
        print(
            f"{_TAG}: error while {stage}: the working directory {workdir} was deleted or moved during the run "
            f"({type(exc).__name__}: {shortened(str(exc), 200)}). Fix: restore it and continue with --resume",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if isinstance(exc, OSError) and exc.filename and (exc.errno in _FULL or getattr(exc, "dopt_write", False)):
        print(
            f"{_TAG}: error while {stage}: could not write {exc.filename}: {exc.strerror}. What was written before "
            "is kept. Fix: free space or make that folder writable, then continue with --resume",
            file=sys.stderr,
        )
        return EXIT_FAILED
    original = exc
    frames = traceback.extract_tb(original.__traceback__)
    dopt_dir = str(Path(__file__).parent)
    user = [f for f in frames if _is_user_file(f.filename, workdir, dopt_dir)]
    notes = "".join(f" ({note})" for note in getattr(original, "__notes__", []))
    if user:
        print(
            f"{_TAG}: error in user code while {stage}: {type(original).__name__}: {original}{notes}", file=sys.stderr
        )
        print("user code (innermost last):", file=sys.stderr)
        print("".join(traceback.format_list(user)).rstrip(), file=sys.stderr)
        if os.environ.get("DOPT_TRACEBACK") or dlog.console_level() <= logging.DEBUG:
            traceback.print_exception(original, file=sys.stderr)
        else:
            print("(the full traceback: run again with -v)", file=sys.stderr)
        return user_code_exit
    else:
        print(f"{_TAG}: failed while {stage}: {type(original).__name__}: {original}{notes}", file=sys.stderr)
        traceback.print_exception(original, file=sys.stderr)
    return EXIT_FAILED


# A full disk, a file too large, a read-only folder, an exhausted quota, or any failed write of dopt's
# own files (dopt.store.atomic.naming): the machine's state, not a bug: one line naming the file
# (docs/resume.md#atomic-writes).
_FULL = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT}


def _in_collective(exc: BaseException) -> bool:
    """An exception raised inside torch.distributed or Horovod: in a run of several processes, the
    sign that another process stopped (its own error is on the console) or a collective timed out."""
    if type(exc).__name__ in {"DistBackendError", "DistNetworkError", "HorovodInternalError"}:
        return True
    frames = traceback.extract_tb(exc.__traceback__)
    return any(
        f"{os.sep}torch{os.sep}distributed{os.sep}" in f.filename or f"{os.sep}horovod{os.sep}" in f.filename
        for f in frames
    )


# The working directory as the command found it, to tell "deleted or moved during the run" (a
# folder recreated by a later write has another inode).
_STARTED_IN: dict[Path, tuple[int, int]] = {}


def _identity(folder: Path) -> tuple[int, int]:
    info = os.stat(folder)
    return info.st_dev, info.st_ino


def _gone(workdir: Path) -> bool:
    try:
        return workdir in _STARTED_IN and _identity(workdir) != _STARTED_IN[workdir]
    except OSError:
        return True


_LIBRARIES = tuple(
    sorted({path for key in ("stdlib", "platstdlib", "purelib", "platlib") if (path := sysconfig.get_paths().get(key))})
)


def _report_peer_failure(exc: BaseException) -> int:
    """One line: this process stopped because the run's collective communication broke."""
    first = (str(exc).strip().splitlines() or [""])[0]
    print(
        f"{_TAG}: stopped while {dlog.current_stage()}: the communication with the other processes of this run broke "
        f"(another process failed or was stopped: its error above, or the launcher's report, names it; or a "
        f"collective waited longer than DOPT_TIMEOUT_S): {type(exc).__name__}: {first[:300]}",
        file=sys.stderr,
    )
    if os.environ.get("DOPT_TRACEBACK") or dlog.console_level() <= logging.DEBUG:
        traceback.print_exception(exc, file=sys.stderr)
    return EXIT_FAILED


def _is_user_file(filename: str, workdir: Path, dopt_dir: str) -> bool:
    """A frame of the user's own code: a file in the working directory, not dopt's, not Python's
    and not an installed package's (a virtual environment may live in the working directory)."""
    if filename.startswith((dopt_dir, "<", *_LIBRARIES)) or {"site-packages", "dist-packages"} & set(
        Path(filename).parts
    ):
        return False
    try:
        Path(filename).resolve().relative_to(workdir)
        return True
    except ValueError:
        return False
