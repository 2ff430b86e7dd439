"""The `dopt` command: argument parsing, the one place exit codes are decided, the final summary."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from dopt import __version__
from dopt import log as dlog
from dopt.errors import UserError
from dopt.launcher import Launch, detect, refuse_many
from dopt.workdir_lock import hold

if TYPE_CHECKING:
    from dopt.run import RunSummary
    from dopt.scenario import Scenario

__all__ = ["main"]

# docs/cli.md#exit-codes
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_EMPTY_FRONT = 0, 1, 2, 3

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
    from dopt.init import FRAMEWORKS, TASKS

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


def _parsers() -> tuple[argparse.ArgumentParser, ...]:
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
    return run, validate, analyze, train


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
    run_parser, validate_parser, analyze_parser, train_parser = _parsers()
    workdir = Path.cwd()
    launch = detect()
    global _TAG
    _TAG = f"dopt [rank {launch.rank}]" if launch.rank else "dopt"
    try:
        if argv[:1] and argv[0] in COMMANDS:
            refuse_many(launch, argv[0])
        if argv[:1] == ["init"]:
            return _init(_init_parser().parse_args(argv[1:]))
        if argv[:1] == ["validate"]:
            args = validate_parser.parse_args(argv[1:])
        elif argv[:1] == ["analyze"]:
            args = analyze_parser.parse_args(argv[1:])
        elif argv[:1] == ["train"]:
            args = train_parser.parse_args(argv[1:])
        else:
            args = run_parser.parse_args(argv)
        dlog.configure(args.verbose - args.quiet, launch.rank)
        workdir = Path(args.workdir).resolve() if args.workdir else Path.cwd()
        if not workdir.is_dir():
            raise UserError(f"--workdir {args.workdir}: no such directory", fix="pass an existing directory")
        _check_workdir(workdir, Path(args.config))
        if argv[:1] == ["validate"]:
            from dopt.scenario import load

            scenario = load(Path(args.config), workdir=workdir, overrides=args.overrides)
            try:
                return _validate(scenario)
            except UserError:
                raise
            except Exception as exc:  # validate exists to find the user's mistakes: exit 2 for theirs
                return _report_failure(exc, workdir, user_code_exit=EXIT_USAGE)
        if argv[:1] == ["analyze"]:
            with hold(workdir, " ".join(["dopt", *argv])):
                return _analyze(_load(args, workdir), args)
        if argv[:1] == ["train"]:
            with hold(workdir, " ".join(["dopt", *argv])):
                return _train(_load(args, workdir), args)
        scenario = _load(args, workdir)
        if launch.world_size == 1:
            from dopt.spawn import spawn_per_gpu

            spawn_per_gpu(scenario, argv)  # several gpu_ids: returns only when one process runs
        # Rank 0 holds the lock for the whole launch (docs/cli.md#one-run-per-working-directory).
        with hold(workdir, " ".join(["dopt", *argv])) if launch.rank == 0 else contextlib.nullcontext():
            return _run(scenario, args, launch)
    except UserError as exc:
        _fill_file(exc, workdir)
        print(f"{_TAG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        hint = "; continue with --resume" if (workdir / "checkpoints" / "run.json").exists() else ""
        print(f"{_TAG}: interrupted{hint}", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure during the run: user code or our own bug
        if launch.world_size > 1 and _in_collective(exc):
            return _report_peer_failure(exc)
        return _report_failure(exc, workdir)


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


def _load(args: argparse.Namespace, workdir: Path) -> Scenario:
    """The scenario with the ``--set`` options of what this invocation continues re-applied
    first (the run's for --resume and --stage search, the search's for --stage search --resume),
    then this command line's, which win (docs/resume.md#overrides)."""
    from dopt.checkpoints import recorded_overrides
    from dopt.plan import results_dir_of, search_state
    from dopt.scenario import load, merge_overrides
    from dopt.scenario.load import override_key

    config, explicit = Path(args.config), tuple(args.overrides)
    if not args.resume and args.stage == "all":  # a new run: nothing recorded applies
        return load(config, workdir=workdir, overrides=explicit)
    recorded = recorded_overrides(workdir / "checkpoints")
    scenario = load(config, workdir=workdir, overrides=merge_overrides(recorded, explicit))
    if args.stage == "search" and args.resume:
        results = Path(args.results) if args.results else None
        if results is not None and not results.is_absolute():
            results = workdir / results
        state = search_state(workdir / "checkpoints" / results_dir_of(scenario, results).name)
        if isinstance(state.get("overrides"), list):
            recorded = tuple(str(t) for t in state["overrides"])
            scenario = load(config, workdir=workdir, overrides=merge_overrides(recorded, explicit))
    replaced = {override_key(t) for t in explicit}
    again = [t for t in recorded if override_key(t) not in replaced]
    if again:
        logging.getLogger("dopt").info(
            "re-applying the --set options recorded with the checkpoints: %s", " ".join(f"--set {t}" for t in again)
        )
    return scenario


