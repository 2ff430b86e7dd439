"""The fake weight-sharing supernet: one array per layer and part at its largest shape, subnets as
slices of it (first channels, centre-cropped kernels, as docs/search-space.md#weight-sharing),
trained by real backpropagation in numpy through the blocks of tests/fake/static.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dopt.space import Arch, SearchSpace
from tests.fake.static import EPS, Net

__all__ = ["Supernet", "Optimizer", "Trace"]


@dataclass(frozen=True, kw_only=True)
class _Block:
    """One kept layer of the active subnet: its index, row and the slices of the shared arrays."""

    index: int
    row: tuple[int, int, int, int, int]
    hidden: slice
    out: slice
    inp: slice
    kernel: tuple[slice, slice]

    @property
    def residual(self) -> bool:
        cin, cout, _, stride, _ = self.row
        return stride == 1 and cin == cout


@dataclass
class Trace:
    """What backpropagation of one forward pass needs: per block its inputs and BN intermediates."""

    blocks: list[tuple[_Block, dict[str, Any]]]
    features: np.ndarray  # the last block's output, PostNet's input


class Supernet:
    """The shared weights of every subnet of ``space``, initialised from ``seed``."""

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.space = space
        rng = np.random.default_rng([seed, 3])
        self.kmax = max(space.kernel_sizes)
        self.expands = any(e != 1 for e in space.expand_ratios)
        self.weights: dict[str, np.ndarray] = {}
        for spec in space.layers:
            hidden = spec.max_in * max(space.expand_ratios)
            p = f"{spec.index}."
            if self.expands:
                self.weights[p + "expand"] = rng.normal(0, 1 / np.sqrt(spec.max_in), (spec.max_in, hidden))
            # Positive taps: in the 1x1 world a kernel scales its channel by the sum of its taps, and
            # sums of opposite signs in the crops of one kernel would make subnets disagree.
            self.weights[p + "depthwise"] = rng.uniform(0.5, 1.5, (hidden, self.kmax, self.kmax)) / self.kmax**2
            self.weights[p + "project"] = rng.normal(0, 1 / np.sqrt(hidden), (hidden, spec.max_out))
            for part, width in (("expand_bn", hidden), ("depthwise_bn", hidden), ("project_bn", spec.max_out)):
                if part != "expand_bn" or self.expands:
                    self.weights[f"{p}{part}.gamma"] = np.ones(width)
                    self.weights[f"{p}{part}.beta"] = np.zeros(width)
        self.grads = {k: np.zeros_like(v) for k, v in self.weights.items()}

    def blocks(self, arch: Arch) -> list[_Block]:
        out = []
        for plan in self.space.plan(arch):
            cin, cout, k, stride, e = row = (
                plan.in_channels,
                plan.choice.out_channels,
                plan.choice.kernel,
                plan.spec.stride,
                plan.choice.expand,
            )
            crop = slice((self.kmax - k) // 2, (self.kmax - k) // 2 + k)
            out.append(
                _Block(
                    index=plan.spec.index,
                    row=row,
                    hidden=slice(0, cin * e),
                    out=slice(0, cout),
                    inp=slice(0, cin),
                    kernel=(crop, crop),
                )
            )
        return out

    def extract(self, arch: Arch, pre: Any, post: Any) -> Net:
        """The static model of ``arch``: copies of its slices, BatchNorm statistics not yet set."""
        blocks = self.blocks(arch)
        net = Net(pre, post, [b.row for b in blocks])
        for b, layer in zip(blocks, net.layers):
            layer.load({name: view.copy() for name, view in self._views(b).items()})
        return net

    def _views(self, b: _Block, arrays: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Block ``b``'s slices of the weights (or of ``arrays``, e.g. the gradients): views, not copies."""
        w, p = self.weights if arrays is None else arrays, f"{b.index}."
        named = {
            "depthwise": w[p + "depthwise"][b.hidden, b.kernel[0], b.kernel[1]],
            "project": w[p + "project"][b.hidden, b.out],
            "depthwise_bn.gamma": w[p + "depthwise_bn.gamma"][b.hidden],
            "depthwise_bn.beta": w[p + "depthwise_bn.beta"][b.hidden],
            "project_bn.gamma": w[p + "project_bn.gamma"][b.out],
            "project_bn.beta": w[p + "project_bn.beta"][b.out],
        }
        if b.row[4] != 1:
            named["expand"] = w[p + "expand"][b.inp, b.hidden]
            named["expand_bn.gamma"] = w[p + "expand_bn.gamma"][b.hidden]
            named["expand_bn.beta"] = w[p + "expand_bn.beta"][b.hidden]
        return named

    # -- training --------------------------------------------------------------------------------
    def forward(self, x: np.ndarray, arch: Arch) -> Trace:
        """The active subnet on PreNet's pooled output ``x`` in training mode (batch statistics)."""
        trace = []
        for b in self.blocks(arch):
            v, cache = self._views(b), {"x": x}
            h = x
            if "expand" in v:
                h = np.maximum(_bn(h @ v["expand"], v, "expand_bn", cache), 0.0)
                cache["r1"] = h
            scale = v["depthwise"].sum(axis=(1, 2))
            cache["scale"] = scale
            h = np.maximum(_bn(h * scale, v, "depthwise_bn", cache), 0.0)
            cache["r2"] = h
            out = _bn(h @ v["project"], v, "project_bn", cache)
            x = x + out if b.residual else out
            trace.append((b, cache))
        return Trace(trace, x)

    def backward(self, trace: Trace, d_features: np.ndarray) -> None:
        """Add the gradients of the loss whose gradient at the features is ``d_features``."""
        dx = d_features
        for b, cache in reversed(trace.blocks):
            v, grads = self._views(b), self._views(b, self.grads)
            dout = dx
            dh = _bn_backward(dout, v, grads, "project_bn", cache)
            grads["project"] += cache["r2"].T @ dh
            dr2 = (dh @ v["project"].T) * (cache["r2"] > 0)
            da2 = _bn_backward(dr2, v, grads, "depthwise_bn", cache)
            h_in = cache.get("r1", cache["x"])
            grads["depthwise"] += (da2 * h_in).sum(axis=0)[:, None, None]
            dh_in = da2 * cache["scale"]
            if "expand" in v:
                da1 = _bn_backward(dh_in * (cache["r1"] > 0), v, grads, "expand_bn", cache)
                grads["expand"] += cache["x"].T @ da1
                dh_in = da1 @ v["expand"].T
            dx = dh_in + (dout if b.residual else 0.0)

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g.fill(0.0)


