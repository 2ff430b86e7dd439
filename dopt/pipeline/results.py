"""Writing the results (docs/outputs.md): one verified result script per front member, the latency
of each measured again as exported, pareto.json/.csv/.png, and the search state marked finished."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from dopt import __version__
from dopt import costs as cost_kinds
from dopt.archive import Archive, Candidate
from dopt.costs import Costs
from dopt.evolution import SearchResult
from dopt.log import Progress, stage
from dopt.pipeline.inputs import Prepared, StageInput
from dopt.pipeline.search import cost_label, save_state
from dopt.results import write_csv, write_json
from dopt.results.header import header_of, replace_header
from dopt.text import grouped

__all__ = ["finish", "empty_front"]

log = logging.getLogger(__name__)

# (the front member, its script, the model rebuilt from the script)
Written = tuple[Candidate, Path, Any]


def finish(s: StageInput, archive: Archive, result: SearchResult) -> list[int]:
    """Results, the final Pareto picture, and the search state marked finished."""
    from dopt.results.plot import figure_to_rgb_array, pareto_figure

    front = archive.front()
    s.ctx.write(_write_results, s.prepared, s.evaluator, archive, s.plan.results_dir, result)
    if s.ctx.is_main:
        fig = pareto_figure(archive, cost_label=cost_label(s.prepared.scenario), metric_label=s.prepared.metric_name)
        s.writer.add_image("search/pareto_final", figure_to_rgb_array(fig), result.generations, dataformats="HWC")
    s.ctx.write(save_state, s, archive, result.generations, result)
    return front


def _write_results(p: Prepared, evaluator: Any, archive: Archive, results_dir: Path, result: SearchResult) -> None:
    from dopt.results.plot import pareto_figure, save_png

    sc = p.scenario
    results_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(results_dir.glob("model_arch_result_*")):  # of an earlier end of this search (extended)
        path.unlink()
    written = _write_scripts(p, evaluator, archive, results_dir)
    latency = _verify_latency(p, written) if p.latency is not None else None
    extra: dict[str, Any] = {
        "seed": p.seed,
        "metric_name": p.metric_name,
        "framework": sc.framework,
        "space_size": p.space.size(),
        "stopped_by": result.stopped_by,
        "overrides": list(sc.overrides),
        "dopt_version": __version__,
    }
    if latency is not None:
        extra["latency"] = latency
    write_json(
        results_dir / "pareto.json", archive, objective={"metric": "maximise", "cost": sc.constraint.kind}, extra=extra
    )
    write_csv(results_dir / "pareto.csv", archive)
    remeasured = [r["measured_ms"] for r in latency["results"]] if latency is not None else None
    figure = pareto_figure(archive, cost_label=cost_label(sc), metric_label=p.metric_name, remeasured=remeasured)
    save_png(figure, results_dir / "pareto.png")


def _write_scripts(p: Prepared, evaluator: Any, archive: Archive, results_dir: Path) -> list[Written]:
    """One result script per front member, each rebuilt, exported and checked against its subnet."""
    front = archive.front()
    if front:
        log.info(
            "writing %d result scripts to %s: each is rebuilt, exported and checked against its subnet",
            len(front),
            results_dir.name,
        )
    written: list[Written] = []
    with Progress(len(front), "writing results", "results") as progress:
        for n, index in enumerate(front, start=1):
            c = archive[index]
            script = results_dir / f"model_arch_result_{n}.py"
            measured, model = evaluator.write_result(c.arch, script, header_of(c, p.metric_name))
            wrong = [k.name for k in cost_kinds.kinds() if k.measured and measured.get(k.name) != c.costs.get(k.name)]
            if wrong:
                raise RuntimeError(
                    f"{script.name}: the header says {_costs_text(c.costs, wrong)} but the written model "
                    f"has {_costs_text(measured, wrong)}"
                )
            written.append((c, script, model))
            progress.update(1, last=script.name)
    return written


def _verify_latency(p: Prepared, written: list[Written]) -> dict[str, Any]:
    """Measure every written result again, as the exported model, in the runtime of the table (or
    with latency_func); rewrite each header with the measured latency, the prediction and, when the
    measurement exceeds the constraint, a flag (docs/latency.md#verification-of-the-results)."""
    assert p.latency is not None
    with stage("measuring the latency of every result"):
        measured = p.latency.verify([m for _, _, m in written], [c.arch for c, _, _ in written])
    results = [_remeasured(p, n, c, script, ms) for n, ((c, script, _), ms) in enumerate(zip(written, measured), 1)]
    if results:
        errors = [abs(float(r["error_percent"])) for r in results]
        log.info(
            "latency of the %d results measured again as exported: prediction within ±10 %% for %d, median error "
            "%.1f %%, %d over the constraint",
            len(results),
            sum(e <= 10 for e in errors),
            float(np.median(errors)),
            sum(r["over_constraint"] for r in results),
        )
    return {**p.latency.as_json(), "constraint_ms": p.scenario.constraint.value, "results": results}


def _remeasured(p: Prepared, n: int, c: Candidate, script: Path, ms: float) -> dict[str, Any]:
    """Result ``n``'s header rewritten with its measured latency; its row of pareto.json's latency."""
    assert p.latency is not None
    value = p.scenario.constraint.value
    over = ms > value
    predicted = c.costs["latency"]
    extra: dict[str, Any] = {"latency_ms": round(ms, 4), "latency_ms_predicted": round(predicted, 4)}
    if p.latency.user is None:
        key = p.latency.table.key  # type: ignore[union-attr]
        extra.update(latency_threads=key["threads"], latency_device=str(key["device"]))
    if over:
        extra["latency_over_constraint"] = True
        log.warning(
            "%s: measured %.4g ms, over the constraint of %s ms (predicted %.4g ms); flagged in its header, the "
            "summary and the plot",
            script.name,
            ms,
            grouped(value),
            predicted,
        )
    replace_header(script, header_of(c, p.metric_name, extra))
    return {
        "result": n,
        "encoding": list(c.encoding),
        "predicted_ms": predicted,
        "measured_ms": ms,
        "error_percent": 100 * (predicted - ms) / ms,
        "over_constraint": over,
    }


def _costs_text(costs: Costs, names: list[str]) -> str:
    return ", ".join(f"{name} {costs.get(name)}" for name in names)


def empty_front(archive: Archive, smallest: float) -> list[str]:
    """What to tell the user when no candidate made the front (docs/search.md#an-empty-front)."""
    kind, value = archive.constraint.kind, archive.constraint.value
    unit = cost_kinds.get(kind).unit
    if not len(archive):
        return [
            "the Pareto front is empty: the search stopped (a budget, max_evaluations or max_duration_s) before "
            "its first candidate",
            "Fix: raise or remove that budget under searcher, then: dopt -c scen.yaml --resume",
        ]
    within = [c for c in archive if c.feasible]
    if within:
        return [
            f"the Pareto front is empty: {len(within)} of {len(archive)} candidates met {kind} ≤ {grouped(value)}, but "
            "the metric of every one was NaN or infinite",
            "Fix: check your metric function on a trained model (dopt validate shows one metric), then start a new "
            "run with --overwrite (an edited user_module.py cannot reuse this supernet)",
        ]
    seen = min((c.cost(kind) for c in archive), default=math.nan)
    return [
        f"the Pareto front is empty: none of {len(archive)} candidates met {kind} ≤ {grouped(value)} {unit}; the "
        f"smallest seen had {grouped(seen)} (the smallest subnet of the space has {grouped(smallest)})",
        "Fix: raise constraint_value, or a larger pop_size / generation_num, then search the trained supernet "
        "again without retraining: dopt -c scen.yaml --stage search --set "
        f"scenario.strategy.constraint.constraint_value={grouped(seen).replace(',', '')}",
    ]
