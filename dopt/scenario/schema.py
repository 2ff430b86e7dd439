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


@dataclass(frozen=True)
class Key:
    name: str
    check: Check
    default: Any  # REQUIRED, a Depends, or the value used when the key is not written
    example: str  # a correct line, quoted in every fix: "epochs: 60"
    doc: str

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
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


def integer(minimum: int) -> Check:
    def convert(v: Any) -> int:
        if not _is_int(v) or v < minimum:
            raise Invalid()
        return int(v)

    return Check("an integer > 0" if minimum == 1 else f"an integer >= {minimum}", convert)


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
                raise Invalid(f"item {i} is {x!r}", index=i) from None
        return tidy(tuple(out)) if tidy else tuple(out)

    return Check(text, convert)


def _sorted_set(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(sorted(set(values)))


def _ascending(values: tuple[int, ...]) -> tuple[int, ...]:
    if any(a >= b for a, b in zip(values, values[1:])):
        raise Invalid("items must be unique and ascending", fix="e.g. feature_choose: [3, 5]")
    return values


def _odd(v: Any) -> int:
    if not _is_int(v) or v < 1 or v % 2 == 0:
        raise Invalid()
    return int(v)


def _stride(v: Any) -> int:
    if not _is_int(v) or v not in (1, 2):
        raise Invalid()
    return int(v)


_SHAPE = sequence(integer(1), "integers > 0", length=3)


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
    "constraint",
    (
        Key(
            "application_type",
            choice("image_classification", "object_detection", "semantic_segmentation"),
            REQUIRED,
            "application_type: image_classification",
            "the task PreNet/PostNet solve",
        ),
        Key(
            "constraint_type",
            _CostKindChoice(),
            REQUIRED,
            "constraint_type: size",
            "what the constraint limits: parameters, FLOPs or milliseconds at batch 1 (docs/costs.md, docs/latency.md)",
        ),
        Key(
            "constraint_value",
            number(0, as_float=False),
            REQUIRED,
            "constraint_value: 11000000",
            "the limit: max parameters / max FLOPs / max milliseconds",
        ),
        Key(
            "processor_version",
            TEXT,
            "host",
            "processor_version: host",
            "latency only: host measures this machine (its CPU, or the GPU in use); another name needs "
            "UserModule.latency_func (docs/latency.md)",
        ),
        Key(
            "latency_threads",
            integer(1),
            1,
            "latency_threads: 1",
            "latency only: CPU threads of the latency measurements, part of the table's key (docs/latency.md#threads)",
        ),
    ),
    "constraint: {application_type: image_classification, constraint_type: size, constraint_value: 11000000}",
    "the task and the hardware limit",
    required=True,
)

_SEARCH_SPACE = Section(
    "search_space",
    (
        Key(
            "kernel_sizes",
            sequence(Check("odd", _odd), "odd integers >= 1", tidy=_sorted_set),
            _SS.kernel_sizes,
            "kernel_sizes: [3, 5, 7]",
            "depthwise kernel choices per layer",
        ),
        Key(
            "expand_ratios",
            sequence(integer(1), "integers >= 1", tidy=_sorted_set),
            _SS.expand_ratios,
            "expand_ratios: [3, 6]",
            "inverted-bottleneck expansion choices",
        ),
        Key(
            "width_ratios",
            sequence(number(0, 1, closed="high"), "numbers in (0, 1]", tidy=_sorted_set),
            _SS.width_ratios,
            "width_ratios: [0.5, 0.75, 1.0]",
            "fractions of filters a layer may keep",
        ),
        Key("skip", BOOL, _SS.skip, "skip: true", "whether layers that allow it may be skipped"),
    ),
    "search_space: {kernel_sizes: [3, 5]}",
    "per-layer choices (dopt extension, docs/search-space.md#genes)",
)

