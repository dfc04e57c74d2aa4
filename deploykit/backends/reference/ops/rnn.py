"""Recurrent layers: LSTM, GRU and RNN (all directions, sequence_lens, layouts, custom activations);
the input projection X @ W^T runs as one matmul for every timestep, only H @ R^T stays in the loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..kernels import Kernel, Node, register

Act = Callable[[np.ndarray], np.ndarray]
# (per-direction input weights, bias added to the projected input, per-direction R^T, extra bias)
Prepared = tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray | None]
#: one timestep: (xw_t, h, c, R^T, extra bias, activations, peepholes) -> (h, c)
Step = Callable[..., tuple[np.ndarray, np.ndarray | None]]

#: activation -> (uses alpha, uses beta, default alpha, default beta); defaults follow the ONNX ops
_ACT_PARAMS: dict[str, tuple[bool, bool, float, float]] = {
    "affine": (True, True, 1.0, 0.0),
    "leakyrelu": (True, False, 0.01, 0.0),
    "thresholdedrelu": (True, False, 1.0, 0.0),
    "scaledtanh": (True, True, 1.0, 1.0),
    "hardsigmoid": (True, True, 0.2, 0.5),
    "elu": (True, False, 1.0, 0.0),
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 0.5 * (1 + tanh(x / 2)): exact sigmoid identity that cannot overflow
    t = np.tanh(x * 0.5)
    t += 1
    t *= 0.5
    return t


def _make_act(name: str, alpha: float, beta: float) -> Act:
    key = name.lower()
    if key == "sigmoid":
        return _sigmoid
    if key == "tanh":
        return np.tanh
    if key == "relu":
        return lambda x: np.maximum(x, 0)
    if key == "affine":
        return lambda x: x * alpha + beta
    if key == "leakyrelu":
        return lambda x: np.where(x >= 0, x, x * alpha)
    if key == "thresholdedrelu":
        return lambda x: np.where(x > alpha, x, 0).astype(x.dtype, copy=False)
    if key == "scaledtanh":
        return lambda x: np.tanh(x * beta) * alpha
    if key == "hardsigmoid":
        return lambda x: np.clip(x * alpha + beta, 0, 1)
    if key == "elu":
        return lambda x: np.where(x >= 0, x, np.expm1(np.minimum(x, 0)) * alpha)
    if key == "softsign":
        return lambda x: x / (np.abs(x) + 1)
    if key == "softplus":
        return lambda x: np.logaddexp(x, 0).astype(x.dtype, copy=False)
    raise NotImplementedError(f"activation {name!r}")


def _activations(node: Node, defaults: Sequence[str], nd: int) -> list[list[Act]]:
    """The activation functions of each direction; activation_alpha/beta are consumed in order by
    the functions that take them, the rest getting their ONNX defaults."""
    names = [str(n) for n in (node.attr("activations") or [])] or list(defaults) * nd
    if len(names) == len(defaults) and nd == 2:
        names = names * 2
    if len(names) != len(defaults) * nd:
        raise NotImplementedError(f"{node.op_type}: {len(names)} activations for {nd} direction(s)")
    alphas = [float(a) for a in node.attr("activation_alpha") or []]
    betas = [float(b) for b in node.attr("activation_beta") or []]
    acts: list[Act] = []
    for name in names:
        uses_a, uses_b, alpha, beta = _ACT_PARAMS.get(name.lower(), (False, False, 0.0, 0.0))
        if uses_a and alphas:
            alpha = alphas.pop(0)
        if uses_b and betas:
            beta = betas.pop(0)
        acts.append(_make_act(name, alpha, beta))
    k = len(defaults)
    return [acts[d * k:(d + 1) * k] for d in range(nd)]


def _absent(node: Node, index: int) -> bool:
    """Whether optional input ``index`` is known at load time to be missing."""
    proto = node.proto
    return proto is not None and (index >= len(proto.input) or not proto.input[index])


def _wanted(node: Node, count: int) -> list[bool]:
    proto = node.proto
    names = list(proto.output) if proto is not None else ["y"] * node.n_outputs
    return [i < len(names) and bool(names[i]) for i in range(count)]


def _reverse_within(a: np.ndarray, lens: np.ndarray | None) -> np.ndarray:
    """Reverse each batch column of ``a`` (time, batch, ...) within its own length; positions past
    a length stay where they are. Applying it twice is the identity."""
    if lens is None:
        return a[::-1]
    steps = np.arange(a.shape[0])[:, None]
    idx = lens[None, :] - 1 - steps
    idx = np.where(idx >= 0, idx, steps)
    return a[idx, np.arange(a.shape[1])[None, :]]


class _Recurrent:
    """What the three ops share: attributes, weight preparation, layouts, directions, lengths."""

    def __init__(self, node: Node, n_gates: int, default_acts: Sequence[str], n_states: int) -> None:
        self.direction = str(node.attr("direction", "forward"))
        if self.direction not in ("forward", "reverse", "bidirectional"):
            raise ValueError(f"{node.op_type}: unknown direction {self.direction!r}")
        self.nd = 2 if self.direction == "bidirectional" else 1
        self.gates = n_gates
        self.layout = int(node.attr("layout", 0)) if node.since >= 14 else 0
        clip = node.attr("clip")
        self.clip = None if clip is None else float(clip)
        self.acts = _activations(node, default_acts, self.nd)
        self.want = _wanted(node, 1 + n_states)
        self.cached: Prepared | None = None
        w, r, b = node.const(1), node.const(2), node.const(3)
        if w is not None and r is not None and (b is not None or _absent(node, 3)):
            self.cached = self.prepare(np.asarray(w), np.asarray(r), b)

    def split_bias(self, b: np.ndarray, hidden: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(bias folded into the projected input, bias kept inside the loop); overridden by GRU."""
        half = self.gates * hidden
        return b[:, :half] + b[:, half:], None

    def prepare(self, w: np.ndarray, r: np.ndarray, b: np.ndarray | None) -> Prepared:
        nd, gh, n_in = w.shape
        hidden = r.shape[-1]
        w_all = np.ascontiguousarray(w.reshape(nd * gh, n_in).T)
        rts = [np.ascontiguousarray(r[d].T) for d in range(nd)]
        if b is None:
            return w_all, np.zeros((nd, gh), w.dtype), rts, None
        bias, extra = self.split_bias(np.asarray(b, w.dtype), hidden)
        return w_all, bias, rts, extra

    def clipped(self, x: np.ndarray) -> np.ndarray:
        return x if self.clip is None else np.clip(x, -self.clip, self.clip, out=x)

    def run(self, step: Step, x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray | None,
            seq_lens: np.ndarray | None, states: list[np.ndarray | None],
            extras: list[np.ndarray | None]) -> tuple[Any, ...]:
        """Run ``step(xw_t, h, c, rt, extra, acts, peep) -> (h, c)`` over time in each direction.
        ``states`` are the initial states (h[, c]) as given, ``extras`` per-direction constants.
        Like onnxruntime, a batch entry of sequence length 0 gets zero final states."""
        if self.layout:
            x = x.swapaxes(0, 1)
            states = [None if s is None else s.swapaxes(0, 1) for s in states]
        steps, batch = x.shape[:2]
        prepared = self.cached or self.prepare(w, r, b)
        xw = self.projected(x, prepared)
        lens = _lengths(seq_lens, steps)
        hidden = prepared[2][0].shape[0]
        y = np.empty((steps, self.nd, batch, hidden), x.dtype) if self.want[0] else None
        finals: list[list[np.ndarray]] = [[] for _ in states]
        for d in range(self.nd):
            initial = [np.zeros((batch, hidden), x.dtype) if s is None else s[d].astype(x.dtype)
                       for s in states]
            out, last = self.direction_run(step, d, xw[:, :, d], prepared, lens, initial,
                                           extras[d] if extras else None, y is not None)
            if y is not None and out is not None:
                y[:, d] = out
            for i, s in enumerate(last):
                finals[i].append(s if lens is None else np.where(lens[:, None] > 0, s, 0))
        return self.results(y, [np.stack(f) for f in finals])

    def projected(self, x: np.ndarray, prepared: Prepared) -> np.ndarray:
        """X @ W^T + bias for every timestep and direction at once: (steps, batch, nd, gates*hidden)."""
        w_all, bias = prepared[0], prepared[1]
        steps, batch, n_in = x.shape
        xw = x.reshape(steps * batch, n_in) @ w_all.astype(x.dtype, copy=False)
        xw = xw.reshape(steps, batch, self.nd, w_all.shape[1] // self.nd)
        xw += bias.astype(x.dtype, copy=False)
        return xw

    def direction_run(self, step: Step, d: int, xs: np.ndarray, prepared: Prepared,
                      lens: np.ndarray | None, cur: list[np.ndarray], peep: np.ndarray | None,
                      want_y: bool) -> tuple[np.ndarray | None, list[np.ndarray]]:
        """Direction ``d`` over time from states ``cur``: its outputs (time order, None unless
        ``want_y``) and final states. Past a batch entry's length, states stop changing and
        outputs are zero."""
        dt = xs.dtype
        backward = d == 1 or self.direction == "reverse"
        if backward:
            xs = _reverse_within(xs, lens)
        steps, batch = xs.shape[:2]
        mask = None if lens is None else (np.arange(steps)[:, None] < lens[None, :])[..., None]
        out = np.empty((steps, batch, cur[0].shape[1]), dt) if want_y else None  # all written
        rt = prepared[2][d].astype(dt, copy=False)
        extra = prepared[3]
        ex = None if extra is None else extra[d].astype(dt, copy=False)
        acts = self.acts[d]
        for t in range(steps):
            h, c = step(xs[t], cur[0], cur[1] if len(cur) > 1 else None, rt, ex, acts, peep)
            new = [h] if c is None else [h, c]
            if mask is not None:
                new = [np.where(mask[t], n, o) for n, o in zip(new, cur)]
                if out is not None:
                    out[t] = np.where(mask[t], h, 0)
            elif out is not None:
                out[t] = h
            cur = new
        if out is not None and backward:
            out = _reverse_within(out, lens)
        return out, cur

    def results(self, y: np.ndarray | None, finals: list[np.ndarray]) -> tuple[Any, ...]:
        """(Y, Y_h[, Y_c]) in the node's layout, None for outputs the node does not name."""
        results: list[Any] = [y, *finals]
        if self.layout:
            if y is not None:
                results[0] = np.ascontiguousarray(y.transpose(2, 0, 1, 3))
            results[1:] = [np.ascontiguousarray(s.swapaxes(0, 1)) for s in results[1:]]
        return tuple(res if want else None for res, want in zip(results, self.want))


def _lengths(seq_lens: np.ndarray | None, steps: int) -> np.ndarray | None:
    """Each batch entry's sequence length capped at ``steps``; None when all are ``steps``."""
    if seq_lens is None:
        return None
    lens = np.minimum(np.asarray(seq_lens, np.int64).reshape(-1), steps)
    return None if bool(np.all(lens == steps)) else lens


@register("RNN", 1, 7, 14, 22)
def rnn(node: Node) -> Kernel:
    spec = _Recurrent(node, 1, ("Tanh",), 1)

    def step(xt: np.ndarray, h: np.ndarray, c: None, rt: np.ndarray, ex: None, acts: list[Act],
             peep: None) -> tuple[np.ndarray, None]:
        return acts[0](spec.clipped(xt + h @ rt)), None

    def kernel(x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray | None = None,
               seq_lens: np.ndarray | None = None, h0: np.ndarray | None = None) -> tuple[Any, ...]:
        return spec.run(step, x, w, r, b, seq_lens, [h0], [])

    return kernel


class _GRU(_Recurrent):
    def __init__(self, node: Node) -> None:
        self.linear_before_reset = bool(node.attr("linear_before_reset", 0))
        super().__init__(node, 3, ("Sigmoid", "Tanh"), 1)

    def split_bias(self, b: np.ndarray, hidden: int) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.linear_before_reset:
            return super().split_bias(b, hidden)
        wb, rb = b[:, :3 * hidden], b[:, 3 * hidden:]
        folded = wb.copy()
        folded[:, :2 * hidden] += rb[:, :2 * hidden]
        return folded, rb[:, 2 * hidden:]


@register("GRU", 1, 3, 7, 14, 22)
def gru(node: Node) -> Kernel:
    spec = _GRU(node)
    clipped = spec.clipped

    def step(xt: np.ndarray, h: np.ndarray, c: None, rt: np.ndarray, ex: np.ndarray | None,
             acts: list[Act], peep: None) -> tuple[np.ndarray, None]:
        f, g = acts
        n = h.shape[1]
        if spec.linear_before_reset:
            hr = h @ rt
            zr = f(clipped(xt[:, :2 * n] + hr[:, :2 * n]))
            lin = hr[:, 2 * n:] if ex is None else hr[:, 2 * n:] + ex
            hh = g(clipped(xt[:, 2 * n:] + zr[:, n:] * lin))
        else:
            zr = f(clipped(xt[:, :2 * n] + h @ rt[:, :2 * n]))
            hh = g(clipped(xt[:, 2 * n:] + (zr[:, n:] * h) @ rt[:, 2 * n:]))
        return hh + zr[:, :n] * (h - hh), None

    def kernel(x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray | None = None,
               seq_lens: np.ndarray | None = None, h0: np.ndarray | None = None) -> tuple[Any, ...]:
        return spec.run(step, x, w, r, b, seq_lens, [h0], [])

    return kernel


@register("LSTM", 1, 7, 14, 22)
def lstm(node: Node) -> Kernel:
    spec = _Recurrent(node, 4, ("Sigmoid", "Tanh", "Tanh"), 2)
    input_forget = bool(node.attr("input_forget", 0))
    clipped = spec.clipped

    def step(xt: np.ndarray, h: np.ndarray, c: np.ndarray, rt: np.ndarray, ex: None,
             acts: list[Act], peep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        f, g, hact = acts
        n = h.shape[1]
        gates = xt + h @ rt  # gate order i, o, f, c
        cell = g(clipped(gates[:, 3 * n:]))
        if peep is None:  # i, o and f in one call
            iof = f(clipped(gates[:, :3 * n]))
            i, o = iof[:, :n], iof[:, n:2 * n]
            forget = 1 - i if input_forget else iof[:, 2 * n:]
            c_new = forget * c + i * cell
        else:
            i = f(clipped(gates[:, :n] + peep[0] * c))
            forget = 1 - i if input_forget else f(clipped(gates[:, 2 * n:3 * n] + peep[2] * c))
            c_new = forget * c + i * cell
            o = f(clipped(gates[:, n:2 * n] + peep[1] * c_new))
        return o * hact(c_new), c_new

    def kernel(x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray | None = None,
               seq_lens: np.ndarray | None = None, h0: np.ndarray | None = None,
               c0: np.ndarray | None = None, p: np.ndarray | None = None) -> tuple[Any, ...]:
        hidden = r.shape[-1]
        peeps: list[np.ndarray | None] = []
        if p is not None:
            pa = np.asarray(p, x.dtype).reshape(spec.nd, 3, hidden)
            peeps = [pa[d] for d in range(spec.nd)]
        return spec.run(step, x, w, r, b, seq_lens, [h0, c0], peeps)

    return kernel
