"""Rules that tie scenario keys together (docs/scenario.md#keys): what this version cannot run (refused first),
framework-dependent defaults, shape and length checks, optimizer and dataset rules, resource placement; they build
the frozen Scenario."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from dopt.scenario.model import (
    Constraint,
    Dataset,
    Optimizer,
    Resource,
    Scenario,
    Searcher,
    SearchSpaceChoices,
    Supernet,
    Training,
)
from dopt.scenario.schema import defaults
from dopt.text import path_problem, shortened

if TYPE_CHECKING:
    from dopt.scenario.load import _Reader

__all__ = ["build"]

_S = "scenario.strategy."
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # gs://, s3://, hdfs://: not ours to check


def build(r: _Reader, path: Path, workdir: Path) -> Scenario:
    _latency_keys(r)
    framework = r.get(_S + "framework")
    app = r.get(_S + "constraint.application_type")
    c = _S + "constraint."
    constraint = Constraint(
        application=app,
        kind=r.get(c + "constraint_type"),
        value=r.get(c + "constraint_value"),
        processor=r.get(c + "processor_version"),
        threads=r.get(c + "latency_threads"),
    )
    return Scenario(
        path=path,
        workdir=workdir,
        framework=framework,
        batch_size=r.get(_S + "batch_size"),
        epochs=r.get(_S + "epochs"),
        constraint=constraint,
        supernet=_supernet(r, framework, app),
        optimizer=_optimizer(r, framework, app),
        dataset=_dataset(r, app, workdir),
        searcher=Searcher(**_section(r, _S + "searcher")),
        training=_training(r),
        resource=_resource(r, framework),
        places={p: r._where(p) for p in [*r.locs, *r.set_by]},
    )


def _latency_keys(r: _Reader) -> None:
    """The latency keys of a constraint on another kind are ignored, with a warning."""
    p = _S + "constraint."
    kind = r.get(p + "constraint_type")
    if kind != "latency":
        for extra, default in (("processor_version", "host"), ("latency_threads", 1)):
            if p + extra in r.values and r.get(p + extra) != default:
                r.warn(
                    p + extra,
                    f"{extra} is ignored: it is for constraint_type latency, and this scenario constrains {kind}",
                    "remove it",
                )


def _section(r: _Reader, prefix: str) -> dict[str, Any]:
    """The values of one section's keys, written or default, by key name."""
    start = len(prefix) + 1
    return {p[start:]: r.get(p) for p in defaults() if p.startswith(prefix + ".") and "." not in p[start:]}


def _supernet(r: _Reader, framework: str, app: str) -> Supernet:
    p = _S + "supernet."
    layout = r.get(p + "data_format")
    if layout is None:
        layout = "channels_first" if framework == "pytorch" else "channels_last"
    if framework == "pytorch" and layout == "channels_last":
        r.fail(
            p + "data_format",
            "PyTorch supports channels_first only, got 'channels_last'",
            "data_format: channels_first, with input_shape in CHW order, e.g. input_shape: (3, 224, 224)",
        )
    shape = r.get(p + "input_shape") or ((3, 224, 224) if layout == "channels_first" else (224, 224, 3))
    a, b, c = shape
    if layout == "channels_first" and c <= 4 < a:
        who = "PyTorch" if framework == "pytorch" else "channels_first"
        r.fail(p + "input_shape", f"input_shape {shape} looks like HWC; {who} takes CHW", f"input_shape: {(c, a, b)}")
    if layout == "channels_last" and a <= 4 < c:
        r.fail(
            p + "input_shape",
            f"input_shape {shape} looks like CHW; channels_last takes HWC",
            f"input_shape: {(b, c, a)}, or data_format: channels_first",
        )
    filters, strides = r.get(p + "filters"), r.get(p + "strides")
    if len(filters) != len(strides):
        _length_mismatch(r, p, filters, strides)
    chosen = r.get(p + "feature_choose")
    if chosen and app == "image_classification":
        r.warn(p + "feature_choose", "ignored for image_classification", "remove it (it is for detection/segmentation)")
        chosen = ()
    if chosen and chosen[-1] >= len(filters):
        r.fail(
            p + "feature_choose",
            f"layer {chosen[-1]} does not exist: filters has {len(filters)} layers, numbered 0 to {len(filters) - 1}",
            f"feature_choose: {[i for i in chosen if i < len(filters)] or [len(filters) - 1]}",
        )
    space = SearchSpaceChoices(**_section(r, p + "search_space"))
    return Supernet(
        input_shape=shape,
        data_format=layout,
        filters=filters,
        strides=strides,
        feature_choose=chosen,
        search_space=space,
    )


def _length_mismatch(r: _Reader, p: str, filters: tuple[int, ...], strides: tuple[int, ...]) -> NoReturn:
    wrote = [k for k in ("filters", "strides") if p + k in r.values]
    other = "strides" if wrote == ["filters"] else "filters"
    default = {k: "" if k in wrote else " (the default)" for k in ("filters", "strides")}
    counts = (
        f"filters has {len(filters)} layers{default['filters']} but strides has "
        f"{len(strides)}{default['strides']}; they must have the same length"
    )
    if len(wrote) == 2:
        r.fail(p + "strides", counts, f"one stride per layer, e.g. strides: {[1] * len(filters)}")
    example = f"strides: {[1] * len(filters)}" if other == "strides" else f"filters: {[64] * len(strides)}"
    r.fail(p + wrote[0], counts, f"add {other} with one entry per layer, e.g. {example}")


