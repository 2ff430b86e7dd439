"""`dopt -c scen.yaml`: plan, prepare and run the search, then print the summary (docs/cli.md#commands)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dopt import log as dlog
from dopt.costs import kinds as cost_kinds
from dopt.errors import EXIT_EMPTY_FRONT, EXIT_OK
from dopt.parallel.comm import Comm, Relayed, SingleProcess
from dopt.parallel.context import RunContext
from dopt.parallel.launcher import Launch
from dopt.pipeline.plan import plan
from dopt.pipeline.prepare import prepare
from dopt.pipeline.results import empty_front
from dopt.pipeline.run import RunSummary, run
from dopt.results.pareto import damage
from dopt.scenario import Scenario
from dopt.store.identity import RunRecord
from dopt.text import cost_text, rel

__all__ = ["run_command", "print_summary"]


def run_command(scenario: Scenario, record: RunRecord | None, args: argparse.Namespace, launch: Launch) -> int:
    """Run (or resume, or search again) in one process of ``launch``; the exit code."""
    comm = _connect(scenario, launch)
    main = comm.rank == 0
    results = Path(args.results) if args.results else None
    if results is not None and not results.is_absolute():
        results = scenario.workdir / results
    todo = plan(
        scenario, resume=args.resume, stage=args.stage, results=results, overwrite=args.overwrite, record=record
    )
    damaged = damage(todo.results_dir) if todo.finished else ""
    if todo.finished and damaged and main:
        logging.getLogger("dopt").warning(
            "the finished run's %s/ is damaged (%s): writing it again from the journal",
            rel(todo.results_dir, Path.cwd()),
            damaged,
        )
    if todo.finished and not damaged:
        if main:
            print(
                f"dopt: nothing to resume: the run finished; results in {rel(todo.results_dir, Path.cwd())}/ "
                "(to search on, raise searcher.generation_num or the budget that stopped it, e.g. "
                "--resume --set scenario.strategy.searcher.generation_num=N)"
            )
        comm.close()
        return EXIT_OK
    prepared = prepare(scenario, seed=todo.seed, continuing=todo.resume or todo.stage != "all", comm=comm)
    summary = run(prepared, todo, RunContext(comm))
    if main:
        print_summary(summary)
    # Not on failure: the launcher stops every process when one fails (docs/distributed.md#failures).
    comm.close()
    return EXIT_OK if summary.front else EXIT_EMPTY_FRONT


def _connect(scenario: Scenario, launch: Launch) -> Comm:
    """The communicator of a launch of several processes (one process: a trivial one)."""
    if launch.world_size == 1:
        return SingleProcess()
    from dopt.backends import get_backend

    others = launch.world_size - 1
    with dlog.stage(f"joining the other {others} process{'es' if others > 1 else ''} of this {launch.launcher} launch"):
        comm = Relayed(get_backend(scenario.framework).connect(scenario, launch))
    logging.getLogger("dopt").info(
        "process %d of %d (%s), %d on this machine", comm.rank, comm.world_size, comm.engine, comm.local_size
    )
    return comm


def print_summary(s: RunSummary) -> None:
    """The Pareto front as a table, where the results and logs are."""
    here = Path.cwd()
    if not s.front:
        lines = empty_front(s.archive, s.smallest)
        rule = "!" * 100
        print(f"\n{rule}\nNO RESULT: " + "\n".join(lines) + f"\n{rule}")
        print(f"\ncandidates: {rel(s.results_dir, here)}/pareto.json, pareto.csv (exit code {EXIT_EMPTY_FRONT})")
        print(f"logs:       tensorboard --logdir {rel(s.log_dir, here)}")
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
        row = f"  {n:>3}  {c.metric:>14.4f}" + "".join(f"  {cost_text(c.costs[k.name]):>14}" for k in kinds)
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
    print(f"\nresults: {rel(s.results_dir, here)}/ (model_arch_result_N.py, pareto.json/.csv/.png)")
    print(f"logs:    tensorboard --logdir {rel(s.log_dir, here)}")
