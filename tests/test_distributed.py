"""The framework-free parts of a distributed run: the sampling check, agreement, the learning
rate, warnings relayed to rank 0, and one process per listed GPU."""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from dopt.errors import UserError
from dopt.parallel.comm import CHECK_EVERY, RanksDiverged, Relayed, SampleCheck, SingleProcess, learning_rate
from dopt.scenario.model import Supernet, Training
from dopt.space import SearchSpace
from dopt.training import sampler


class _Pair:
    """Rank ``rank`` of two, where the other rank's contributions to a gather come from ``other``."""

    def __init__(self, rank: int, other):
        self.rank, self.world_size, self.local_rank, self.local_size = rank, 2, rank, 2
        self.engine, self.device = "test", None
        self.other = other
        self.gathers = 0

    def allgather(self, obj):
        self.gathers += 1
        theirs = self.other(obj)
        return [obj, theirs] if self.rank == 0 else [theirs, obj]

    def broadcast(self, obj, root=0):
        return obj

    def barrier(self):
        pass

    def close(self):
        pass


def _space():
    cfg = Supernet(input_shape=(1, 8, 8), data_format="channels_first", filters=(16, 24, 48), strides=(1, 2, 2))
    return SearchSpace(cfg, 8)


def _steps(seed: int, n: int):
    sample = sampler(_space(), Training(sampling="sandwich"), seed)
    return [sample(0) for _ in range(n)]


def test_ranks_that_sample_alike_pass_and_compare_every_few_steps():
    mine = _steps(seed=3, n=2 * CHECK_EVERY + 1)
    twin = SampleCheck(SingleProcess())  # what the other rank computes: the same subnets
    twin_digests = []

    def other(_):
        return twin_digests.pop(0)

    comm = _Pair(0, other)
    check = SampleCheck(comm)
    for i, archs in enumerate(mine):
        twin._digest.update(repr((0, i, list(archs))).encode())
        twin_digests.append(twin._digest.hexdigest()[:16])
        if i % CHECK_EVERY:
            twin_digests.pop()
        check(0, i, i, archs)
    assert comm.gathers == 3  # steps 0, 20, 40 of the epoch


def test_a_rank_seeded_differently_is_caught_at_the_first_step():
    ours, theirs = _steps(seed=3, n=1), _steps(seed=4, n=1)
    assert ours != theirs
    other_check = SampleCheck(SingleProcess())
    other_check._digest.update(repr((0, 0, list(theirs[0]))).encode())
    comm = _Pair(0, lambda _: other_check._digest.hexdigest()[:16])
    with pytest.raises(RanksDiverged, match=r"sampled different subnets by epoch 1, step 0 \(rank 1 differ"):
        SampleCheck(comm)(0, 0, 0, ours[0])


def test_the_sampler_ignores_the_global_rngs_user_code_may_touch():
    a = _steps(seed=5, n=4)
    np.random.seed(123)
    import random

    random.seed(99)
    assert _steps(seed=5, n=4) == a


def test_learning_rate_scales_with_processes_unless_turned_off():
    on, off = SimpleNamespace(learning_rate=0.005, scale_lr=True), SimpleNamespace(learning_rate=0.005, scale_lr=False)
    assert learning_rate(on, 1) == 0.005 and learning_rate(on, 4) == 0.02 and learning_rate(off, 4) == 0.005


def test_warnings_of_other_ranks_reach_rank_0_tagged(caplog):
    sent = []
    rank1 = Relayed(_Pair(1, lambda obj: (obj[0], [])))
    rank1.comm.allgather = lambda obj: sent.append(obj) or [(None, []), obj]  # type: ignore[method-assign]
    logging.getLogger("dopt.test").warning("disk almost full")
    rank1.allgather("x")
    assert sent == [("x", ["disk almost full"])]
    rank0 = Relayed(_Pair(0, lambda obj: ("y", ["disk almost full"])))
    with caplog.at_level(logging.WARNING, logger="dopt"):
        assert rank0.allgather("x") == ["x", "y"]
    assert "[rank 1] disk almost full" in caplog.text
    logging.getLogger("dopt").removeHandler(rank1._handler)


@pytest.mark.parametrize(
    ("framework", "ids", "gpus", "expected"),
    [
        ("pytorch", (0,), 8, None),  # one id: no spawning
        ("pytorch", (0, 1), 0, None),  # not here: one process (warning)
        ("pytorch", (0, 3), 2, None),
        ("pytorch", (0, 1), 2, ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dopt"]),
        ("tensorflow", (0, 1, 2), 4, ["-np", "3", "-H", "localhost:3"]),
    ],
)
def test_several_gpu_ids_start_one_process_per_gpu_where_they_are(monkeypatch, caplog, framework, ids, gpus, expected):
    import dopt.backends
    import dopt.parallel.spawn

    started = []
    monkeypatch.setattr(dopt.backends, "get_backend", lambda fw: SimpleNamespace(gpu_count=lambda: gpus))
    monkeypatch.setattr(dopt.parallel.spawn.shutil, "which", lambda name: "/usr/bin/horovodrun")
    monkeypatch.setattr(dopt.parallel.spawn.os, "execv", lambda path, args: started.append(args))
    scenario = SimpleNamespace(framework=framework, resource=SimpleNamespace(gpu_ids=ids), where=lambda key: {})
    with caplog.at_level(logging.WARNING, logger="dopt"):
        dopt.parallel.spawn.spawn_per_gpu(scenario, ["-c", "scen.yaml"])  # type: ignore[arg-type]
    if expected is None:
        assert started == []
        if len(ids) > 1 and ids[0] < gpus:  # else the device choice says it, in its own line
            assert "one process runs, on GPU 0" in caplog.text
        return
    (args,) = started
    joined = " ".join(args)
    assert " ".join(expected) in joined and joined.endswith("dopt -c scen.yaml") and sys.executable in args


def test_tensorflow_on_several_gpus_without_horovod_says_what_to_install(monkeypatch):
    import dopt.backends
    import dopt.parallel.spawn

    monkeypatch.setattr(dopt.backends, "get_backend", lambda fw: SimpleNamespace(gpu_count=lambda: 2))
    monkeypatch.setattr(dopt.parallel.spawn.shutil, "which", lambda name: None)
    scenario = SimpleNamespace(framework="tensorflow", resource=SimpleNamespace(gpu_ids=(0, 1)), where=lambda key: {})
    with pytest.raises(UserError, match="scripts/install_horovod.sh"):
        dopt.parallel.spawn.spawn_per_gpu(scenario, ["-c", "scen.yaml"])  # type: ignore[arg-type]
