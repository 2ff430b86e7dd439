"""torch.distributed (gloo) behind dopt's communicator, with two real processes: gradients averaged
and kept None alike, a disagreement caught, a rank seeded differently caught."""

from __future__ import annotations

import json
import os
import socket
import traceback
from pathlib import Path

from tests.frameworks import require

torch = require("torch")
mp = require("torch.multiprocessing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn, tmp_path: Path, *args) -> list[dict]:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), DOPT_TIMEOUT_S="60")
    mp.spawn(_entry, args=(fn, str(tmp_path), *args), nprocs=2, join=True)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


def _entry(rank: int, fn, out: str, *args) -> None:
    from dopt.backends.torch.comm import TorchDistributed
    from dopt.parallel.launcher import Launch

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    torch.set_num_threads(1)
    comm = TorchDistributed(
        Launch(launcher="torchrun", rank=rank, world_size=2, local_rank=rank, local_size=2), torch.device("cpu")
    )
    try:
        result = {"ok": fn(comm, *args)}
    except Exception as exc:
        result = {"error": type(exc).__name__, "message": str(exc), "trace": traceback.format_exc()}
    finally:
        comm.close()
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


def _average(comm, skip_on_rank: int | None, finite_on_all: bool):
    from dopt.backends.torch.comm import reduce_gradients

    params = [torch.nn.Parameter(torch.zeros(3)) for _ in range(3)]
    params[0].grad = torch.full((3,), float(comm.rank + 1))  # 1 on rank 0, 2 on rank 1
    if skip_on_rank != comm.rank:
        params[1].grad = torch.full((3,), 10.0 * comm.rank)
    finite = finite_on_all or comm.rank == 0
    applied = reduce_gradients(comm, params, finite)
    return {"applied": applied, "grads": [None if p.grad is None else p.grad.tolist() for p in params]}


def test_gradients_are_averaged_and_unused_parameters_keep_no_gradient(tmp_path):
    for result in _spawn(_average, tmp_path, None, True):
        assert result["ok"] == {"applied": True, "grads": [[1.5] * 3, [5.0] * 3, None]}, result


def test_a_non_finite_loss_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    for result in _spawn(_average, tmp_path, None, False):
        assert result["ok"]["applied"] is False, result


def test_ranks_that_used_different_parameters_stop(tmp_path):
    for result in _spawn(_average, tmp_path, 1, True):
        assert result.get("error") == "RanksDiverged", result
        assert "gradient on some processes and not on others" in result["message"]


def _train_with_seed_per_rank(comm, seeds):
    """The core's training loop with a real sampler: rank r's subnets drawn from seeds[r]."""
    from dopt.parallel.comm import SampleCheck
    from dopt.scenario.model import Supernet, Training
    from dopt.space import SearchSpace
    from dopt.training import sampler

    cfg = Supernet(input_shape=(1, 8, 8), data_format="channels_first", filters=(16, 24, 48), strides=(1, 2, 2))
    sample = sampler(SearchSpace(cfg, 8), Training(sampling="uniform", distill=False), seeds[comm.rank])
    check = SampleCheck(comm)
    for step in range(45):
        check(0, step, step, sample(0))
    return "trained 45 steps"


def test_sampling_alike_passes_and_a_rank_seeded_differently_is_caught(tmp_path):
    assert [r.get("ok") for r in _spawn(_train_with_seed_per_rank, tmp_path, [11, 11])] == ["trained 45 steps"] * 2
    for result in _spawn(_train_with_seed_per_rank, tmp_path, [11, 12]):
        assert result.get("error") == "RanksDiverged", result
        assert "sampled different subnets by epoch 1, step 0" in result["message"]
