/* deploykit's preprocessing core, its Python binding: one pass from a uint8 image to a model's
 * input tensor.
 *
 * resample(): resize (cv2-exact bilinear, or Pillow's antialiased bilinear), keep a window of
 * the resized image (a centre crop computes only the pixels inside it), place it in the output
 * with constant padding around it (letterbox), map channels (BGR<->RGB, gray, drop alpha),
 * normalise ((v * scale - mean) / std in float32) and write float32 or uint8, NCHW or NHWC.
 *
 * This file only turns arguments into a Job (core.h) and runs the chosen target's kernel with
 * the GIL released. The steps every op shares (source image, output tensor, normalisation, the
 * run) are helpers here; an op adds its own argument parsing, its entry point in `methods`, and
 * its kernel to the Target table (core.h, dispatch.c).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "core.h"

static const Target *target;  /* chosen once, at import */

/* -- what every op shares ---------------------------------------------------------------------- */

/* The source image (uint8, read-only, any strides) and the output tensor (C-contiguous,
 * writable) of one call; 0, or -1 with a Python error set. */
static int open_buffers(PyObject *src, PyObject *out, Py_buffer *sb, Py_buffer *ob) {
    if (PyObject_GetBuffer(src, sb, PyBUF_STRIDED_RO | PyBUF_FORMAT) < 0) return -1;
    if (PyObject_GetBuffer(out, ob, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(sb);
        return -1;
    }
    return 0;
}

static void close_buffers(Py_buffer *sb, Py_buffer *ob) {
    PyBuffer_Release(sb);
    PyBuffer_Release(ob);
}

/* The source image into j; NULL, or what is wrong with it. */
static const char *read_source(const Py_buffer *sb, Job *j) {
    if (strcmp(sb->format, "B") != 0 || (sb->ndim != 2 && sb->ndim != 3))
        return "src must be a uint8 (H, W[, C]) image";
    if (sb->ndim == 3 && sb->shape[2] != 1 && sb->shape[2] != 3 && sb->shape[2] != 4)
        return "src must have 1, 3 or 4 channels";
    for (int i = 0; i < sb->ndim; i++)
        if (sb->strides[i] < 0) return "src must not have negative strides";
    if (sb->shape[0] < 1 || sb->shape[1] < 1) return "src is empty";
    if (sb->shape[0] > MAX_SIDE || sb->shape[1] > MAX_SIDE) return "size too large";
    j->src = sb->buf; j->sh = sb->shape[0]; j->sw = sb->shape[1];
    j->sc = sb->ndim == 3 ? sb->shape[2] : 1;
    j->s_row = sb->strides[0]; j->s_col = sb->strides[1]; j->s_ch = sb->ndim == 3 ? sb->strides[2] : 0;
    return NULL;
}

/* The output tensor (a 3-D NCHW or NHWC view) into j, and its channels against the source's. */
static const char *read_output(const Py_buffer *ob, const char *layout, Job *j) {
    if (ob->ndim != 3) return "out must be 3-D";
    if (strcmp(ob->format, "f") != 0 && strcmp(ob->format, "B") != 0 && strcmp(ob->format, "e") != 0)
        return "out must be float32, float16 or uint8";
    j->nchw = strcmp(layout, "NCHW") == 0;
    if (!j->nchw && strcmp(layout, "NHWC") != 0) return "layout must be NCHW or NHWC";
    j->out = ob->buf;
    j->kind = strcmp(ob->format, "f") == 0 ? OUT_F32 : strcmp(ob->format, "e") == 0 ? OUT_F16 : OUT_U8;
    j->oc = j->nchw ? ob->shape[0] : ob->shape[2];
    j->oh = j->nchw ? ob->shape[1] : ob->shape[0];
    j->ow = j->nchw ? ob->shape[2] : ob->shape[1];
    if (j->oc != 1 && j->oc != 3) return "out must have 1 or 3 channels";
    /* a gray image feeds 3 identical channels; the other way round is refused */
    if (j->oc == 1 && j->sc != 1) return "a 1-channel output needs a 1-channel image";
    return NULL;
}

/* scale, and mean/std (None or 3-tuples) into j. *err says what is wrong; -1: a Python error
 * is set (a mean/std item that is not a number). */
static int read_normalize(float scale, PyObject *mean, PyObject *std, Job *j, const char **err) {
    j->scale = scale;
    if (mean == Py_None && std == Py_None) return 0;
    if (j->kind == OUT_U8) { *err = "mean/std need a float output"; return 0; }
    j->normalize = 1;
    for (int c = 0; c < 3; c++) { j->mean[c] = 0.f; j->std[c] = 1.f; }
    PyObject *objs[2] = {mean, std};
    float *dst[2] = {j->mean, j->std};
    for (int k = 0; k < 2; k++) {
        if (objs[k] == Py_None) continue;
        if (!PyTuple_Check(objs[k]) || PyTuple_GET_SIZE(objs[k]) != 3) {
            *err = "mean/std must be 3-tuples";
            return 0;
        }
        for (int c = 0; c < 3; c++) {
            double v = PyFloat_AsDouble(PyTuple_GET_ITEM(objs[k], c));
            if (v == -1.0 && PyErr_Occurred()) return -1;
            dst[k][c] = (float)v;
        }
    }
    for (int c = 0; c < 3; c++)
        if (j->std[c] == 0.f) { *err = "std must not be 0"; return 0; }
    return 0;
}

/* The kernel on a checked job, with the GIL released; releases the buffers. */
static PyObject *run_job(int (*kernel)(const Job *), Job *j, Py_buffer *sb, Py_buffer *ob) {
    int rc;
    Py_BEGIN_ALLOW_THREADS
    dk_prepare_output(j);
    rc = kernel(j);
    Py_END_ALLOW_THREADS
    close_buffers(sb, ob);
    if (rc < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* -- resample -------------------------------------------------------------------------------- */

/* The resize, the window of it and where the window goes, into j. */
static const char *read_geometry(const int g[8], const char *mode, int pad, int swap_rb, Job *j) {
    j->mode_pil = strcmp(mode, "pil") == 0;
    if (!j->mode_pil && strcmp(mode, "cv2") != 0) return "mode must be cv2 or pil";
    /* every value within 0..MAX_SIDE first, so that the sums below cannot overflow */
    for (int i = 0; i < 8; i++)
        if (g[i] < 0 || g[i] > MAX_SIDE) return "window does not fit the resized image or the output";
    int rh = g[0], rw = g[1], wy = g[2], wx = g[3], wh = g[4], ww = g[5], top = g[6], left = g[7];
    if (rh < 1 || rw < 1 || wh < 1 || ww < 1 || wy + wh > rh || wx + ww > rw ||
        top + wh > j->oh || left + ww > j->ow)
        return "window does not fit the resized image or the output";
    j->rh = rh; j->rw = rw; j->wy = wy; j->wx = wx; j->wh = wh; j->ww = ww; j->top = top; j->left = left;
    j->swap_rb = swap_rb;
    j->pad = pad < 0 ? 0 : pad > 255 ? 255 : pad;
    return NULL;
}

static PyObject *resample(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *names[] = {"src", "out", "resized", "window", "offset", "mode", "layout",
                            "swap_rb", "pad", "scale", "mean", "std", NULL};
    PyObject *src_obj, *out_obj, *mean_obj = Py_None, *std_obj = Py_None;
    int g[8], pad = 0, swap_rb = 0;  /* g: rh, rw, wy, wx, wh, ww, top, left */
    const char *mode, *layout;
    float scale = 1.f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO(ii)(iiii)(ii)ss|pifOO", names, &src_obj, &out_obj,
                                     &g[0], &g[1], &g[2], &g[3], &g[4], &g[5], &g[6], &g[7], &mode,
                                     &layout, &swap_rb, &pad, &scale, &mean_obj, &std_obj))
        return NULL;
    Job j;
    memset(&j, 0, sizeof j);
    Py_buffer sb, ob;
    if (open_buffers(src_obj, out_obj, &sb, &ob) < 0) return NULL;
    const char *err = read_source(&sb, &j);
    if (!err && (g[0] > MAX_SIDE || g[1] > MAX_SIDE)) err = "size too large";
    if (!err) err = read_output(&ob, layout, &j);
    if (!err) err = read_geometry(g, mode, pad, swap_rb, &j);
    if (!err && read_normalize(scale, mean_obj, std_obj, &j, &err) < 0) {
        close_buffers(&sb, &ob);
        return NULL;
    }
    if (err) {
        close_buffers(&sb, &ob);
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    return run_job(target->resample, &j, &sb, &ob);
}

/* -- the module ------------------------------------------------------------------------------ */

/* The entry points: one per op. */
static PyMethodDef methods[] = {
    {"resample", (PyCFunction)(void (*)(void))resample, METH_VARARGS | METH_KEYWORDS,
     "resample(src, out, resized, window, offset, mode, layout, swap_rb=False, pad=0, scale=1.0, "
     "mean=None, std=None): resize src to `resized`, write the `window` of it at `offset` in out."},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *m) {
    /* DEPLOYKIT_SIMD=generic forces the portable build (deploykit/settings.py) */
    target = dk_choose_target(getenv("DEPLOYKIT_SIMD"));
    return PyModule_AddStringConstant(m, "SIMD", target->name);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
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
