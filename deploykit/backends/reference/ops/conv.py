"""Conv and ConvTranspose (1D/2D/3D, groups, dilations, strides, pads, auto_pad): one matmul per
group over im2col columns (the input itself for 1x1 convs), col2im scatter-adds for transposed."""

from __future__ import annotations

import itertools
import math
import threading
from typing import Any

import numpy as np

from ..kernels import Kernel, Node, register

Array = np.ndarray
Ints = tuple[int, ...]
Index = tuple[Any, ...]  # an index over (N, C, *spatial): Ellipsis then one slice per spatial axis
_AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
#: work buffers (padded input, im2col columns) are kept per thread up to this size and reused:
#: fresh multi-megabyte allocations cost page faults that rival the arithmetic
_SCRATCH_LIMIT = 8 << 20
_BLOCK = 4 << 20  # bytes of im2col columns built (and multiplied) at a time
_GEOMETRY_CACHE = 64  # per node: geometries kept for this many input shapes
_tls = threading.local()


def _ints(value: Any, n: int, default: int, what: str) -> Ints:
    if value is None or len(value) == 0:
        return (default,) * n
    if len(value) != n:
        raise ValueError(f"{what} has {len(value)} values, expected {n}")
    return tuple(int(v) for v in value)


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """float32/float64 are computed as they are; float16 (and bfloat16) in float32."""
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)


def _auto_pad(node: Node) -> str:
    mode = node.attr("auto_pad", "NOTSET") or "NOTSET"
    if mode not in _AUTO_PADS:
        raise NotImplementedError(f"{node.op_type} auto_pad={mode!r}")
    return str(mode)


def _split(total: int, extra_at_end: bool) -> tuple[int, int]:
    begin = total // 2 if extra_at_end else total - total // 2
    return begin, total - begin


