"""The scen.yaml key table (docs/scenario.md#keys): every key's name, type, default, check and doc line.

The table is data: ``load.py`` walks it to reject unknown keys, report missing ones and check
each written value, then applies the rules that tie several keys together (framework-dependent
defaults, matching lengths, dataset paths) and builds the frozen ``Scenario``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dopt.scenario.model import Searcher, SearchSpaceChoices, Supernet, Training
from dopt.text import shortened

__all__ = [
    "REQUIRED",
    "Depends",
    "Invalid",
    "Check",
    "Key",
    "Section",
    "SCHEMA",
    "integer",
    "number",
    "choice",
    "sequence",
    "defaults",
    "unknown_key",
]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Depends:
    """A default that depends on other keys; ``rules.py`` computes it."""

    doc: str


class Invalid(Exception):
    """Raised by a check: the value is not of the expected kind.

    ``detail`` adds to "expected X, got Y"; ``index`` names the bad list item; ``fix`` replaces
    the key's example.
    """

    def __init__(self, detail: str | None = None, *, index: int | None = None, fix: str | None = None):
        super().__init__(detail)
        self.detail, self.index, self.fix = detail, index, fix


@dataclass(frozen=True)
class Check:
    """What a value must be (``expected`` reads "an integer > 0") and how it is normalized."""

    expected: str
    convert: Callable[[Any], Any]

    def __call__(self, value: Any) -> Any:
        return self.convert(value)


@dataclass(frozen=True, kw_only=True)
class Key:
    name: str
    check: Check
    default: Any  # REQUIRED, a Depends, or the value used when the key is not written
    example: str  # a correct line, quoted in every fix: "epochs: 60"
    doc: str

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True, kw_only=True)
class Section:
    name: str
    keys: tuple[Key | Section, ...]
    example: str
    doc: str
    required: bool = False

    def get(self, name: str) -> Key | Section | None:
        return next((k for k in self.keys if k.name == name), None)


# --- checks -----------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # YAML true is not 1


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def integer(minimum: int, maximum: int | None = None) -> Check:
    """An integer of at least ``minimum`` (and at most ``maximum``: a bound a real run stays far
    below, so that an absurd value is a clear error here, not an overflow or a huge allocation later)."""

    def convert(v: Any) -> int:
        if not _is_int(v) or v < minimum or (maximum is not None and v > maximum):
            raise Invalid()
        return int(v)

    if maximum is not None:
        return Check(f"an integer from {minimum} to {maximum:,}", convert)
    return Check("an integer > 0" if minimum == 1 else f"an integer >= {minimum}", convert)


# Upper bounds of what a real run can have (docs/scenario.md#reading-rules).
MAX_CHANNELS, MAX_KERNEL, MAX_EXPAND, MAX_COUNT, MAX_SEED = 16_384, 15, 16, 100_000, 2**32 - 1


def number(low: float, high: float | None = None, *, closed: str = "", as_float: bool = True) -> Check:
    """A finite number above ``low`` (and below ``high``); ``closed`` holds "low"/"high" ends."""
    lo, hi = ("[" if "low" in closed else "("), ("]" if "high" in closed else ")")
    text = f"a number > {low}" if high is None else f"a number in {lo}{low}, {high}{hi}"

    def convert(v: Any) -> float:
        ok = _is_number(v) and (v >= low if lo == "[" else v > low)
        if ok and high is not None:
            ok = v <= high if hi == "]" else v < high
        if not ok:
            raise Invalid()
        return float(v) if as_float else v

    return Check(text, convert)


def choice(*options: str, lower: bool = False) -> Check:
    """One of ``options``, matched case-insensitively and stored as written here (or lower-case)."""
    table = {o.lower(): o for o in options}

    def convert(v: Any) -> str:
        key = v.strip().lower() if isinstance(v, str) else None
        if key in table:
            return key if lower else table[key]
        close = difflib.get_close_matches(key or "", list(table), n=1, cutoff=0.6)
        raise Invalid(f"did you mean {table[close[0]]!r}?" if close else None)

    return Check("one of " + ", ".join(options), convert)


class _CostKindChoice(Check):
    """One of the registered cost kinds (``dopt.costs``), read when a scenario is checked, so that a
    kind registered after import is accepted."""

    def __init__(self) -> None:
        pass  # the dataclass fields are properties here

    @staticmethod
    def _names() -> tuple[str, ...]:
        from dopt.costs import names

        return names()

    @property  # type: ignore[override]
    def expected(self) -> str:
        return choice(*self._names()).expected

    @property  # type: ignore[override]
    def convert(self) -> Callable[[Any], Any]:
        return choice(*self._names()).convert


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise Invalid()
    return v.strip()


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise Invalid()
    return v


TEXT = Check("a non-empty string", _text)
PATH = Check("a path or URL (string)", _text)
BOOL = Check("true or false", _boolean)


def sequence(
    item: Check,
    plural: str,
    *,
    length: int = 0,
    empty_ok: bool = False,
    tidy: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None,
) -> Check:
    """A list (or tuple) whose items pass ``item``; ``tidy`` sorts or checks the order."""
    text = f"a list of {length} {plural}" if length else f"a {'' if empty_ok else 'non-empty '}list of {plural}"

    def convert(v: Any) -> tuple[Any, ...]:
        if not isinstance(v, (list, tuple)) or (not v and not empty_ok) or (length and len(v) != length):
            raise Invalid()
        out = []
        for i, x in enumerate(v):
            try:
                out.append(item(x))
            except Invalid:
                raise Invalid(f"item {i} is {shortened(repr(x))}", index=i) from None
        return tidy(tuple(out)) if tidy else tuple(out)

    return Check(text, convert)


def _sorted_set(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(sorted(set(values)))


def _ascending(values: tuple[int, ...]) -> tuple[int, ...]:
    if any(a >= b for a, b in zip(values, values[1:])):
        raise Invalid("items must be unique and ascending", fix="e.g. feature_choose: [3, 5]")
    return values


def _odd(v: Any) -> int:
    if not _is_int(v) or not 1 <= v <= MAX_KERNEL or v % 2 == 0:
        raise Invalid()
    return int(v)


def _stride(v: Any) -> int:
    if not _is_int(v) or v not in (1, 2):
        raise Invalid()
    return int(v)


_SHAPE = sequence(integer(1, MAX_CHANNELS), f"integers from 1 to {MAX_CHANNELS:,}", length=3)


def _input_shape(v: Any) -> tuple[int, ...]:
    if isinstance(v, str):  # the seed writes "(224, 224, 3)", a plain YAML string
        if v.startswith("(") and not v.endswith(")"):  # {input_shape: (1, 8, 8)} splits at commas
            raise Invalid("inside { } quote it, '(1, 8, 8)', or write [1, 8, 8]")
        parts = v.strip().strip("()[]").split(",")
        try:
            v = [int(p) for p in parts]
        except ValueError:
            raise Invalid() from None
    return tuple(_SHAPE(v))


_GPU_LIST = sequence(integer(0), "integers >= 0", empty_ok=True)


def _gpu_ids(v: Any) -> tuple[int, ...]:
    if isinstance(v, str):
        text = v.strip()
        if text.lower() in ("", "cpu"):
            return ()
        parts = [p.strip() for p in text.split(",")]
        if not all(p.isascii() and p.isdigit() for p in parts):
            raise Invalid()
        v = [int(p) for p in parts]
    elif _is_int(v):
        v = [v]
    ids: tuple[int, ...] = tuple(_GPU_LIST(v))
    if len(set(ids)) != len(ids):
        raise Invalid("an id is listed twice")
    return ids


# --- the table (docs/scenario.md#keys) --------------------------------------------------------------------------

_SS, _SEARCHER, _TRAINING = SearchSpaceChoices(), Searcher(), Training()
_FRAMEWORK_DEFAULT = "channels_first for PyTorch (its only option), channels_last for TensorFlow"

_CONSTRAINT = Section(
    name="constraint",
    keys=(
        Key(
            name="application_type",
            check=choice("image_classification", "object_detection", "semantic_segmentation"),
            default=REQUIRED,
            example="application_type: image_classification",
            doc="the task PreNet/PostNet solve",
        ),
        Key(
            name="constraint_type",
            check=_CostKindChoice(),
            default=REQUIRED,
            example="constraint_type: size",
            doc="what the constraint limits: parameters, FLOPs or milliseconds at batch 1 (docs/costs.md, docs/latency.md)",
        ),
        Key(
            name="constraint_value",
            check=number(0, as_float=False),
            default=REQUIRED,
            example="constraint_value: 11000000",
            doc="the limit: max parameters / max FLOPs / max milliseconds",
        ),
        Key(
            name="processor_version",
            check=TEXT,
            default="host",
            example="processor_version: host",
            doc="latency only: host measures this machine (its CPU, or the GPU in use); another name needs "
            "UserModule.latency_func (docs/latency.md)",
        ),
        Key(
            name="latency_threads",
            check=integer(1),
            default=1,
            example="latency_threads: 1",
            doc="latency only: CPU threads of the latency measurements, part of the table's key (docs/latency.md#threads)",
        ),
    ),
    example="constraint: {application_type: image_classification, constraint_type: size, constraint_value: 11000000}",
    doc="the task and the hardware limit",
    required=True,
)

_SEARCH_SPACE = Section(
    name="search_space",
    keys=(
        Key(
            name="kernel_sizes",
            check=sequence(Check("odd", _odd), f"odd integers from 1 to {MAX_KERNEL}", tidy=_sorted_set),
            default=_SS.kernel_sizes,
            example="kernel_sizes: [3, 5, 7]",
            doc="depthwise kernel choices per layer",
        ),
        Key(
            name="expand_ratios",
            check=sequence(integer(1, MAX_EXPAND), f"integers from 1 to {MAX_EXPAND}", tidy=_sorted_set),
            default=_SS.expand_ratios,
            example="expand_ratios: [3, 6]",
            doc="inverted-bottleneck expansion choices",
        ),
        Key(
            name="width_ratios",
            check=sequence(number(0, 1, closed="high"), "numbers in (0, 1]", tidy=_sorted_set),
            default=_SS.width_ratios,
            example="width_ratios: [0.5, 0.75, 1.0]",
            doc="fractions of filters a layer may keep",
        ),
        Key(
            name="skip",
            check=BOOL,
            default=_SS.skip,
            example="skip: true",
            doc="whether layers that allow it may be skipped",
        ),
    ),
    example="search_space: {kernel_sizes: [3, 5]}",
    doc="per-layer choices (dopt extension, docs/search-space.md#genes)",
)

_SUPERNET = Section(
    name="supernet",
    keys=(
        Key(
            name="input_shape",
            check=Check("a shape like (3, 224, 224): three integers > 0", _input_shape),
            default=Depends("(3, 224, 224) for channels_first, (224, 224, 3) for channels_last"),
            example="input_shape: (3, 224, 224)",
            doc="CHW for channels_first, HWC for channels_last",
        ),
        Key(
            name="data_format",
            check=choice("channels_first", "channels_last"),
            default=Depends(_FRAMEWORK_DEFAULT),
            example="data_format: channels_first",
            doc="the layout of input_shape and of the tensors",
        ),
        Key(
            name="filters",
            check=sequence(integer(1, MAX_CHANNELS), f"integers from 1 to {MAX_CHANNELS:,}"),
            default=Supernet.filters,
            example="filters: [64, 64, 128, 128, 256, 256]",
            doc="max output channels of each skeleton layer",
        ),
        Key(
            name="strides",
            check=sequence(Check("1 or 2", _stride), "strides (1 or 2)"),
            default=Supernet.strides,
            example="strides: [1, 1, 2, 1, 2, 1]",
            doc="stride of each layer; as many as filters",
        ),
        Key(
            name="feature_choose",
            check=sequence(integer(0), "integers >= 0", empty_ok=True, tidy=_ascending),
            default=(),
            example="feature_choose: [4, 5]",
            doc="detection/segmentation: layers whose outputs PostNet also receives (docs/tasks.md)",
        ),
        _SEARCH_SPACE,
    ),
    example="supernet: {filters: [16, 32], strides: [1, 2]}",
    doc="the searchable skeleton (docs/search-space.md#the-supernet)",
)

_WEIGHTS_OPTIMIZER = Section(
    name="weights_optimizer",
    keys=(
        Key(
            name="type",
            check=choice("SGD", "Momentum", "Adam"),
            default=Depends("Adam; Momentum for TensorFlow semantic_segmentation"),
            example="type: Adam",
            doc="PyTorch: SGD or Adam",
        ),
        Key(
            name="betas",
            check=sequence(number(0, 1), "numbers in (0, 1)", length=2),
            default=(0.9, 0.999),
            example="betas: [0.9, 0.999]",
            doc="Adam's beta1, beta2",
        ),
        Key(
            name="learning_rate",
            check=number(0, 1),
            default=Depends("0.0001; 0.00001 for semantic_segmentation"),
            example="learning_rate: 0.0001",
            doc="scaled by the number of processes when distributed",
        ),
        Key(
            name="momentum",
            check=number(0, 1),
            default=None,
            example="momentum: 0.9",
            doc="SGD/Momentum; not written: 0.9 for Momentum",
        ),
        Key(
            name="scale_lr",
            check=BOOL,
            default=True,
            example="scale_lr: true",
            doc="dopt extension: multiply learning_rate by the number of processes of a distributed run",
        ),
    ),
    example="weights_optimizer: {type: Adam}",
    doc="the supernet's optimizer",
)

_DATASET = Section(
    name="dataset",
    keys=(
        Key(
            name="pre_train_dir",
            check=PATH,
            default=Depends("none; required for detection/segmentation"),
            example="pre_train_dir: data/pretrain",
            doc="a folder of class sub-folders to pre-train on, or a pre-training checkpoint (docs/tasks.md#pre-training)",
        ),
        Key(
            name="pre_train_epochs",
            check=integer(1, MAX_COUNT),
            default=10,
            example="pre_train_epochs: 10",
            doc="epochs of pre-training PreNet + the largest skeleton (docs/tasks.md#pre-training)",
        ),
        Key(
            name="train_dir",
            check=PATH,
            default=REQUIRED,
            example="train_dir: data/train",
            doc="passed to the user's dataset function",
        ),
        Key(
            name="val_dir",
            check=PATH,
            default=REQUIRED,
            example="val_dir: data/val",
            doc="passed when evaluating; may equal train_dir",
        ),
    ),
    example="dataset: {train_dir: data/train, val_dir: data/val}",
    doc="data locations, relative to the workdir",
    required=True,
)

_PROB = number(0, 1, closed="low high")
_SEARCHER_SECTION = Section(
    name="searcher",
    keys=(
        Key(
            name="generation_num",
            check=integer(1, MAX_COUNT),
            default=_SEARCHER.generation_num,
            example="generation_num: 20",
            doc="NSGA-II generations",
        ),
        Key(
            name="pop_size",
            check=integer(2, MAX_COUNT),
            default=_SEARCHER.pop_size,
            example="pop_size: 40",
            doc="population size",
        ),
        Key(
            name="seed",
            check=integer(0, MAX_SEED),
            default=_SEARCHER.seed,
            example="seed: 0",
            doc="seeds the whole run; not written: drawn",
        ),
        Key(
            name="algorithm",
            check=choice("nsga2", "random", lower=True),
            default=_SEARCHER.algorithm,
            example="algorithm: nsga2",
            doc="random: a baseline search",
        ),
        Key(
            name="crossover_prob",
            check=_PROB,
            default=_SEARCHER.crossover_prob,
            example="crossover_prob: 0.9",
            doc="crossover probability",
        ),
        Key(
            name="mutation_prob",
            check=_PROB,
            default=_SEARCHER.mutation_prob,
            example="mutation_prob: 0.1",
            doc="per gene; default 1/genes that can vary",
        ),
        Key(
            name="max_evaluations",
            check=integer(1, MAX_COUNT),
            default=_SEARCHER.max_evaluations,
            example="max_evaluations: 500",
            doc="halting budget",
        ),
        Key(
            name="max_duration_s",
            check=number(0, as_float=True),
            default=_SEARCHER.max_duration_s,
            example="max_duration_s: 3600",
            doc="halting budget in seconds",
        ),
        Key(
            name="bn_calib_batches",
            check=integer(1, MAX_COUNT),
            default=_SEARCHER.bn_calib_batches,
            example="bn_calib_batches: 16",
            doc="BN recalibration batches; default ~2,000 images",
        ),
        Key(
            name="eval_batches",
            check=integer(1, MAX_COUNT),
            default=_SEARCHER.eval_batches,
            example="eval_batches: 50",
            doc="default: all",
        ),
    ),
    example="searcher: {generation_num: 20, pop_size: 40}",
    doc="the evolutionary search (docs/search.md#nsga-ii)",
)

_TRAINING_SECTION = Section(
    name="training",
    keys=(
        Key(
            name="sampling",
            check=choice("uniform", "sandwich", lower=True),
            default=_TRAINING.sampling,
            example="sampling: uniform",
            doc="subnets sampled per step",
        ),
        Key(
            name="distill",
            check=BOOL,
            default=Depends("true with sampling: sandwich, false with uniform"),
            example="distill: false",
            doc="largest subnet teaches; needs sandwich",
        ),
        Key(
            name="warmup_epochs",
            check=integer(0),
            default=_TRAINING.warmup_epochs,
            example="warmup_epochs: 5",
            doc="fewer than epochs",
        ),
        Key(
            name="monitor_batches",
            check=integer(0, MAX_COUNT),
            default=_TRAINING.monitor_batches,
            example="monitor_batches: 10",
            doc="per-epoch check of the largest and smallest subnets; 0: off",
        ),
    ),
    example="training: {sampling: sandwich}",
    doc="supernet training (dopt extension, docs/search-space.md#training)",
)

_RESOURCE = Section(
    name="resource",
    keys=(
        Key(
            name="name",
            check=choice("Tensorflow_standalone", "pytorch_standalone", lower=True),
            default=Depends("the one matching framework"),
            example="name: pytorch_standalone",
            doc="must match framework",
        ),
        Key(
            name="gpu_id",
            check=Check('a GPU id >= 0, a string like "0,1,2,3", a list of ids, or "" / cpu', _gpu_ids),
            default=(0,),
            example="gpu_id: 0",
            doc='"" or cpu: the CPU; several ids: one process per GPU (docs/distributed.md)',
        ),
    ),
    example="resource: {name: pytorch_standalone, gpu_id: 0}",
    doc="where the run executes (docs/scenario.md#several-gpus)",
)

_STRATEGY = Section(
    name="strategy",
    keys=(
        Key(
            name="name", check=choice("NASEA"), default=REQUIRED, example="name: NASEA", doc="the strategy; only NASEA"
        ),
        Key(
            name="framework",
            check=choice("TensorFlow", "PyTorch", lower=True),
            default=REQUIRED,
            example="framework: PyTorch",
            doc="TensorFlow (tf.keras) or PyTorch",
        ),
        Key(
            name="batch_size", check=integer(1, 65_536), default=REQUIRED, example="batch_size: 128", doc="per process"
        ),
        Key(
            name="epochs",
            check=integer(1, MAX_COUNT),
            default=REQUIRED,
            example="epochs: 60",
            doc="supernet training epochs",
        ),
        _CONSTRAINT,
        _SUPERNET,
        Section(
            name="optimizer",
            keys=(_WEIGHTS_OPTIMIZER,),
            example="optimizer: {weights_optimizer: {type: Adam}}",
            doc="optimizers",
        ),
        _DATASET,
        _SEARCHER_SECTION,
        _TRAINING_SECTION,
        _RESOURCE,
    ),
    example="strategy: {name: NASEA, framework: PyTorch, ...} (see scen.yaml.example)",
    doc="the search",
    required=True,
)

SCHEMA = Section(
    name="",
    keys=(
        Section(
            name="scenario",
            keys=(_STRATEGY, _RESOURCE),
            example="scenario: {strategy: {...}} (see scen.yaml.example)",
            doc="the whole scenario",
            required=True,
        ),
    ),
    example="",
    doc="the file",
)


# --- lookups ---------------------------------------------------------------------------------


def _walk(section: Section, path: str) -> Iterator[tuple[str, Key | Section]]:
    for k in section.keys:
        sub = f"{path}.{k.name}" if path else k.name
        yield sub, k
        if isinstance(k, Section):
            yield from _walk(k, sub)


_PATHS = dict(_walk(SCHEMA, ""))


def defaults() -> dict[str, Any]:
    """Each key's path mapped to its fixed default (None where it is required or depends)."""
    return {
        p: (None if k.required or isinstance(k.default, Depends) else k.default)
        for p, k in _PATHS.items()
        if isinstance(k, Key)
    }


def unknown_key(name: Any, here: Section, path: str) -> tuple[str, str]:
    """The message and fix for a key that the section at ``path`` does not hold."""
    valid = [k.name for k in here.keys]
    allowed = f"keys allowed here: {', '.join(valid)}"
    if not isinstance(name, str):
        return f"keys must be names, got {name!r}", allowed
    parents = sorted({p.rpartition(".")[0] for p, k in _PATHS.items() if k.name == name})
    if parents:
        where = " or ".join(parents)
        return f"unknown key {name!r} here; {name} belongs under {where}", f"move it under {where}"
    close = difflib.get_close_matches(name.lower(), valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key {name!r}; did you mean {close[0]!r}?", f"rename it to {close[0]}"
    far = difflib.get_close_matches(name.lower(), [k.name for k in _PATHS.values()], n=1, cutoff=0.75)
    if far:
        paths = " or ".join(sorted(p for p, k in _PATHS.items() if k.name == far[0]))
        return f"unknown key {name!r}; did you mean {paths}?", f"rename and move it: {paths}"
    return f"unknown key {name!r}", f"remove it; {allowed}"