def _bn(x: np.ndarray, v: dict[str, np.ndarray], part: str, cache: dict[str, Any]) -> np.ndarray:
    """BatchNorm in training mode: the batch's own statistics."""
    inv = 1.0 / np.sqrt(x.var(axis=0) + EPS)
    xhat = (x - x.mean(axis=0)) * inv
    cache[part] = (xhat, inv)
    return v[f"{part}.gamma"] * xhat + v[f"{part}.beta"]


def _bn_backward(
    dy: np.ndarray, v: dict[str, np.ndarray], grads: dict[str, np.ndarray], part: str, cache: dict[str, Any]
) -> np.ndarray:
    xhat, inv = cache[part]
    grads[f"{part}.gamma"] += (dy * xhat).sum(axis=0)
    grads[f"{part}.beta"] += dy.sum(axis=0)
    dxhat = dy * v[f"{part}.gamma"]
    n = len(dy)
    return inv / n * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))


class Optimizer:
    """SGD (with optional momentum) or Adam over named arrays, updated in place; ``param_groups``
    holds the learning rate as PyTorch's does, so the user's schedule can set it."""

    def __init__(
        self, params: dict[str, np.ndarray], kind: str, lr: float, betas: tuple[float, float], momentum: float | None
    ) -> None:
        self.params, self.kind, self.betas, self.momentum = params, kind, betas, momentum or 0.0
        self.param_groups = [{"lr": lr, "initial_lr": lr}]
        self.state: dict[str, np.ndarray] = {}
        for name, p in params.items():
            if kind == "Adam":
                self.state[f"m.{name}"], self.state[f"v.{name}"] = np.zeros_like(p), np.zeros_like(p)
            elif self.momentum:
                self.state[f"buf.{name}"] = np.zeros_like(p)
        self.state["t"] = np.zeros(())

    def step(self, grads: dict[str, np.ndarray]) -> None:
        lr = self.param_groups[0]["lr"]
        self.state["t"] = self.state["t"] + 1
        t = float(self.state["t"])
        b1, b2 = self.betas
        for name, p in self.params.items():
            g = grads[name]
            if self.kind == "Adam":
                m, v = self.state[f"m.{name}"], self.state[f"v.{name}"]
                m *= b1
                m += (1 - b1) * g
                v *= b2
                v += (1 - b2) * g * g
                p -= lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + 1e-8)
            elif self.momentum:
                buf = self.state[f"buf.{name}"]
                buf *= self.momentum
                buf += g
                p -= lr * buf
            else:
                p -= lr * g

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**self.state, "lr": np.asarray(self.param_groups[0]["lr"])}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for name, value in state.items():
            if name == "lr":
                self.param_groups[0]["lr"] = float(value)
            elif name not in self.state or np.shape(self.state[name]) != np.shape(value):
                raise ValueError(f"optimizer state {name!r} does not fit")
            elif self.state[name].ndim:
                self.state[name][...] = value
            else:
                self.state[name] = np.array(value, dtype=float)
