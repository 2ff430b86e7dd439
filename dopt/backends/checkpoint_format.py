"""The .npz checkpoints of the TensorFlow backend, framework-free: variables stored by position.

A file holds each group of variables (``model``, ``optimizer``) as arrays named ``group/00000``,
``group/00001``, ... in the variables' order, plus integer counters (``step``, ``steps_per_epoch``)
as int64 scalars; a pre-training output holds one group under bare names (``00000``, ...). NumPy
reads them with ``allow_pickle=False``: loading runs no code. A variable is anything with
``numpy()``, ``assign()``, ``shape`` and ``path`` (a Keras variable).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dopt.store.atomic import atomic_write_bytes

__all__ = ["save_npz", "restore_group"]


def save_npz(path: Path, groups: Mapping[str, Sequence[Any]], counters: Mapping[str, int]) -> None:
    """Write the variables of ``groups`` (the group "" under bare names) and ``counters`` into
    ``path`` as one .npz, atomically."""
    arrays: dict[str, Any] = {}
    for group, variables in groups.items():
        prefix = f"{group}/" if group else ""
        arrays.update({f"{prefix}{i:05d}": v.numpy() for i, v in enumerate(variables)})
    arrays.update({name: np.array(value, np.int64) for name, value in counters.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def restore_group(
    archive: Any, group: str, variables: Sequence[Any], *, here: str = "here", check_shapes: bool = True
) -> None:
    """Assign the arrays of ``group`` in an opened .npz ``archive`` to ``variables``, in order.

    Args:
        here: how the message names where ``variables`` are ("in this supernet").
        check_shapes: compare every shape first, so that a mismatch assigns nothing; else each
            assignment checks its own (Keras' message).

    Raises:
        ValueError: the file holds another number of variables in ``group``, or another shape.
    """
    keys = sorted(k for k in archive.files if k.startswith(group + "/"))
    if len(keys) != len(variables):
        raise ValueError(f"{len(keys)} {group} variables in the file, {len(variables)} {here}")
    if not check_shapes:
        for v, k in zip(variables, keys):
            v.assign(archive[k])
        return
    values = [archive[k] for k in keys]
    for v, value in zip(variables, values):
        if tuple(value.shape) != tuple(v.shape):
            raise ValueError(f"{v.path}: shape {tuple(value.shape)} in the file, {tuple(v.shape)} here")
    for v, value in zip(variables, values):
        v.assign(value)