def _run(scenario: Scenario, args: argparse.Namespace, launch: Launch) -> int:
    from dopt.context import RunContext
    from dopt.distributed import Comm, Relayed, SingleProcess
    from dopt.plan import plan
    from dopt.run import prepare, run

    comm: Comm = SingleProcess()
    if launch.world_size > 1:
        from dopt.backends import get_backend

        others = launch.world_size - 1
        with dlog.stage(
            f"joining the other {others} process{'es' if others > 1 else ''} of this {launch.launcher} launch"
        ):
            comm = Relayed(get_backend(scenario.framework).connect(scenario, launch))
        logging.getLogger("dopt").info(
            "process %d of %d (%s), %d on this machine", comm.rank, comm.world_size, comm.engine, comm.local_size
        )
    main = comm.rank == 0
    results = Path(args.results) if args.results else None
    if results is not None and not results.is_absolute():
        results = scenario.workdir / results
    todo = plan(scenario, resume=args.resume, stage=args.stage, results=results, overwrite=args.overwrite)
    if todo.finished and (todo.results_dir / "pareto.json").exists():
        if main:
            print(
                f"dopt: nothing to resume: the run finished; results in {_rel(todo.results_dir, Path.cwd())}/ "
                "(to search on, raise searcher.generation_num or the budget that stopped it, e.g. "
                "--resume --set scenario.strategy.searcher.generation_num=N)"
            )
        comm.close()
        return EXIT_OK
    prepared = prepare(scenario, seed=todo.seed, continuing=todo.resume or todo.stage != "all", comm=comm)
    summary = run(prepared, todo, RunContext(comm))
    if main:
        _print_summary(summary)
    # Not on failure: the launcher stops every process when one fails (docs/distributed.md#failures).
    comm.close()
    return EXIT_OK if summary.front else EXIT_EMPTY_FRONT


def _analyze(scenario: Scenario, args: argparse.Namespace) -> int:
    from dopt.analyze import run_analysis

    if args.samples < 1:
        raise UserError(f"--samples {args.samples}: expected at least 1", fix="e.g. --samples 200")
    cost_range = _cost_range(args.cost_range) if args.cost_range else None
    summary = run_analysis(scenario, args.samples, cost_range, args.split_by)
    here = Path.cwd()
    print(f"\nsearch-space analysis of {summary.samples} subnets ({summary.reused} from earlier evaluations):")
    for line in summary.summary:
        print(f"  {line}")
    print(f"\nwritten: {_rel(summary.json_path, here)}, {_rel(summary.png_path, here)}")
    return EXIT_OK


def _train(scenario: Scenario, args: argparse.Namespace) -> int:
    from dopt.train_result import result_script, train_result

    if args.script:
        script = Path(args.script).resolve()
        if not script.is_file():
            raise UserError(f"--script {args.script}: no such file", fix="pass the path of a model_arch_result_N.py")
    else:
        results = Path(args.results) if args.results else None
        if results is not None and not results.is_absolute():
            results = scenario.workdir / results
        script = result_script(scenario.workdir, args.result, results)
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other", fix="pass one of them")
    summary = train_result(scenario, script, args.epochs, args.from_scratch, args.resume, args.overwrite)
    here = Path.cwd()
    if summary is None:
        print(f"dopt: nothing to resume: the training of {script.name} finished")
        return EXIT_OK
    header = "n/a" if summary.header_metric is None else f"{summary.header_metric:.4f}"
    verdict = "raised" if summary.after > summary.before else "did NOT raise"
    print(
        f"\n{script.name}: {summary.metric_name} {summary.after:.4f} after {summary.epochs} epochs "
        f"({'from scratch' if summary.from_scratch else 'from inherited weights'}; before {summary.before:.4f}, "
        f"header {header}): training {verdict} it"
    )
    print(f"trained weights: {_rel(summary.weights, here)} (the script loads them from now on)")
    print(f"record:          {_rel(summary.record, here)}")
    print(f"logs:            tensorboard --logdir {_rel(summary.log_dir, here)}")
    return EXIT_OK


