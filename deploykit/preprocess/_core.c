/* deploykit's preprocessing core: one pass from a uint8 image to a model's input tensor.
 *
 * resample(): resize (cv2-exact bilinear, or Pillow's antialiased bilinear), keep a window of
 * the resized image (a centre crop computes only the pixels inside it), place it in the output
 * with constant padding around it (letterbox), map channels (BGR<->RGB, gray, drop alpha),
 * normalise ((v * scale - mean) / std in float32) and write float32 or uint8, NCHW or NHWC.
 * The GIL is released around all pixel work. Portable C; vector paths come later.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define CV_BITS 11          /* OpenCV INTER_RESIZE_COEF_BITS */
#define PIL_BITS 22         /* Pillow PRECISION_BITS for 8-bit images */
#define MAX_SIDE (1 << 20)  /* refuse absurd sizes before allocating */

typedef struct {
    int i0, i1;      /* source indices */
    int w0, w1;      /* fixed-point weights */
} Tap2;

/* cv::resize's taps. Columns clamp the weights at the borders; rows keep the weights and clamp
 * the indices (the vectorised vertical pass rounds each product separately, so it matters). */
static void cv2_taps(int src, int dst, int clamp, Tap2 *taps) {
    double scale = 1.0 / ((double)dst / (double)src);
    for (int o = 0; o < dst; o++) {
        float f = (float)((o + 0.5) * scale - 0.5);
        int i0 = (int)floorf(f);
        f -= (float)i0;
        if (clamp) {
            if (i0 < 0) { f = 0.f; i0 = 0; }
            if (i0 >= src - 1) { f = 0.f; i0 = src - 1; }
        }
        float one = (float)(1 << CV_BITS);
        taps[o].w0 = (int)lrintf((1.f - f) * one);
        taps[o].w1 = (int)lrintf(f * one);
        taps[o].i0 = i0 < 0 ? 0 : (i0 > src - 1 ? src - 1 : i0);
        taps[o].i1 = i0 + 1 < 0 ? 0 : (i0 + 1 > src - 1 ? src - 1 : i0 + 1);
    }
}

typedef struct {
    int ksize;
    int *lo, *n;      /* per output: first source index, tap count */
    int32_t *w;       /* per output: ksize weights */
} TapsN;

static void tapsn_free(TapsN *t) { free(t->lo); free(t->n); free(t->w); }

/* Pillow's taps: a triangle filter widened by the downscale factor, 22-bit weights. */
static int pil_taps(int src, int dst, TapsN *t) {
    double scale = (double)src / (double)dst;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    t->ksize = ksize;
    t->lo = malloc(sizeof(int) * (size_t)dst);
    t->n = malloc(sizeof(int) * (size_t)dst);
    t->w = calloc((size_t)dst * (size_t)ksize, sizeof(int32_t));
    double *k = malloc(sizeof(double) * (size_t)ksize);
    if (!t->lo || !t->n || !t->w || !k) { free(k); tapsn_free(t); return -1; }
    for (int o = 0; o < dst; o++) {
        double center = (o + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > src) hi = src;
        int n = hi - lo;
        if (n > ksize) n = ksize;
        double ww = 0.0;
        for (int j = 0; j < n; j++) {
            double x = (j + lo - center + 0.5) / filterscale;
            if (x < 0) x = -x;
            k[j] = x < 1.0 ? 1.0 - x : 0.0;
            ww += k[j];
        }
        for (int j = 0; j < n; j++) {
            double v = ww != 0.0 ? k[j] / ww : k[j];
            t->w[(size_t)o * ksize + j] = (int32_t)(v < 0 ? -0.5 + v * (1 << PIL_BITS)
                                                          : 0.5 + v * (1 << PIL_BITS));
        }
        t->lo[o] = lo;
        t->n[o] = n;
    }
    free(k);
    return 0;
}

