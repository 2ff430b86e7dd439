"""The one timing method behind every latency dopt reports (docs/latency.md#how-latency-is-measured).

This file's source (below the imports) is copied verbatim into every result script, so that a
script run on its own measures its model exactly as dopt did: standard library only, no dopt
import, no framework import (the caller passes ``sync`` for a GPU).
"""

from __future__ import annotations

import random
import time

ROUNDS = 60  # passes over every callable, in a shuffled order each time
REPEATS = 5  # timed calls of one callable per pass, after one untimed call


def measure_ms(calls, rounds=ROUNDS, repeats=REPEATS, sync=None, on_round=None):
    """Latency in milliseconds of each zero-argument callable: the fastest of its timed calls.

    Every callable is first called three times (warm-up). Then, in each of ``rounds`` passes,
    the callables run in a freshly shuffled order, each once untimed and ``repeats`` times
    timed. Interleaving gives every callable the same mix of quiet and busy moments of a shared
    machine, and the fastest call is the one least disturbed by other work: slowdowns only ever
    add time, so the minimum is the most repeatable statistic there is.

    Args:
        calls: zero-argument callables, e.g. ``lambda: model(x)``.
        sync: called after every call, inside the timed span (``torch.cuda.synchronize`` on a
            GPU, whose calls return before the work is done); None on a CPU.
        on_round: called with the number of the pass just finished (progress display).
    """
    sync = sync or (lambda: None)
    best = [float("inf")] * len(calls)
    for call in calls:
        for _ in range(3):
            call()
        sync()
    order = list(range(len(calls)))
    shuffle = random.Random(0).shuffle
    for done in range(1, rounds + 1):
        shuffle(order)
        for i in order:
            call = calls[i]
            call()
            sync()
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                sync()
                best[i] = min(best[i], time.perf_counter() - start)
        if on_round is not None:
            on_round(done)
    return [1000.0 * b for b in best]