_SUPERNET = Section(
    "supernet",
    (
        Key(
            "input_shape",
            Check("a shape like (3, 224, 224): three integers > 0", _input_shape),
            Depends("(3, 224, 224) for channels_first, (224, 224, 3) for channels_last"),
            "input_shape: (3, 224, 224)",
            "CHW for channels_first, HWC for channels_last",
        ),
        Key(
            "data_format",
            choice("channels_first", "channels_last"),
            Depends(_FRAMEWORK_DEFAULT),
            "data_format: channels_first",
            "the layout of input_shape and of the tensors",
        ),
        Key(
            "filters",
            sequence(integer(1), "integers > 0"),
            Supernet.filters,
            "filters: [64, 64, 128, 128, 256, 256]",
            "max output channels of each skeleton layer",
        ),
        Key(
            "strides",
            sequence(Check("1 or 2", _stride), "strides (1 or 2)"),
            Supernet.strides,
            "strides: [1, 1, 2, 1, 2, 1]",
            "stride of each layer; as many as filters",
        ),
        Key(
            "feature_choose",
            sequence(integer(0), "integers >= 0", empty_ok=True, tidy=_ascending),
            (),
            "feature_choose: [4, 5]",
            "detection/segmentation: layers whose outputs PostNet also receives (docs/tasks.md)",
        ),
        _SEARCH_SPACE,
    ),
    "supernet: {filters: [16, 32], strides: [1, 2]}",
    "the searchable skeleton (docs/search-space.md#the-supernet)",
)

_WEIGHTS_OPTIMIZER = Section(
    "weights_optimizer",
    (
        Key(
            "type",
            choice("SGD", "Momentum", "Adam"),
            Depends("Adam; Momentum for TensorFlow semantic_segmentation"),
            "type: Adam",
            "PyTorch: SGD or Adam",
        ),
        Key(
            "betas",
            sequence(number(0, 1), "numbers in (0, 1)", length=2),
            (0.9, 0.999),
            "betas: [0.9, 0.999]",
            "Adam's beta1, beta2",
        ),
        Key(
            "learning_rate",
            number(0, 1),
            Depends("0.0001; 0.00001 for semantic_segmentation"),
            "learning_rate: 0.0001",
            "scaled by the number of processes when distributed",
        ),
        Key("momentum", number(0, 1), None, "momentum: 0.9", "SGD/Momentum; not written: 0.9 for Momentum"),
        Key(
            "scale_lr",
            BOOL,
            True,
            "scale_lr: true",
            "dopt extension: multiply learning_rate by the number of processes of a distributed run",
        ),
    ),
    "weights_optimizer: {type: Adam}",
    "the supernet's optimizer",
)

_DATASET = Section(
    "dataset",
    (
        Key(
            "pre_train_dir",
            PATH,
            Depends("none; required for detection/segmentation"),
            "pre_train_dir: data/pretrain",
            "a folder of class sub-folders to pre-train on, or a pre-training checkpoint (docs/tasks.md#pre-training)",
        ),
        Key(
            "pre_train_epochs",
            integer(1),
            10,
            "pre_train_epochs: 10",
            "epochs of pre-training PreNet + the largest skeleton (docs/tasks.md#pre-training)",
        ),
        Key("train_dir", PATH, REQUIRED, "train_dir: data/train", "passed to the user's dataset function"),
        Key("val_dir", PATH, REQUIRED, "val_dir: data/val", "passed when evaluating; may equal train_dir"),
    ),
    "dataset: {train_dir: data/train, val_dir: data/val}",
    "data locations, relative to the workdir",
    required=True,
)

