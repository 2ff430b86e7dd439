"""`dopt analyze`: evaluate subnets drawn uniformly from the trained supernet and write what the
space teaches (docs/analysis.md). The statistics are :mod:`dopt.results.space_analysis`'s; this module loads the
supernet, evaluates through a journal (so an interrupted analysis continues, and candidates any
search of this supernet already evaluated are reused), and writes the results."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dopt import __version__
from dopt import costs as cost_kinds
from dopt.errors import UserError
from dopt.evaluation import Evaluator, JournaledEvaluator
from dopt.log import Progress, remove_file, stage
from dopt.parallel.context import RunContext
from dopt.pipeline.inputs import Prepared
from dopt.pipeline.plan import trained
from dopt.pipeline.prepare import prepare
from dopt.pipeline.train import load_final
from dopt.results.space_analysis import Record, analyze, dimensions, draw
from dopt.scenario import Scenario
from dopt.store.atomic import atomic_write_text
from dopt.store.identity import RunRecord
from dopt.store.journal import Journal, evaluation_key
from dopt.store.workdir import ANALYSIS_DIR, JOURNAL, WorkDir
from dopt.text import grouped, rel

__all__ = ["AnalysisSummary", "analyze_command", "run_analysis"]

log = logging.getLogger(__name__)


def analyze_command(scenario: Scenario, record: RunRecord | None, args: argparse.Namespace) -> int:
    """Run the analysis ``args`` ask for and print its summary; the exit code."""
    if args.samples < 1:
        raise UserError(f"--samples {args.samples}: expected at least 1", fix="e.g. --samples 200")
    cost_range = _cost_range(args.cost_range) if args.cost_range else None
    summary = run_analysis(scenario, args.samples, cost_range, args.split_by, record=record)
    here = Path.cwd()
    print(f"\nsearch-space analysis of {summary.samples} subnets ({summary.reused} from earlier evaluations):")
    for line in summary.summary:
        print(f"  {line}")
    print(f"\nwritten: {rel(summary.json_path, here)}, {rel(summary.png_path, here)}")
    return 0


def _cost_range(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition(":")
    try:
        low, high = float(lo.replace(",", "")), float(hi.replace(",", ""))
    except ValueError:
        low = high = float("nan")
    if not sep or not low <= high:
        raise UserError(f"--cost-range {text}: expected LO:HI with LO ≤ HI", fix="e.g. --cost-range 10000:30000")
    return low, high


@dataclass(frozen=True, kw_only=True)
class AnalysisSummary:
    json_path: Path
    png_path: Path
    samples: int
    reused: int
    summary: list[str]


def run_analysis(
    sc: Scenario,
    samples: int,
    cost_range: tuple[float, float] | None = None,
    split_by: str | None = None,
    ctx: RunContext | None = None,
    record: RunRecord | None = None,
) -> AnalysisSummary:
    """Draw ``samples`` subnets, evaluate them, write ``results/space_analysis.{json,png}``.

    Raises:
        UserError: no trained supernet, another scenario's checkpoints, a cost range that holds
            no subnet, or a ``split_by`` that is not a dimension of this space.
    """
    ctx = ctx or RunContext()
    record = trained(sc, "analyse", record)
    seed = sc.searcher.seed if sc.searcher.seed is not None else record.seed
    p = prepare(sc, seed=seed, continuing=True)
    kind = sc.constraint.kind
    if cost_range is not None:
        lo, hi = p.costs.cost_range(kind)
        if cost_range[1] < lo or cost_range[0] > hi:
            raise UserError(
                f"--cost-range {grouped(cost_range[0])}:{grouped(cost_range[1])} holds no subnet: the space's {kind} runs "
                f"from {grouped(lo)} to {grouped(hi)}",
                fix=f"pick a range within {grouped(lo)}:{grouped(hi)}",
            )
    encodings = draw(p.space, p.costs, samples, seed, kind, cost_range)
    if split_by is not None:
        _check_split(p, encodings, split_by)
    work = WorkDir(sc.workdir)
    log_dir = work.log_dir("analyze")
    file_log = ctx.file_log(log_dir / "dopt.log")
    writer = ctx.summary_writer(log_dir)
    try:
        if len(encodings) < samples:
            log.warning("only %d distinct subnets could be drawn (of %d asked for)", len(encodings), samples)
        with stage("drawing the BN-calibration subset"):
            evaluator = Evaluator(p.session, p.costs, np.random.default_rng([seed, 1]))
        with stage("loading the trained supernet"):
            load_final(p, work.checkpoints)
            evaluator.reset()
        with stage("evaluating the sampled subnets"):
            records, reused = _evaluate(p, ctx, evaluator, encodings)
        with stage("writing the analysis"):
            result = analyze(p.space, records, seed, split_by)
            out = work.results
            paths = ctx.write(_write, p, result, records, out, samples, cost_range, writer)
        for line in result["summary"]:
            log.info("%s", line)
    finally:
        writer.close()
        if file_log is not None:
            remove_file(file_log)
    json_path, png_path = paths if paths is not None else (out / "space_analysis.json", out / "space_analysis.png")
    return AnalysisSummary(
        json_path=json_path, png_path=png_path, samples=len(records), reused=reused, summary=result["summary"]
    )


def _check_split(p: Prepared, encodings: list[tuple[int, ...]], split_by: str) -> None:
    per_subnet = {n for e in encodings for n, values in dimensions(p.space, e).items() if len(values) == 1}
    per_subnet -= {"kernel", "expand", "width", "skip"}  # pooled: several values per subnet
    if split_by not in per_subnet:
        choices = ", ".join(sorted(per_subnet, key=lambda n: (n != "depth", n)))
        raise UserError(
            f"--split-by {split_by}: not a dimension with one value per subnet in this space",
            fix=f"use one of {choices}",
        )


def _evaluate(
    p: Prepared, ctx: RunContext, evaluator: Evaluator, encodings: list[tuple[int, ...]]
) -> tuple[list[Record], int]:
    """Every subnet's metric and cost: from this analysis' journal, or any search's journal of
    the same supernet and evaluation settings, else evaluated and journaled at once."""
    sc = p.scenario
    work = WorkDir(sc.workdir)
    key = evaluation_key(p.identity, sc.searcher.bn_calib_batches, sc.searcher.eval_batches)
    journaled = JournaledEvaluator(evaluator, Journal(work.analysis_journal, key), ctx.write)
    known: dict[tuple[int, ...], dict[str, Any]] = {}
    for path in sorted(work.checkpoints.glob(f"*/{JOURNAL}")):
        if path.parent.name != ANALYSIS_DIR:
            known.update({tuple(r["encoding"]): r for r in Journal(path, key) if r.get("metric") is not None})
    known.update({tuple(r["encoding"]): r for r in journaled.journal})
    kind = cost_kinds.get(sc.constraint.kind)
    records, reused = [], 0
    with Progress(len(encodings), "analysing", "subnets") as progress:
        for encoding in encodings:
            done = known.get(encoding)
            if done is not None:
                reused += 1
                records.append(Record(encoding, float(done["metric"]), float(done[kind.column])))
            else:
                new = journaled.evaluate(p.space.decode(encoding))
                journaled.record(encoding, new)
                records.append(Record(encoding, float(new.metric), float(new.costs[kind.name])))  # type: ignore[arg-type]
            progress.update(1)
    if reused:
        log.info("%d of %d subnets taken from earlier evaluations of this supernet", reused, len(encodings))
    usable = [r for r in records if np.isfinite(r.metric)]
    if len(usable) < len(records):
        log.warning("%d subnets with a NaN or infinite metric are left out", len(records) - len(usable))
    return usable, reused


def _write(
    p: Prepared,
    result: dict[str, Any],
    records: list[Record],
    out: Path,
    asked: int,
    cost_range: tuple[float, float] | None,
    writer: Any,
) -> tuple[Path, Path]:
    from dopt.results.analysis_plot import analysis_figure
    from dopt.results.plot import figure_to_rgb_array, save_png

    sc = p.scenario
    kind = cost_kinds.get(sc.constraint.kind)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "samples_asked": asked,
        "seed": p.seed,
        "metric_name": p.metric_name,
        "cost": kind.name,
        "cost_range": list(cost_range) if cost_range is not None else None,
        **result,
        "subnets": [{"encoding": list(r.encoding), "metric": r.metric, kind.column: r.cost} for r in records],
        "dopt_version": __version__,
    }
    json_path, png_path = out / "space_analysis.json", out / "space_analysis.png"
    atomic_write_text(json_path, json.dumps(doc, indent=1, allow_nan=False) + "\n")
    fig = analysis_figure(
        result,
        [r.metric for r in records],
        [r.cost for r in records],
        cost_label=f"{kind.name} ({kind.unit})",
        metric_label=p.metric_name,
    )
    save_png(fig, png_path)
    writer.add_image("analysis/space", figure_to_rgb_array(fig), 0, dataformats="HWC")
    writer.add_text("analysis/summary", "\n\n".join(result["summary"]), 0)
    return json_path, png_path