def _optimizer(r: _Reader, framework: str, app: str) -> Optimizer:
    p = _S + "optimizer.weights_optimizer."
    seg = app == "semantic_segmentation"
    kind = r.get(p + "type")
    if kind is None:
        kind = "Momentum" if seg and framework == "tensorflow" else "Adam"
    if framework == "pytorch" and kind == "Momentum":
        r.fail(
            p + "type",
            "PyTorch has no Momentum optimizer",
            "type: SGD with momentum: 0.9 (dopt gives PyTorch SGD the momentum)",
        )
    momentum, betas = r.get(p + "momentum"), r.get(p + "betas")
    if p + "momentum" in r.values and kind == "Adam":
        r.fail(
            p + "momentum",
            "momentum is for SGD and Momentum, and type is Adam: it would be ignored",
            f"remove momentum, or set type: {'SGD' if framework == 'pytorch' else 'Momentum'}",
        )
    if p + "betas" in r.values and kind != "Adam":
        r.fail(
            p + "betas",
            f"betas are for Adam, and type is {kind}: they would be ignored",
            "remove betas, or set type: Adam",
        )
    rate = r.get(p + "learning_rate") or (1e-5 if seg else 1e-4)
    scale = r.get(p + "scale_lr")
    return Optimizer(
        type=kind, learning_rate=rate, betas=betas, momentum=momentum, scale_lr=True if scale is None else bool(scale)
    )


def _dataset(r: _Reader, app: str, workdir: Path) -> Dataset:
    p = _S + "dataset."
    pre = r.get(p + "pre_train_dir")
    if app == "image_classification":
        if pre is not None:
            r.warn(
                p + "pre_train_dir",
                "ignored for image_classification",
                "remove it (pre-training is for detection/segmentation)",
            )
        pre = None
    elif pre is None:
        r.fail(
            p + "pre_train_dir",
            f"required for {app} (pre-training, docs/tasks.md#pre-training)",
            "add it under scenario.strategy.dataset, e.g. pre_train_dir: data/pretrain",
        )
    else:
        pre = _local(r, p + "pre_train_dir", pre, workdir)
    train = _local(r, p + "train_dir", r.get(p + "train_dir"), workdir)
    epochs = r.get(p + "pre_train_epochs")
    if p + "pre_train_epochs" in r.values and pre is None:
        r.warn(p + "pre_train_epochs", f"ignored for {app}", "remove it (pre-training is for detection/segmentation)")
    return Dataset(
        train_dir=train,
        val_dir=_local(r, p + "val_dir", r.get(p + "val_dir"), workdir),
        pre_train_dir=pre,
        pre_train_epochs=epochs,
    )


def _local(r: _Reader, key: str, raw: str, workdir: Path) -> str:
    """An absolute path that exists (file or directory), or a remote URL as written."""
    if _URL.match(raw):
        return raw
    name = key.rpartition(".")[2]
    fix = f"create it or correct the path (relative paths start at {workdir}), e.g. {name}: data/{name[:-4]}"
    problem = path_problem(raw)
    if problem:
        r.fail(
            key,
            f"{shortened(ascii(raw))} is not a path: {problem}",
            fix=f"correct the path, e.g. {name}: data/{name[:-4]}",
        )
    try:
        resolved = (workdir / Path(raw).expanduser()).resolve()
        exists = resolved.exists()
    except (OSError, ValueError, RuntimeError) as exc:  # a name too long for the file system, a link loop
        r.fail(key, f"{shortened(repr(raw))} cannot be looked up ({type(exc).__name__}: {shortened(str(exc))})", fix)
    if exists:
        return str(resolved)
    r.fail(key, f"{shortened(repr(raw))} resolves to {shortened(repr(str(resolved)))}, which does not exist", fix)


def _training(r: _Reader) -> Training:
    p = _S + "training."
    values = _section(r, _S + "training")
    if values["distill"] is None:  # not written: distillation comes with the sandwich rule
        values["distill"] = values["sampling"] == "sandwich"
    app = r.get(_S + "constraint.application_type")
    if app != "image_classification" and values["distill"]:
        # The teacher's logits are a classifier's; a detector's or segmenter's outputs are not
        # distilled (docs/tasks.md#training-and-evaluation).
        if p + "distill" in r.values:
            r.warn(p + "distill", f"distillation is for image_classification, ignored for {app}", "remove it")
        values["distill"] = False
    training = Training(**values)
    if training.distill and training.sampling != "sandwich":
        r.fail(
            p + "distill",
            "distill: true needs sampling: sandwich (the largest subnet is the teacher)",
            "add sampling: sandwich under training, or set distill: false",
        )
    epochs = r.get(_S + "epochs")
    if training.warmup_epochs >= epochs:
        r.fail(
            p + "warmup_epochs",
            f"expected fewer warmup epochs than epochs ({epochs}), got {training.warmup_epochs}",
            f"e.g. warmup_epochs: {epochs // 10}",
        )
    return training


def _resource(r: _Reader, framework: str) -> Resource:
    places = [p for p in ("scenario.resource", _S + "resource") if p in r.values]
    if len(places) == 2:
        r.fail(
            _S + "resource",
            "resource is written twice, under scenario and under scenario.strategy",
            "keep one of them (either place works)",
        )
    p = (places[0] if places else "scenario.resource") + "."
    expected = f"{framework}_standalone"
    name = r.get(p + "name") or expected
    if name != expected:
        spelled = "Tensorflow_standalone" if framework == "tensorflow" else "pytorch_standalone"
        r.fail(p + "name", f"{name!r} does not match framework {framework!r}", f"name: {spelled}")
    return Resource(name, r.get(p + "gpu_id"))