def _cost_range(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition(":")
    try:
        low, high = float(lo.replace(",", "")), float(hi.replace(",", ""))
    except ValueError:
        low = high = float("nan")
    if not sep or not low <= high:
        raise UserError(f"--cost-range {text}: expected LO:HI with LO ≤ HI", fix="e.g. --cost-range 10000:30000")
    return low, high


def _validate(scenario: Scenario) -> int:
    from dopt.run import describe, prepare

    prepared = prepare(scenario)
    space = prepared.space
    for line in describe(prepared):
        print(line)
    for name, encoding, report in zip(("smallest", "largest"), (space.smallest(), space.largest()), prepared.rehearsal):
        costs = prepared.costs.costs(space.decode(encoding))
        listed = ", ".join(f"{kind} {_cost_text(value)}" for kind, value in costs.items())
        print(f"{name} subnet: {listed}; forward/backward ok ({report})")
    print(f"{prepared.scenario.path.name}: OK")
    return EXIT_OK


def _init(args: argparse.Namespace) -> int:
    from dopt.init import init

    dlog.configure(args.verbose - args.quiet)
    target = Path(args.dir).resolve()
    written = init(target, args.framework, args.task)
    here = Path.cwd()
    for path in written:
        print(f"wrote {_rel(path, here)}{'/' if path.is_dir() else ''}")
    cd = "" if target == here else f"cd {_rel(target, here)} && "
    print(f"next: {cd}dopt validate -c scen.yaml && dopt -c scen.yaml   (then adapt both files to your data)")
    return EXIT_OK


def _check_workdir(workdir: Path, config: Path) -> None:
    """Relative paths and user_module.py are found where dopt runs (as in NASEA), not beside scen.yaml."""
    beside = config.resolve().parent
    if not (workdir / "user_module.py").exists() and (beside / "user_module.py").exists():
        raise UserError(
            f"no user_module.py in the working directory {workdir}; dopt reads it, and resolves relative paths, "
            "where it runs",
            fix=f"cd {beside} first, or pass --workdir {beside}",
        )


def _print_summary(s: RunSummary) -> None:
    from dopt.costs import kinds as cost_kinds
    from dopt.run import empty_front

    here = Path.cwd()
    if not s.front:
        lines = empty_front(s.archive, s.smallest)
        rule = "!" * 100
        print(f"\n{rule}\nNO RESULT: " + "\n".join(lines) + f"\n{rule}")
        print(f"\ncandidates: {_rel(s.results_dir, here)}/pareto.json, pareto.csv (exit code {EXIT_EMPTY_FRONT})")
        print(f"logs:       tensorboard --logdir {_rel(s.log_dir, here)}")
        return
    print(f"\nPareto front ({len(s.front)} of {len(s.archive)} distinct candidates, seed {s.seed}):")
    kinds = [k for k in cost_kinds() if all(k.name in s.archive[i].costs for i in s.front)]
    measured = {r["result"]: r for r in (s.latency or {}).get("results", [])}
    name = s.metric_name[:14]
    search_ms = "predicted ms" if (s.latency or {}).get("source") == "table" else "search ms"
    heads = [search_ms if k.name == "latency" and measured else k.name for k in kinds]
    print(f"  {'N':>3}  {name:>14}" + "".join(f"  {h:>14}" for h in heads) + ("    measured ms" if measured else ""))
    for n, i in enumerate(s.front, start=1):
        c = s.archive[i]
        row = f"  {n:>3}  {c.metric:>14.4f}" + "".join(f"  {_cost_text(c.costs[k.name]):>14}" for k in kinds)
        if n in measured:
            r = measured[n]
            row += f"  {r['measured_ms']:>13.4g}" + ("  OVER THE CONSTRAINT" if r["over_constraint"] else "")
        print(row)
    over = [r["result"] for r in measured.values() if r["over_constraint"]]
    if over:
        print(
            f"\nresults {', '.join(map(str, over))} measured over the latency constraint on this machine now "
            "(flagged in their headers and the plot); docs/latency.md#a-result-over-the-constraint"
        )
    print(f"\nresults: {_rel(s.results_dir, here)}/ (model_arch_result_N.py, pareto.json/.csv/.png)")
    print(f"logs:    tensorboard --logdir {_rel(s.log_dir, here)}")


def _cost_text(value: float) -> str:
    return f"{value:,}" if float(value).is_integer() else f"{value:.4g}"


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _fill_file(exc: UserError, workdir: Path) -> None:
    """Name user_module.py in errors raised about its classes without a file."""
    if exc.file is None and exc.key and exc.key.split(".")[0] in {"UserModule", "PreNet", "PostNet"}:
        exc.file = str(workdir / "user_module.py")


def _report_failure(exc: BaseException, workdir: Path, user_code_exit: int = EXIT_FAILED) -> int:
    """Report an exception raised during a run; the exit code is ``user_code_exit`` when it came
    from the user's code (``dopt validate``: 2, a run: 1), 1 otherwise."""
    stage = dlog.current_stage()
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
    if filename.startswith(dopt_dir) or "site-packages" in filename or filename.startswith("<"):
        return False
    try:
        Path(filename).resolve().relative_to(workdir)
        return True
    except ValueError:
        return False
