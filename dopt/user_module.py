"""Import the user's ``user_module.py`` and check it against the framework's contract (docs/user-module.md#how-dopt-loads-the-module).

Only names and signatures are checked here (no framework import); the backend checks base
classes. Nothing is written: bytecode caching is off while the module is imported.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from dopt.errors import UserError

__all__ = ["CONTRACTS", "load_user_module", "file_sha256", "metric_name"]

MODULE_NAME = "user_module"

# class -> method -> positional arguments dopt passes (after self). __init__ of UserModule is
# called with keywords, as the seed does: UserModule(epoch=..., batch_size=...).
CONTRACTS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "pytorch": {
        "UserModule": {
            "__init__": ("epoch", "batch_size"),
            "dataset_define": ("dataset_dir", "is_training"),
            "scheduler_define": ("optimizer", "steps_per_epoch"),
            "metrics_func": ("eval_dataloader", "eval_function"),
            "loss_func": ("labels", "logits"),
        },
        "PreNet": {"__init__": (), "forward": ("inputs",)},
        "PostNet": {"__init__": (), "forward": ("inputs",)},
    },
    "tensorflow": {
        "UserModule": {
            "__init__": ("epoch", "batch_size"),
            "build_dataset_search": ("dataset_dir", "is_training"),
            "lr_scheduler": ("lr_init", "global_step"),
            "metrics_op": ("inputs", "outputs"),
            "loss_op": ("labels", "logits"),
        },
        "PreNet": {"__init__": (), "call": ("inputs",)},
        "PostNet": {"__init__": (), "call": ("inputs",)},
    },
}


# Methods that may also take more arguments, named here: NASEA's TensorFlow contract has
# build_dataset_search(dataset_dir, is_training) for classification and
# build_dataset_search(dataset_dir, is_training, is_shuffle) for detection and segmentation; the
# backend reads which one with inspect.signature and passes is_shuffle only to the second.
ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "UserModule.build_dataset_search": ("dataset_dir", "is_training", "is_shuffle"),
}


# Methods a user module may define, checked like the required ones when it does: latency_func
# measures a model on the user's own hardware (docs/latency.md#your-own-hardware-latency_func).
OPTIONAL: dict[str, dict[str, tuple[str, ...]]] = {"UserModule": {"latency_func": ("model",)}}


# The header key, plot label and summary column of the metric when UserModule names none: NASEA's
# result headers say "accuracy".
DEFAULT_METRIC_NAME = "accuracy"


def metric_name(module: ModuleType) -> str:
    """``UserModule.metric_name`` ("mIoU", "top1", ...), or "accuracy" when the class sets none
    (docs/user-module.md#naming-the-metric).

    Raises:
        UserError: a name that is not a short single-line text a header line can carry.
    """
    name = getattr(module.UserModule, "metric_name", None)
    if name is None:
        return DEFAULT_METRIC_NAME
    if not _printable_name(name):
        raise UserError(
            f"metric_name is {ascii(name)[:60]}: expected a short printable text (1 to 40 characters) without ':', '#' or line breaks",
            key="UserModule.metric_name",
            fix='e.g. metric_name = "top1_accuracy" (class attribute), or remove it for "accuracy"',
        )
    return name.strip()


def _printable_name(name: object) -> bool:
    """A name a header line, a CSV column and a plot label carry as they are: 1-40 printable
    characters (no NUL, form feed, U+2028 or other separator, no lone surrogate), no ':' or '#'."""
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 40 or any(ch in name for ch in ":#"):
        return False
    try:
        name.encode("utf-8")  # a lone surrogate cannot be written to any file
    except UnicodeEncodeError:
        return False
    return name.isprintable()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_user_module(workdir: Path, framework: str) -> ModuleType:
    """Import ``workdir/user_module.py`` as ``user_module`` and check its contract.

    Raises:
        UserError: the file is missing, fails to import, or lacks a class or method, or a
            method's signature does not accept the arguments dopt passes.
    """
    path = workdir / "user_module.py"
    if not path.is_file():
        raise UserError(
            f"no user_module.py in {workdir}",
            fix="run dopt in the directory holding user_module.py, pass --workdir DIR, or create one with `dopt init`",
        )
    module = _import(path, workdir)
    _check_contract(module, path, framework)
    return module


def _import(path: Path, workdir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if str(workdir) not in sys.path:
        sys.path.insert(0, str(workdir))  # the user module may import its siblings
    old_flag = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    sys.modules[MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[MODULE_NAME]
        raise UserError(
            f"syntax error: {exc.msg}",
            file=str(path),
            line=exc.lineno,
            column=exc.offset,
            fix="correct the Python syntax at that place",
        ) from None
    except Exception as exc:  # anything the user's top-level code raises
        del sys.modules[MODULE_NAME]
        line = _user_line(exc, path)
        raise UserError(
            f"importing user_module.py failed: {type(exc).__name__}: {exc}",
            file=str(path),
            line=line,
            fix=_import_fix(exc),
        ) from None
    finally:
        sys.dont_write_bytecode = old_flag
    return module


def _user_line(exc: BaseException, path: Path) -> int | None:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno
    return line


def _import_fix(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"install the missing package (pip install {exc.name.split('.')[0]}) or correct the import"
    return "make `python -c 'import user_module'` work in that directory"


def _check_contract(module: ModuleType, path: Path, framework: str) -> None:
    for cls_name, methods in CONTRACTS[framework].items():
        cls = getattr(module, cls_name, None)
        if not inspect.isclass(cls):
            names = [n for n, v in vars(module).items() if inspect.isclass(v)]
            hint = difflib.get_close_matches(cls_name, names, n=1, cutoff=0.6)
            guess = f" (found {hint[0]!r}: misspelled?)" if hint else ""
            raise UserError(
                f"user_module.py defines no class {cls_name}{guess}",
                file=str(path),
                key=cls_name,
                fix=f"define `class {cls_name}` as in the {framework} template (`dopt init`)",
            )
        for method, args in methods.items():
            _check_method(cls, cls_name, method, args, path)
        for method, args in OPTIONAL.get(cls_name, {}).items():
            if getattr(cls, method, None) is not None:
                _check_method(cls, cls_name, method, args, path)


def _check_method(cls: type, cls_name: str, method: str, args: tuple[str, ...], path: Path) -> None:
    where = f"{cls_name}.{method}"
    wanted = f"def {method}(self{''.join(', ' + a for a in args)})"
    fn = getattr(cls, method, None)
    if fn is None or (method != "__init__" and not callable(fn)):
        names = [n for n in dir(cls) if not n.startswith("__")]
        hint = difflib.get_close_matches(method, names, n=1, cutoff=0.6)
        guess = f" (found {hint[0]!r}: misspelled?)" if hint else ""
        raise UserError(
            f"class {cls_name} has no method {method}{guess}",
            file=str(path),
            key=where,
            line=_lineno(cls),
            fix=f"add `{wanted}:` to class {cls_name}",
        )
    if method == "__init__" and fn is object.__init__:
        if args:
            raise UserError(
                f"{cls_name} needs an __init__ taking {', '.join(args)}",
                file=str(path),
                key=where,
                fix=f"add `{wanted}:`",
            )
        return
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without signatures: nothing to check
        return
    accepted = [args] + ([ALTERNATIVES[where]] if where in ALTERNATIVES else [])
    if not any(_binds(sig, method == "__init__" and cls_name == "UserModule", names) for names in accepted):
        raise UserError(
            f"{where}{sig} does not accept the arguments dopt passes ({', '.join(args) or 'none'})",
            file=str(path),
            key=where,
            line=_lineno(fn),
            fix=f"define it as `{wanted}:`",
        )


def _binds(sig: inspect.Signature, by_keyword: bool, args: tuple[str, ...]) -> bool:
    dummy: list[Any] = [None] * len(args)
    try:
        if by_keyword:
            sig.bind(None, **dict(zip(args, dummy)))
        else:
            sig.bind(None, *dummy)
    except TypeError:
        return False
    return True


def _lineno(obj: Any) -> int | None:
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return None
