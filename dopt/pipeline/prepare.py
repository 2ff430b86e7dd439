"""Preparing a run (docs/architecture.md#call-order): import and check the user module, read a
batch, dry-run PreNet/PostNet, build the supernet, size the space and its costs, rehearse one step.
Nothing is written."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from types import ModuleType

import numpy as np

from dopt import costs as cost_kinds
from dopt.backends import get_backend
from dopt.backends.base import Session, Setup
from dopt.costs import CostModel
from dopt.errors import UserError
from dopt.latency.source import LatencySource, latency_source
from dopt.log import stage
from dopt.parallel.comm import Comm, SingleProcess
from dopt.pipeline.inputs import Prepared, Pretraining
from dopt.scenario import Scenario
from dopt.space import SearchSpace
from dopt.store.identity import training_identity
from dopt.store.pretrained import check_manifest, source
from dopt.text import grouped, plain, rounded
from dopt.user_module import file_sha256, load_user_module, metric_name

__all__ = ["prepare", "describe", "TINY_FEASIBLE"]

log = logging.getLogger(__name__)

# Below this share of random subnets meeting the constraint, a run and `dopt validate` warn
# (docs/search.md#a-tiny-feasible-region).
TINY_FEASIBLE = 0.05


def prepare(
    scenario: Scenario, seed: int | None = None, continuing: bool = False, comm: Comm | None = None
) -> Prepared:
    """Import and check the user module, read a batch, dry-run PreNet/PostNet, size the space.

    ``seed`` (that of a checkpointed run being continued) takes the place of a scenario without one.
    ``continuing``: a resumed run or another search of a trained supernet, which predicts latency
    with the table it was started with. ``comm``: the processes of a distributed run, which all
    take rank 0's seed and latency table (docs/distributed.md).

    Raises:
        UserError: any mistake the user can fix, before anything is trained or written.
    """
    with stage("checking the user module"):
        module = load_user_module(scenario.workdir, scenario.framework)
        user_sha256 = file_sha256(Path(module.__file__ or ""))
        metric = _metric_name(module)
        backend = get_backend(scenario.framework)
        backend.check_user_module(module)
    if scenario.searcher.seed is not None:
        seed = scenario.searcher.seed
    elif seed is None:
        seed = secrets.randbelow(2**31)
    comm = comm or SingleProcess()
    seed = comm.broadcast(seed)  # every rank samples the same subnets (docs/distributed.md)
    if comm.world_size > 1:
        _check_same_inputs(comm, scenario, user_sha256, seed)
    with stage("reading the first batch and dry-running PreNet/PostNet"):
        setup = backend.setup(scenario, module, seed, comm)
    probe = setup.probe
    space = SearchSpace(scenario.supernet, probe.in_channels)
    _check_memory(space, CostModel(space, probe.in_hw, probe.fixed))
    with stage("building the supernet"):
        session = setup.build_supernet(space)
    pretraining = None
    if scenario.dataset.pre_train_dir is not None:
        with stage("reading pre_train_dir"):
            pretraining = check_pretraining(scenario, session)
    latency = _latency(scenario, setup, session, space, continuing, comm)
    costs = CostModel(space, probe.in_hw, probe.fixed, **(latency.cost_model_args() if latency else {}))
    lo, hi = _cost_range(scenario, costs, latency)
    share = _feasible_share(scenario, space, costs, latency)
    with stage("rehearsing one step of the smallest and the largest subnet"):
        rehearsal = session.rehearse([space.decode(space.smallest()), space.decode(space.largest())])
    return Prepared(
        scenario=scenario,
        session=session,
        probe=probe,
        space=space,
        costs=costs,
        seed=seed,
        cost_range=(lo, hi),
        feasible_share=share,
        rehearsal=rehearsal,
        user_sha256=user_sha256,
        metric_name=metric,
        latency=latency,
        pretraining=pretraining,
    )


# Bytes per weight while training: the weight, its gradient and Adam's two moments, in float32.
_TRAINING_BYTES_PER_WEIGHT = 16


def _check_memory(space: SearchSpace, costs: CostModel) -> None:
    """Refuse a supernet whose weights alone could not be trained in this machine's memory, before
    anything is allocated (the supernet holds the largest subnet's weights).

    Raises:
        UserError: the estimate exceeds the machine's physical memory.
    """
    weights = costs.cost("size", space.decode(space.largest()))
    need = weights * _TRAINING_BYTES_PER_WEIGHT
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: nothing to compare with
        return
    if need > have:
        raise UserError(
            f"the largest subnet has {weights:,.0f} parameters: training it needs at least {need / 2**30:,.1f} GiB "
            f"(weights, gradients and optimizer state), more than this machine's {have / 2**30:,.1f} GiB",
            key="scenario.strategy.supernet",
            fix="use fewer or narrower layers (filters), smaller kernel_sizes or expand_ratios",
        )


def _metric_name(module: ModuleType) -> str:
    metric = metric_name(module)
    taken = {k.header for k in cost_kinds.kinds() if k.header} | {"encoding"}
    if metric in taken:
        raise UserError(
            f"metric_name {metric!r} is also a key of every result header",
            key="UserModule.metric_name",
            fix="name the metric after what it measures, e.g. top1_accuracy",
        )
    return metric


def _latency(
    scenario: Scenario, setup: Setup, session: Session, space: SearchSpace, continuing: bool, comm: Comm
) -> LatencySource | None:
    """The latency predictor of a latency constraint: rank 0's table, measured once and shared, or
    the user's latency_func on every rank (docs/latency.md)."""
    if scenario.constraint.kind != "latency":
        return None
    latency = None
    with stage("measuring latency"):
        shared_table = comm.world_size > 1 and getattr(setup.user, "latency_func", None) is None
        if comm.rank == 0 or not shared_table:
            latency = latency_source(
                scenario, setup.user, setup.latency_meter, session.extract, space, setup.probe.in_hw, continuing
            )
        if shared_table:  # rank 0's table, measured once: every rank predicts the same costs
            obtained = comm.broadcast(latency.obtained if latency is not None else None)
            if comm.rank != 0:
                latency = LatencySource(obtained=obtained)
    return latency


def _cost_range(scenario: Scenario, costs: CostModel, latency: LatencySource | None) -> tuple[float, float]:
    """The smallest and largest subnet's cost; a constraint below the smallest is the user's mistake."""
    kind, value = scenario.constraint.kind, scenario.constraint.value
    if latency is not None and latency.user_range is not None:
        lo, hi = latency.user_range  # measured on the smallest and largest subnets only
    else:
        lo, hi = costs.cost_range(kind)
    if lo > value:
        what = f"smallest subnet's {kind}"
        if kind == "latency":
            measured = latency is not None and latency.user is not None
            what = (
                "smallest subnet's latency measured by latency_func"
                if measured
                else "fastest subnet's predicted latency"
            )
        raise UserError(
            f"constraint_value {grouped(value)} is below the {what} ({plain(rounded(lo))} "
            f"{cost_kinds.get(kind).unit}, PreNet and PostNet included): no subnet can meet it",
            key="scenario.strategy.constraint.constraint_value",
            fix=f"set constraint_value ≥ {plain(rounded(lo, up=True))}, or shrink filters / PreNet / PostNet",
            **scenario.where("scenario.strategy.constraint.constraint_value"),
        )
    return lo, hi


def _feasible_share(
    scenario: Scenario, space: SearchSpace, costs: CostModel, latency: LatencySource | None
) -> float | None:
    """The share of random subnets meeting the constraint, with the warnings a search space earns."""
    share = None
    if latency is None or latency.user is None:  # latency_func is too slow to call 2000 times
        share = float(np.mean(costs.sampled(scenario.constraint.kind) <= scenario.constraint.value))
        if share < TINY_FEASIBLE:
            log.warning("%s", _tiny_feasible(scenario, costs, share))
    if scenario.searcher.pop_size > space.size():
        log.warning(
            "pop_size %d exceeds the %d distinct subnets of the space: the search will stop once it has seen them all",
            scenario.searcher.pop_size,
            space.size(),
        )
    return share


def check_pretraining(sc: Scenario, session: Session) -> Pretraining | None:
    """Read ``pre_train_dir`` before anything is written: load a pre-training output into the
    supernet ``session`` (checked against PreNet and the skeleton), or build the pre-training of a
    dataset (its folders checked). None for a scenario without pre-training.

    Raises:
        UserError: ``pre_train_dir`` is empty, of another skeleton, or an unusable dataset.
    """
    try:
        src = source(sc)
        if src is None:
            return None
        if src.checkpoint:
            session.load_pretrained(check_manifest(src.path, sc), src.path)
            if "scenario.strategy.dataset.pre_train_epochs" in sc.places:
                log.warning(
                    "pre_train_epochs is ignored: pre_train_dir %s holds pre-trained weights, so nothing is "
                    "pre-trained (name the class folders to pre-train again)",
                    src.path,
                )
            return Pretraining(src)
        return Pretraining(src, session.pretrainer(src.path, sc.dataset.pre_train_epochs))
    except UserError as exc:
        # A scenario key's mistake names where scen.yaml (or --set) wrote it, as the scenario's own
        # checks do (docs/cli.md#error-messages).
        if exc.file is None and exc.key and exc.key.startswith("scenario."):
            place = sc.where(exc.key)
            exc.file, exc.line, exc.column = place.get("file"), place.get("line"), place.get("column")
        raise


def _check_same_inputs(comm: Comm, scenario: Scenario, user_sha256: str, seed: int) -> None:
    """Every process must read the same scenario and user module: the machines of a run share its
    working directory (docs/distributed.md#launching)."""
    mine = (user_sha256, training_identity(scenario, seed, user_sha256))
    seen = comm.allgather(mine)
    odd = [r for r, other in enumerate(seen) if other != seen[0]]
    if odd:
        what = "user_module.py" if any(seen[r][0] != seen[0][0] for r in odd) else "scen.yaml (or its --set options)"
        raise UserError(
            f"process{'es' if len(odd) > 1 else ''} {', '.join(map(str, odd))} of this run read another {what} "
            "than process 0",
            fix="give every machine the same working directory (a shared file system, or identical copies) and "
            "the same command line",
        )


def _tiny_feasible(sc: Scenario, costs: CostModel, share: float) -> str:
    kind, value, pop = sc.constraint.kind, sc.constraint.value, sc.searcher.pop_size
    median = float(np.median(costs.sampled(kind)))
    expected = f"about {share * pop:.1f} of them" if share * pop >= 0.1 else "probably none of them"
    return (
        f"only {share:.1%} of subnets drawn at random meet {kind} ≤ {grouped(value)}: the search's first population "
        f"of {pop} holds {expected}, and the search may end with no feasible subnet. Fix: "
        f"raise constraint_value (half of random subnets have {kind} ≤ {grouped(round(median))}), raise pop_size, or "
        "shrink the space (filters, search_space)"
    )


def describe(p: Prepared) -> list[str]:
    """Lines about the space and the constraint, for the log and `dopt validate`."""
    kind, value = p.scenario.constraint.kind, p.scenario.constraint.value
    lo, hi = (rounded(v) for v in p.cost_range)
    unit = cost_kinds.get(kind).unit
    lines = [
        f"search space: {len(p.space.layers)} layers, {p.space.size():,} distinct subnets, PreNet output {_shape(p)}",
        f"{kind}: smallest subnet {grouped(lo)}, largest {grouped(hi)} {unit}; constraint {grouped(value)} {unit} "
        + ("(every subnet fits)" if hi <= value else f"({_fraction_note(lo, hi, value)}; {_share_note(p)})"),
    ]
    if kind == "latency":
        if not (p.latency and p.latency.user):
            lines[1] = (
                lines[1].replace("smallest subnet", "predicted: fastest subnet", 1).replace("largest", "slowest", 1)
            )
        else:
            lines[1] = lines[1].replace("smallest subnet", "by latency_func: smallest subnet", 1)
    return lines + (p.latency.describe() if p.latency else [])


def _share_note(p: Prepared) -> str:
    share = p.feasible_share
    if share is None:
        return "share of random subnets that meet it unknown: latency_func is not called on samples"
    text = f"{share:.1%} of random subnets meet it"
    return text + (" — tiny, see the warning above" if share < TINY_FEASIBLE else "")


def _shape(p: Prepared) -> str:
    """PreNet's output shape in the scenario's data format, as input_shape is written."""
    c, (h, w) = p.probe.in_channels, p.probe.in_hw
    return f"{c}x{h}x{w} (CHW)" if p.scenario.supernet.data_format == "channels_first" else f"{h}x{w}x{c} (HWC)"


def _fraction_note(lo: float, hi: float, value: float) -> str:
    return f"{(value - lo) / (hi - lo):.0%} of the cost range is feasible"