static inline uint8_t clip8(int64_t v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

typedef struct {
    /* source */
    const uint8_t *src; Py_ssize_t sh, sw, sc, s_row, s_col, s_ch;
    /* output tensor (3-D view) */
    void *out; int out_float, nchw; Py_ssize_t oh, ow, oc;
    /* geometry: resized size, window of it, where the window goes */
    int rh, rw, wy, wx, wh, ww, top, left;
    int mode_pil, swap_rb, pad;
    float scale, mean[3], std[3]; int normalize;
} Job;

static inline int src_channel(const Job *j, int c) {
    if (j->sc == 1) return 0;
    return j->swap_rb && c < 3 ? 2 - c : c;
}

static inline void store(const Job *j, Py_ssize_t y, Py_ssize_t x, int c, int v) {
    if (j->out_float) {
        float f = (float)v * j->scale;
        if (j->normalize) f = (f - j->mean[c]) / j->std[c];
        float *o = (float *)j->out;
        if (j->nchw) o[((size_t)c * j->oh + y) * j->ow + x] = f;
        else o[((size_t)y * j->ow + x) * j->oc + c] = f;
    } else {
        uint8_t *o = (uint8_t *)j->out;
        if (j->nchw) o[((size_t)c * j->oh + y) * j->ow + x] = (uint8_t)v;
        else o[((size_t)y * j->ow + x) * j->oc + c] = (uint8_t)v;
    }
}

static void fill_padding(const Job *j) {
    for (Py_ssize_t y = 0; y < j->oh; y++) {
        int inside_y = y >= j->top && y < j->top + j->wh;
        for (Py_ssize_t x = 0; x < j->ow; x++) {
            if (inside_y && x >= j->left && x < j->left + j->ww) { x = j->left + j->ww - 1; continue; }
            for (int c = 0; c < j->oc; c++) store(j, y, x, c, j->pad);
        }
    }
}

static inline uint8_t px(const Job *j, Py_ssize_t y, Py_ssize_t x, int c) {
    return j->src[y * j->s_row + x * j->s_col + c * j->s_ch];
}

/* One source row resampled horizontally (weights sum to 2^11), for the window's columns. */
static void cv2_hrow(const Job *j, const Tap2 *xt, int y, int32_t *row) {
    for (int ox = 0; ox < j->ww; ox++) {
        const Tap2 *u = &xt[j->wx + ox];
        for (int c = 0; c < j->oc; c++) {
            int sc = src_channel(j, c);
            row[(size_t)ox * j->oc + c] = px(j, y, u->i0, sc) * u->w0 + px(j, y, u->i1, sc) * u->w1;
        }
    }
}

/* cv2 INTER_LINEAR for the window; returns -1 on allocation failure. */
static int run_cv2(const Job *j) {
    Tap2 *xt = malloc(sizeof(Tap2) * (size_t)j->rw), *yt = malloc(sizeof(Tap2) * (size_t)j->rh);
    int32_t *r0 = malloc(sizeof(int32_t) * (size_t)j->ww * (size_t)j->oc);
    int32_t *r1 = malloc(sizeof(int32_t) * (size_t)j->ww * (size_t)j->oc);
    if (!xt || !yt || !r0 || !r1) { free(xt); free(yt); free(r0); free(r1); return -1; }
    cv2_taps((int)j->sw, j->rw, 1, xt);
    cv2_taps((int)j->sh, j->rh, 0, yt);
    int idx[2] = {-1, -1};
    int32_t *buf[2] = {r0, r1};
    for (int oy = 0; oy < j->wh; oy++) {
        const Tap2 *t = &yt[j->wy + oy];
        /* keep the two source rows this output row needs in the two buffers, reusing either */
        int s0 = idx[0] == t->i0 ? 0 : idx[1] == t->i0 ? 1 : -1;
        if (s0 < 0) {
            s0 = idx[0] == t->i1 ? 1 : 0;
            cv2_hrow(j, xt, t->i0, buf[s0]);
            idx[s0] = t->i0;
        }
        int s1 = s0;
        if (t->i1 != t->i0) {
            s1 = 1 - s0;
            if (idx[s1] != t->i1) {
                cv2_hrow(j, xt, t->i1, buf[s1]);
                idx[s1] = t->i1;
            }
        }
        const int32_t *a = buf[s0], *b = buf[s1];
        for (int ox = 0; ox < j->ww; ox++) {
            for (int c = 0; c < j->oc; c++) {
                size_t i = (size_t)ox * j->oc + c;
                int32_t v = (((a[i] >> 4) * t->w0) >> 16) + (((b[i] >> 4) * t->w1) >> 16);
                store(j, j->top + oy, j->left + ox, c, clip8((v + 2) >> 2));
            }
        }
    }
    free(xt); free(yt); free(r0); free(r1);
    return 0;
}

/* Pillow BILINEAR for the window: horizontal pass into uint8 rows, then vertical pass. */
static int run_pil(const Job *j) {
    TapsN xt = {0}, yt = {0};
    if (pil_taps((int)j->sw, j->rw, &xt) < 0) return -1;
    if (pil_taps((int)j->sh, j->rh, &yt) < 0) { tapsn_free(&xt); return -1; }
    /* source rows the window needs */
    int first = yt.lo[j->wy], last = 0;
    for (int oy = j->wy; oy < j->wy + j->wh; oy++)
        if (yt.lo[oy] + yt.n[oy] > last) last = yt.lo[oy] + yt.n[oy];
    if (last <= first) last = first + 1;
    size_t rowlen = (size_t)j->ww * (size_t)j->oc;
    uint8_t *tmp = malloc(rowlen * (size_t)(last - first));
    if (!tmp) { tapsn_free(&xt); tapsn_free(&yt); return -1; }
    int horizontal = j->rw != j->sw, vertical = j->rh != j->sh;
    for (int y = first; y < last; y++) {
        uint8_t *row = tmp + (size_t)(y - first) * rowlen;
        for (int ox = 0; ox < j->ww; ox++) {
            int o = j->wx + ox;
            for (int c = 0; c < j->oc; c++) {
                int sc = src_channel(j, c);
                if (!horizontal) { row[(size_t)ox * j->oc + c] = px(j, y, o, sc); continue; }
                int64_t acc = (int64_t)1 << (PIL_BITS - 1);
                const int32_t *w = &xt.w[(size_t)o * xt.ksize];
                for (int k = 0; k < xt.n[o]; k++) acc += (int64_t)px(j, y, xt.lo[o] + k, sc) * w[k];
                row[(size_t)ox * j->oc + c] = clip8(acc >> PIL_BITS);
            }
        }
    }
    for (int oy = 0; oy < j->wh; oy++) {
        int o = j->wy + oy;
        for (int ox = 0; ox < j->ww; ox++) {
            for (int c = 0; c < j->oc; c++) {
                size_t i = (size_t)ox * j->oc + c;
                int v;
                if (!vertical) {
                    v = tmp[(size_t)(o - first) * rowlen + i];
                } else {
                    int64_t acc = (int64_t)1 << (PIL_BITS - 1);
                    const int32_t *w = &yt.w[(size_t)o * yt.ksize];
                    for (int k = 0; k < yt.n[o]; k++)
                        acc += (int64_t)tmp[(size_t)(yt.lo[o] + k - first) * rowlen + i] * w[k];
                    v = clip8(acc >> PIL_BITS);
                }
                store(j, j->top + oy, j->left + ox, c, v);
            }
        }
    }
    free(tmp); tapsn_free(&xt); tapsn_free(&yt);
    return 0;
}

static PyObject *resample(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *names[] = {"src", "out", "resized", "window", "offset", "mode", "layout",
                            "swap_rb", "pad", "scale", "mean", "std", NULL};
    PyObject *src_obj, *out_obj, *mean_obj = Py_None, *std_obj = Py_None;
    int rh, rw, wy, wx, wh, ww, top, left, pad = 0, swap_rb = 0;
    const char *mode, *layout;
    float scale = 1.f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO(ii)(iiii)(ii)ss|pifOO", names, &src_obj, &out_obj,
                                     &rh, &rw, &wy, &wx, &wh, &ww, &top, &left, &mode, &layout,
                                     &swap_rb, &pad, &scale, &mean_obj, &std_obj))
        return NULL;
    Job j;
    memset(&j, 0, sizeof j);
    Py_buffer sb, ob;
    if (PyObject_GetBuffer(src_obj, &sb, PyBUF_STRIDED_RO | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(out_obj, &ob, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&sb);
        return NULL;
    }
    const char *err = NULL;
    if (strcmp(sb.format, "B") != 0 || (sb.ndim != 2 && sb.ndim != 3)) err = "src must be a uint8 (H, W[, C]) image";
    else if (sb.ndim == 3 && sb.shape[2] != 1 && sb.shape[2] != 3 && sb.shape[2] != 4) err = "src must have 1, 3 or 4 channels";
    else if (ob.ndim != 3) err = "out must be 3-D";
    else if (strcmp(ob.format, "f") != 0 && strcmp(ob.format, "B") != 0) err = "out must be float32 or uint8";
    if (!err) {
        for (int i = 0; i < sb.ndim; i++) if (sb.strides[i] < 0) err = "src must not have negative strides";
        if (sb.shape[0] < 1 || sb.shape[1] < 1) err = "src is empty";
        if (sb.shape[0] > MAX_SIDE || sb.shape[1] > MAX_SIDE || rh > MAX_SIDE || rw > MAX_SIDE) err = "size too large";
    }
    if (!err) {
        j.src = sb.buf; j.sh = sb.shape[0]; j.sw = sb.shape[1]; j.sc = sb.ndim == 3 ? sb.shape[2] : 1;
        j.s_row = sb.strides[0]; j.s_col = sb.strides[1]; j.s_ch = sb.ndim == 3 ? sb.strides[2] : 0;
        j.nchw = strcmp(layout, "NCHW") == 0;
        if (!j.nchw && strcmp(layout, "NHWC") != 0) err = "layout must be NCHW or NHWC";
        j.out = ob.buf; j.out_float = strcmp(ob.format, "f") == 0;
        j.oc = j.nchw ? ob.shape[0] : ob.shape[2];
        j.oh = j.nchw ? ob.shape[1] : ob.shape[0];
        j.ow = j.nchw ? ob.shape[2] : ob.shape[1];
        j.mode_pil = strcmp(mode, "pil") == 0;
        if (!j.mode_pil && strcmp(mode, "cv2") != 0) err = "mode must be cv2 or pil";
        j.rh = rh; j.rw = rw; j.wy = wy; j.wx = wx; j.wh = wh; j.ww = ww; j.top = top; j.left = left;
        j.swap_rb = swap_rb; j.pad = pad < 0 ? 0 : pad > 255 ? 255 : pad; j.scale = scale;
    }
    if (!err && (j.oc != 1 && j.oc != 3)) err = "out must have 1 or 3 channels";
    if (!err && j.oc == 3 && j.sc == 1) err = NULL;  /* gray -> 3 identical channels */
    if (!err && j.oc == 1 && j.sc != 1) err = "a 1-channel output needs a 1-channel image";
    if (!err && (rh < 1 || rw < 1 || wh < 1 || ww < 1 || wy < 0 || wx < 0 || wy + wh > rh ||
                 wx + ww > rw || top < 0 || left < 0 || top + wh > j.oh || left + ww > j.ow))
        err = "window does not fit the resized image or the output";
    if (!err && (mean_obj != Py_None || std_obj != Py_None)) {
        if (!j.out_float) err = "mean/std need a float output";
        j.normalize = 1;
        for (int c = 0; c < 3 && !err; c++) { j.mean[c] = 0.f; j.std[c] = 1.f; }
        PyObject *objs[2] = {mean_obj, std_obj};
        float *dst[2] = {j.mean, j.std};
        for (int k = 0; k < 2 && !err; k++) {
            if (objs[k] == Py_None) continue;
            if (!PyTuple_Check(objs[k]) || PyTuple_GET_SIZE(objs[k]) != 3) { err = "mean/std must be 3-tuples"; break; }
            for (int c = 0; c < 3; c++) {
                double v = PyFloat_AsDouble(PyTuple_GET_ITEM(objs[k], c));
                if (v == -1.0 && PyErr_Occurred()) { PyBuffer_Release(&sb); PyBuffer_Release(&ob); return NULL; }
                dst[k][c] = (float)v;
            }
        }
        for (int c = 0; c < 3 && !err; c++) if (j.std[c] == 0.f) err = "std must not be 0";
    }
    if (err) {
        PyBuffer_Release(&sb); PyBuffer_Release(&ob);
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    fill_padding(&j);
    rc = j.mode_pil ? run_pil(&j) : run_cv2(&j);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&sb); PyBuffer_Release(&ob);
    if (rc < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"resample", (PyCFunction)(void (*)(void))resample, METH_VARARGS | METH_KEYWORDS,
     "resample(src, out, resized, window, offset, mode, layout, swap_rb=False, pad=0, scale=1.0, "
     "mean=None, std=None): resize src to `resized`, write the `window` of it at `offset` in out."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_core", "deploykit's C preprocessing core.", 0, methods, slots,
    NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&module); }