_PROB = number(0, 1, closed="low high")
_SEARCHER_SECTION = Section(
    "searcher",
    (
        Key("generation_num", integer(1), _SEARCHER.generation_num, "generation_num: 20", "NSGA-II generations"),
        Key("pop_size", integer(2), _SEARCHER.pop_size, "pop_size: 40", "population size"),
        Key("seed", integer(0), _SEARCHER.seed, "seed: 0", "seeds the whole run; not written: drawn"),
        Key(
            "algorithm",
            choice("nsga2", "random", lower=True),
            _SEARCHER.algorithm,
            "algorithm: nsga2",
            "random: a baseline search",
        ),
        Key("crossover_prob", _PROB, _SEARCHER.crossover_prob, "crossover_prob: 0.9", "crossover probability"),
        Key(
            "mutation_prob",
            _PROB,
            _SEARCHER.mutation_prob,
            "mutation_prob: 0.1",
            "per gene; default 1/genes that can vary",
        ),
        Key("max_evaluations", integer(1), _SEARCHER.max_evaluations, "max_evaluations: 500", "halting budget"),
        Key(
            "max_duration_s",
            number(0, as_float=True),
            _SEARCHER.max_duration_s,
            "max_duration_s: 3600",
            "halting budget in seconds",
        ),
        Key(
            "bn_calib_batches",
            integer(1),
            _SEARCHER.bn_calib_batches,
            "bn_calib_batches: 16",
            "BN recalibration batches; default ~2,000 images",
        ),
        Key("eval_batches", integer(1), _SEARCHER.eval_batches, "eval_batches: 50", "default: all"),
    ),
    "searcher: {generation_num: 20, pop_size: 40}",
    "the evolutionary search (docs/search.md#nsga-ii)",
)

_TRAINING_SECTION = Section(
    "training",
    (
        Key(
            "sampling",
            choice("uniform", "sandwich", lower=True),
            _TRAINING.sampling,
            "sampling: uniform",
            "subnets sampled per step",
        ),
        Key(
            "distill",
            BOOL,
            Depends("true with sampling: sandwich, false with uniform"),
            "distill: false",
            "largest subnet teaches; needs sandwich",
        ),
        Key("warmup_epochs", integer(0), _TRAINING.warmup_epochs, "warmup_epochs: 5", "fewer than epochs"),
        Key(
            "monitor_batches",
            integer(0),
            _TRAINING.monitor_batches,
            "monitor_batches: 10",
            "per-epoch check of the largest and smallest subnets; 0: off",
        ),
    ),
    "training: {sampling: sandwich}",
    "supernet training (dopt extension, docs/search-space.md#training)",
)

_RESOURCE = Section(
    "resource",
    (
        Key(
            "name",
            choice("Tensorflow_standalone", "pytorch_standalone", lower=True),
            Depends("the one matching framework"),
            "name: pytorch_standalone",
            "must match framework",
        ),
        Key(
            "gpu_id",
            Check('a GPU id >= 0, a string like "0,1,2,3", a list of ids, or "" / cpu', _gpu_ids),
            (0,),
            "gpu_id: 0",
            '"" or cpu: the CPU; several ids: one process per GPU (docs/distributed.md)',
        ),
    ),
    "resource: {name: pytorch_standalone, gpu_id: 0}",
    "where the run executes (docs/scenario.md#several-gpus)",
)

_STRATEGY = Section(
    "strategy",
    (
        Key("name", choice("NASEA"), REQUIRED, "name: NASEA", "the strategy; only NASEA"),
        Key(
            "framework",
            choice("TensorFlow", "PyTorch", lower=True),
            REQUIRED,
            "framework: PyTorch",
            "TensorFlow (tf.keras) or PyTorch",
        ),
        Key("batch_size", integer(1), REQUIRED, "batch_size: 128", "per process"),
        Key("epochs", integer(1), REQUIRED, "epochs: 60", "supernet training epochs"),
        _CONSTRAINT,
        _SUPERNET,
        Section("optimizer", (_WEIGHTS_OPTIMIZER,), "optimizer: {weights_optimizer: {type: Adam}}", "optimizers"),
        _DATASET,
        _SEARCHER_SECTION,
        _TRAINING_SECTION,
        _RESOURCE,
    ),
    "strategy: {name: NASEA, framework: PyTorch, ...} (see scen.yaml.example)",
    "the search",
    required=True,
)

SCHEMA = Section(
    "",
    (
        Section(
            "scenario",
            (_STRATEGY, _RESOURCE),
            "scenario: {strategy: {...}} (see scen.yaml.example)",
            "the whole scenario",
            required=True,
        ),
    ),
    "",
    "the file",
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
