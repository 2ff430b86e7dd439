"""The user's metric as a float: float32 values keep their own shortest decimal, float64 stays exact."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dopt.errors import UserError
from dopt.evaluation import metric_value
from dopt.results.header import header_value

WIDENED = float(np.float32(0.20555556))  # 0.20555555820465088, what float() of the float32 gives


@pytest.mark.parametrize(
    "result",
    [np.float32(0.20555556), np.array(0.20555556, dtype=np.float32)],
    ids=["numpy scalar", "0-d array"],
)
def test_numpy_float32_metric_is_its_shortest_decimal(result):
    value = metric_value(result, "metric")
    assert value == 0.20555556 and repr(value) == "0.20555556"
    assert np.float32(value) == np.float32(0.20555556)  # the same float32 read back
    # What the header, pareto.json and the CSV write.
    assert header_value(value) == "0.20555556" and json.dumps(value) == "0.20555556"


def test_float16_metric_is_its_shortest_decimal():
    assert repr(metric_value(np.float16(0.1), "metric")) == "0.1"


def test_torch_float32_tensor_metric_is_its_shortest_decimal():
    from tests.frameworks import require

    torch = require("torch")
    assert repr(metric_value(torch.tensor(0.20555556, dtype=torch.float32), "metric")) == "0.20555556"
    assert repr(metric_value(torch.tensor(0.1, dtype=torch.float16), "metric")) == "0.1"
    assert metric_value(torch.tensor(0.1, dtype=torch.float64), "metric") == 0.1


def test_tensorflow_float32_tensor_metric_is_its_shortest_decimal():
    from tests.frameworks import require

    tf = require("tensorflow")
    assert repr(metric_value(tf.constant(0.20555556, dtype=tf.float32), "metric")) == "0.20555556"
    assert repr(metric_value(tf.Variable(0.3), "metric")) == "0.3"


@pytest.mark.parametrize("result", [WIDENED, np.float64(WIDENED), np.array(WIDENED)])
def test_float64_metric_stays_exact(result):
    assert metric_value(result, "metric") == WIDENED


def test_shortest_decimals_keep_the_order_of_float32_metrics():
    values = np.sort(np.random.default_rng(0).random(2000, dtype=np.float32))
    values = np.unique(np.concatenate([values, np.nextafter(values, np.float32(1))]))
    converted = [metric_value(v, "metric") for v in values]
    assert all(a < b for a, b in zip(converted, converted[1:]))
    assert [np.float32(c) for c in converted] == list(values)


def test_infinite_is_nan_and_nan_stays_nan():
    assert math.isnan(metric_value(np.float32("inf"), "metric"))
    assert math.isnan(metric_value(np.float32("nan"), "metric"))
    assert math.isnan(metric_value(float("-inf"), "metric"))


def test_non_number_names_the_metric_function():
    with pytest.raises(UserError, match="my_metric returned str"):
        metric_value("high", "my_metric")