def _scratch(slot: int, shape: Ints, dtype: np.dtype) -> Array:
    """An uninitialized work array reused by this thread's later calls: never return it."""
    nbytes = math.prod(shape) * dtype.itemsize
    bufs: dict[int, Array] = _tls.__dict__.setdefault("bufs", {})
    buf = bufs.get(slot)
    if buf is None or buf.nbytes < nbytes:
        if nbytes > _SCRATCH_LIMIT:
            return np.empty(shape, dtype)
        buf = bufs[slot] = np.empty(max(nbytes, 1 << 16), np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def _cached(geometries: dict[Any, Any], key: Any, build: Any) -> Any:
    value = geometries.get(key)
    if value is None:
        if len(geometries) >= _GEOMETRY_CACHE:
            geometries.clear()
        value = geometries[key] = build(*key)
    return value


def _windows(k: Ints, d: Ints, s: Ints, out: Ints, offset: Ints) -> list[Index]:
    """For each kernel position (row-major), the strided window of size ``out`` it covers in the
    ConvTranspose output buffer, shifted by ``-offset``."""
    return [(Ellipsis, *(slice(p * di - o0, p * di - o0 + si * (o - 1) + 1, si)
                         for p, di, si, o, o0 in zip(pos, d, s, out, offset)))
            for pos in itertools.product(*(range(n) for n in k))]


# -- Conv ---------------------------------------------------------------------------------------

class _ConvWeights:
    """Weights (and bias, when known with them) as one (G, M/G, K*C/G [+1]) matrix per group,
    columns ordered (kernel position, channel) like the im2col rows; bias is the last column."""

    def __init__(self, w: Array, b: Array | None, group: int) -> None:
        self.dtype = _compute_dtype(w.dtype)
        m, cg = self.m, self.cg = w.shape[:2]
        if m % group:
            raise ValueError(f"Conv: {m} output channels do not split into {group} groups")
        mat = np.asarray(w, self.dtype).reshape(group, m // group, cg, -1).transpose(0, 1, 3, 2)
        mat = mat.reshape(group, m // group, -1)
        self.bias = None if b is None else np.asarray(b, self.dtype).reshape(group, m // group, 1)
        if self.bias is not None:
            mat = np.concatenate([mat, self.bias], axis=2)
        self.mat = np.ascontiguousarray(mat[0] if group == 1 else mat)


def _conv_geometry(mode: str, sp: Ints, k: Ints, s: Ints, d: Ints, pads: Ints) -> tuple[Ints, Ints, Ints]:
    """(pads_begin, pads_end, output spatial shape) of a Conv."""
    n = len(sp)
    eff = tuple((ki - 1) * di + 1 for ki, di in zip(k, d))
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        out = tuple(-(-i // si) for i, si in zip(sp, s))
        split = [_split(max(0, (o - 1) * si + e - i), mode == "SAME_UPPER")
                 for o, si, e, i in zip(out, s, eff, sp)]
        return tuple(b for b, _ in split), tuple(e for _, e in split), out
    begin, end = ((0,) * n, (0,) * n) if mode == "VALID" else (pads[:n], pads[n:])
    out = tuple((i + b + e - ef) // si + 1 for i, b, e, ef, si in zip(sp, begin, end, eff, s))
    if any(o <= 0 for o in out):
        raise ValueError(f"Conv: kernel {k} (dilations {d}) does not fit input {sp} with pads {begin + end}")
    return begin, end, out


class _Phases:
    """The zero-padded input split by stride into phases (one per remainder of each spatial
    index), each (N, C, *ext): every kernel position then reads a unit-stride window of one phase,
    so im2col copies whole rows even for strided convs."""

    def __init__(self, sp: Ints, k: Ints, s: Ints, d: Ints, begin: Ints, out: Ints) -> None:
        offsets = list(itertools.product(*(range(0, ki * di, di) for ki, di in zip(k, d))))
        phases = sorted({tuple(o % si for o, si in zip(off, s)) for off in offsets})
        shifts = [tuple(o // si for o, si in zip(off, s)) for off in offsets]
        self.ext = tuple(o + max(sh[i] for sh in shifts) for i, o in enumerate(out))
        self.windows: list[tuple[int, Index]] = [
            (phases.index(tuple(o % si for o, si in zip(off, s))),
             (Ellipsis, *(slice(h, h + o) for h, o in zip(sh, out)))) for off, sh in zip(offsets, shifts)]
        # per phase: where the input goes in it, which (strided) part of the input, zero slabs
        self.fills: list[tuple[Index, Index, list[Index]] | None] = []
        for ph in phases:
            spans = [self._span(r, sp[i], s[i], begin[i], self.ext[i]) for i, r in enumerate(ph)]
            if any(hi <= lo for lo, hi, _ in spans):
                self.fills.append(None)  # all padding
                continue
            slabs: list[Index] = [(Ellipsis, slice(a, b), *(slice(None),) * (len(sp) - axis - 1))
                                  for axis, (lo, hi, _) in enumerate(spans)
                                  for a, b in ((0, lo), (hi, self.ext[axis])) if b > a]
            self.fills.append(((Ellipsis, *(slice(lo, hi) for lo, hi, _ in spans)),
                               (Ellipsis, *(sl for *_, sl in spans)), slabs))
        # one phase that is the input itself (stride 1, no padding): no copy needed
        self.identity = len(phases) == 1 and self.ext == sp and not any(begin)

    @staticmethod
    def _span(rem: int, size: int, stride: int, pad: int, limit: int) -> tuple[int, int, slice]:
        lo = min(limit, max(0, -((rem - pad) // stride)))
        hi = max(lo, min(limit, (size - 1 + pad - rem) // stride + 1))
        start = lo * stride + rem - pad
        return lo, hi, slice(start, start + (hi - lo - 1) * stride + 1, stride)

    def fill(self, x: Array) -> Array:
        """The phases of ``x``: (phases, N, C, *ext), in scratch."""
        if self.identity:
            return x[None]
        phases = _scratch(0, (len(self.fills), *x.shape[:2], *self.ext), x.dtype)
        for ph, fill in zip(phases, self.fills):
            if fill is None:
                ph[...] = 0
                continue
            dst, src, slabs = fill
            ph[dst] = x[src]
            for slab in slabs:
                ph[slab] = 0
        return phases


@register("Conv", 1, 11, 22)
def conv(node: Node) -> Kernel:
    group = int(node.attr("group", 1))
    mode = _auto_pad(node)
    attr_s, attr_d, attr_p = node.attr("strides"), node.attr("dilations"), node.attr("pads")
    w_const = node.const(1)
    fixed = _ConvWeights(w_const, node.const(2), group) if w_const is not None else None
    geometries: dict[tuple[Ints, Ints], Any] = {}

    def geometry(xshape: Ints, wshape: Ints) -> tuple[Ints, _Phases | None, Index | None]:
        nsp = len(xshape) - 2
        if nsp < 1 or len(wshape) != nsp + 2 or xshape[1] != wshape[1] * group:
            raise ValueError(f"Conv: input {xshape} does not match weights {wshape} (group={group})")
        k = tuple(wshape[2:])
        s, d = _ints(attr_s, nsp, 1, "strides"), _ints(attr_d, nsp, 1, "dilations")
        begin, end, out = _conv_geometry(mode, tuple(xshape[2:]), k, s, d, _ints(attr_p, 2 * nsp, 0, "pads"))
        if all(ki == 1 for ki in k) and not any(begin) and not any(end):  # 1x1: the input is im2col
            strided = any(si > 1 for si in s)
            return out, None, (Ellipsis, *(slice(None, None, si) for si in s)) if strided else None
        return out, _Phases(tuple(xshape[2:]), k, s, d, begin, out), None

    def kernel(x: Array, w: Array, b: Array | None = None) -> Array:
        out, phases, stride = _cached(geometries, (x.shape, w.shape), geometry)
        wts = fixed if fixed is not None else _ConvWeights(w, b, group)
        xc = x if x.dtype == wts.dtype else x.astype(wts.dtype)
        if phases is None:
            y = _pointwise(xc if stride is None else xc[stride], wts, group)
        else:
            y = _im2col(xc, phases, wts, group, out)
        if b is not None and wts.bias is None:
            y.reshape(y.shape[0], wts.m, -1)[...] += b.reshape(wts.m, 1).astype(y.dtype, copy=False)
        return y.reshape((x.shape[0], wts.m, *out)).astype(x.dtype, copy=False)

    return kernel


def _pointwise(x: Array, wts: _ConvWeights, group: int) -> Array:
    """1x1 conv without padding: the weight matrix times the input, no im2col copy."""
    n, c, length = x.shape[0], x.shape[1], math.prod(x.shape[2:])
    cg = c // group
    if wts.bias is None:
        return _matmul(wts.mat, x.reshape(n, group, cg, length), group)
    if x.flags.c_contiguous and cg > wts.m // group:  # cheaper to add the bias than to copy the input
        y = _matmul(wts.mat[..., :-1], x.reshape(n, group, cg, length), group)
        y.reshape(n, wts.m, -1)[...] += wts.bias.reshape(wts.m, 1)
        return y
    cols = _scratch(1, (n, group, cg + 1, length), x.dtype)
    cols[:, :, :cg] = x.reshape(n, group, cg, length)
    cols[:, :, cg] = 1
    return _matmul(wts.mat, cols, group)


def _im2col(x: Array, ph: _Phases, wts: _ConvWeights, group: int, out: Ints) -> Array:
    """im2col columns (one window copy per kernel position) times the weight matrix of each
    group, a block of groups at a time so that the columns stay in cache: (N, G, M/G, L)."""
    n, c = x.shape[:2]
    cg, q, kk, fold = c // group, math.prod(out), len(ph.windows), int(wts.bias is not None)
    phases = ph.fill(x)
    mat = wts.mat.reshape(group, -1, wts.mat.shape[-1])
    y = np.empty((n, group, mat.shape[1], q), x.dtype)
    row_bytes = (kk * cg + fold) * q * x.dtype.itemsize
    if group == 1 and cg > 1 and row_bytes > _BLOCK and len(out) >= 1 and out[0] > 1:
        return _im2col_tiled(phases, ph, mat[0], y, cg, kk, fold, out)
    block = max(1, min(group, _BLOCK // row_bytes))
    for i, g0 in itertools.product(range(n), range(0, group, block)):
        gb = min(block, group - g0)
        src = phases[:, i, g0 * cg: (g0 + gb) * cg]
        if cg == 1:  # depthwise: (K [+1], groups, L)
            cols = _scratch(1, (kk + fold, gb, *out), x.dtype)
            for t, (p, window) in enumerate(ph.windows):
                cols[t] = src[p][window]
            mats = cols.reshape(kk + fold, gb, q).transpose(1, 0, 2)
        else:
            cols = _scratch(1, (gb, kk * cg + fold, *out), x.dtype)
            for t, (p, window) in enumerate(ph.windows):
                cols[:, t * cg: (t + 1) * cg] = src[p][window].reshape(gb, cg, *out)
            mats = cols.reshape(gb, -1, q)
        if fold:
            mats[:, -1] = 1
        if gb == 1:
            np.matmul(mat[g0], mats[0], out=y[i, g0])
        else:
            np.matmul(mat[g0: g0 + gb], mats, out=y[i, g0: g0 + gb])
    return y


def _im2col_tiled(phases: Array, ph: _Phases, mat: Array, y: Array, cg: int, kk: int, fold: int,
                  out: Ints) -> Array:
    """One group, large output: im2col a band of output rows at a time, so the columns stay in
    cache instead of materialising the whole (K*C, H*W) matrix (88 MB on rapidocr det's 3x3s)."""
    per_row = math.prod(out[1:])
    rows = max(1, _BLOCK // ((kk * cg + fold) * per_row * y.dtype.itemsize))
    for i in range(y.shape[0]):
        src = phases[:, i]
        for r0 in range(0, out[0], rows):
            r1 = min(out[0], r0 + rows)
            cols = _scratch(1, (kk * cg + fold, r1 - r0, *out[1:]), y.dtype)
            for t, (p, window) in enumerate(ph.windows):
                first = window[1]
                band = (Ellipsis, slice(first.start + r0, first.start + r1), *window[2:])
                cols[t * cg: (t + 1) * cg] = src[p][band]
            if fold:
                cols[-1] = 1
            np.matmul(mat, cols.reshape(kk * cg + fold, -1), out=y[i, 0, :, r0 * per_row: r1 * per_row])
    return y


def _matmul(mat: Array, cols: Array, group: int) -> Array:
    """(G, Mg, Cg*K) weights times (N, G, Cg*K, L) columns -> (N, G, Mg, L), a fresh array."""
    if group == 1:
        cols = cols[:, 0]
        if cols.shape[0] == 1:
            return (mat @ cols[0])[None]
    return np.matmul(mat, cols)


# -- ConvTranspose -------------------------------------------------------------------------------

def _transpose_geometry(mode: str, sp: Ints, k: Ints, s: Ints, d: Ints, pads: Ints,
                        out_pad: Ints, out_shape: Ints | None) -> tuple[Ints, Ints]:
    """(pads_begin, output spatial shape) of a ConvTranspose; output index o is position
    o + pads_begin of the full (uncropped) result."""
    n = len(sp)
    full = tuple(si * (i - 1) + op + (ki - 1) * di + 1
                 for si, i, op, ki, di in zip(s, sp, out_pad, k, d))
    if out_shape is not None or mode in ("SAME_UPPER", "SAME_LOWER"):
        out = out_shape if out_shape is not None else tuple(i * si for i, si in zip(sp, s))
        begin = tuple(_split(max(0, f - o), mode == "SAME_UPPER")[0] for f, o in zip(full, out))
        return begin, out
    begin, end = ((0,) * n, (0,) * n) if mode == "VALID" else (pads[:n], pads[n:])
    return begin, tuple(f - b - e for f, b, e in zip(full, begin, end))


def _transpose_layout(mode: str, attrs: dict[str, Any], xshape: Ints,
                      wshape: Ints) -> tuple[Ints, list[Index], Index | None, bool]:
    """ConvTranspose's layout for one input and weight shape: the buffer's size, each kernel
    position's window in it, the crop to the output (None: the whole buffer), and whether the
    windows tile the buffer."""
    nsp = len(xshape) - 2
    if nsp < 1 or len(wshape) != nsp + 2 or xshape[1] != wshape[0]:
        raise ValueError(f"ConvTranspose: input {xshape} does not match weights {wshape}")
    k, sp = tuple(wshape[2:]), tuple(xshape[2:])
    s, d = _ints(attrs["strides"], nsp, 1, "strides"), _ints(attrs["dilations"], nsp, 1, "dilations")
    out_pad = _ints(attrs["output_padding"], nsp, 0, "output_padding")
    shape = attrs["output_shape"]
    out_shape = tuple(int(v) for v in shape[-nsp:]) if shape is not None and len(shape) else None
    begin, out = _transpose_geometry(mode, sp, k, s, d, _ints(attrs["pads"], 2 * nsp, 0, "pads"),
                                     out_pad, out_shape)
    if any(o <= 0 for o in out):
        raise ValueError(f"ConvTranspose: empty output {out}")
    full = tuple(si * (i - 1) + (ki - 1) * di + 1 for si, i, ki, di in zip(s, sp, k, d))
    lo = tuple(min(0, b) for b in begin)
    size = tuple(max(f, b + o) - lw for f, b, o, lw in zip(full, begin, out, lo))
    crop: Index | None = (Ellipsis, *(slice(b - lw, b - lw + o) for b, lw, o in zip(begin, lo, out)))
    if size == out:
        crop = None
    # each kernel position adds its (N, M, *input) block onto a strided window of the buffer;
    # with stride == kernel (no dilation) the windows tile it: plain copies, no zeroing
    tiled = d == (1,) * nsp and s == k and size == full and not any(lo)
    return size, _windows(k, d, s, sp, lo), crop, tiled


@register("ConvTranspose", 1, 11, 22)
def conv_transpose(node: Node) -> Kernel:
    group = int(node.attr("group", 1))
    mode = _auto_pad(node)
    attrs = {a: node.attr(a) for a in ("strides", "dilations", "pads", "output_padding", "output_shape")}

    def prepare(w: Array) -> Array:
        if w.shape[0] % group:
            raise ValueError(f"ConvTranspose: {w.shape[0]} input channels do not split into {group} groups")
        wc = np.asarray(w, _compute_dtype(w.dtype)).reshape(group, w.shape[0] // group, -1)
        return np.ascontiguousarray(wc.transpose(0, 2, 1))  # (G, Mg*K, Cg)

    w_const = node.const(1)
    fixed = prepare(w_const) if w_const is not None else None
    geometries: dict[tuple[Ints, Ints], Any] = {}

    def geometry(xshape: Ints, wshape: Ints) -> Any:
        return _transpose_layout(mode, attrs, xshape, wshape)

    def kernel(x: Array, w: Array, b: Array | None = None) -> Array:
        size, windows, crop, tiled = _cached(geometries, (x.shape, w.shape), geometry)
        mat = fixed if fixed is not None else prepare(w)
        n, c, sp, m = x.shape[0], x.shape[1], x.shape[2:], w.shape[1] * group
        xc = x if x.dtype == mat.dtype else x.astype(mat.dtype)
        xg = xc.reshape(n, group, c // group, -1)
        cols = _scratch(1, (n, group, mat.shape[1], xg.shape[-1]), mat.dtype)
        np.matmul(mat, xg, out=cols)
        patches = cols.reshape((n, m, len(windows), *sp))
        buf = (np.empty if tiled else np.zeros)((n, m, *size), mat.dtype)
        for t, window in enumerate(windows):
            if tiled:
                buf[window] = patches[:, :, t]
            else:
                buf[window] += patches[:, :, t]
        if b is not None:
            buf.reshape(n, m, -1)[...] += b.reshape(m, 1).astype(buf.dtype, copy=False)
        y = buf if crop is None else np.ascontiguousarray(buf[crop])
        return y.astype(x.dtype, copy=False)

    return kernel
