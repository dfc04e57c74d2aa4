/* The output stage every op ends with: one row of uint8 planes written into the tensor (float32,
 * float16 or uint8, NCHW or NHWC), and the constant padding around the window. Inlined into each
 * target's build of an op, so the compiler vectorises these loops for that target. */
#ifndef DK_OUTPUT_H
#define DK_OUTPUT_H

#include "core.h"

/* The output stage for element type T, VALUE(c, v) giving the element for pixel value v. */
#define EMIT(T, VALUE)                                                                   \
    do {                                                                                 \
        T *out_ = (T *)j->out;                                                           \
        if (j->nchw) {                                                                   \
            for (ptrdiff_t c = 0; c < oc; c++) {                                         \
                T *o = out_ + ((size_t)c * j->oh + y) * j->ow + j->left;                 \
                const uint8_t *r_ = row + c * ww;                                        \
                for (ptrdiff_t x = 0; x < ww; x++) { int v = r_[x]; o[x] = VALUE; }      \
            }                                                                            \
        } else {                                                                         \
            T *o = out_ + ((size_t)y * j->ow + j->left) * oc;                            \
            for (ptrdiff_t x = 0; x < ww; x++)                                           \
                for (ptrdiff_t c = 0; c < oc; c++) { int v = row[c * ww + x]; o[x * oc + c] = VALUE; } \
        }                                                                                \
    } while (0)

/* Write one row of the window (oc planes of ww uint8 values) at output row y. */
HOT void emit_row(const Job *j, ptrdiff_t y, const uint8_t *row) {
    ptrdiff_t ww = j->ww, oc = j->oc;
    if (j->kind == OUT_F32 && j->nchw) {
        /* the same IEEE operations the tables hold, written so that the compiler vectorises
         * them (no FMA contraction: -ffp-contract=off) */
        float *out = (float *)j->out;
        for (ptrdiff_t c = 0; c < oc; c++) {
            float *o = out + ((size_t)c * j->oh + y) * j->ow + j->left;
            const uint8_t *r = row + c * ww;
            float scale = j->scale, mean = j->mean[c], std = j->std[c];
            if (j->normalize)
                for (ptrdiff_t x = 0; x < ww; x++) o[x] = ((float)r[x] * scale - mean) / std;
            else
                for (ptrdiff_t x = 0; x < ww; x++) o[x] = (float)r[x] * scale;
        }
    } else if (j->kind == OUT_F32) EMIT(float, j->lut[c][v]);
    else if (j->kind == OUT_F16) EMIT(uint16_t, j->lut16[c][v]);
    else EMIT(uint8_t, (uint8_t)v);
}

/* Fill output columns [x0, x1) of row y with the padding value: contiguous runs per channel
 * (NCHW) or per pixel (NHWC), so that the compiler turns them into vector stores. */
#define PAD(T, VALUE)                                                                    \
    do {                                                                                 \
        T *out_ = (T *)j->out;                                                           \
        if (j->nchw) {                                                                   \
            for (ptrdiff_t c = 0; c < j->oc; c++) {                                      \
                T v_ = VALUE, *o = out_ + ((size_t)c * j->oh + y) * j->ow;               \
                for (ptrdiff_t x = x0; x < x1; x++) o[x] = v_;                           \
            }                                                                            \
        } else {                                                                         \
            T v3_[3];                                                                    \
            for (ptrdiff_t c = 0; c < j->oc; c++) v3_[c] = VALUE;                        \
            T *o = out_ + (size_t)y * j->ow * j->oc;                                     \
            for (ptrdiff_t x = x0; x < x1; x++)                                          \
                for (ptrdiff_t c = 0; c < j->oc; c++) o[x * j->oc + c] = v3_[c];         \
        }                                                                                \
    } while (0)

HOT void pad_span(const Job *j, ptrdiff_t y, ptrdiff_t x0, ptrdiff_t x1) {
    if (x1 <= x0) return;
    if (j->kind == OUT_F32) PAD(float, j->lut[c][j->pad]);
    else if (j->kind == OUT_F16) PAD(uint16_t, j->lut16[c][j->pad]);
    else PAD(uint8_t, (uint8_t)j->pad);
}

/* Everything outside the window: whole rows above and below it, columns left and right of it. */
HOT void fill_padding(const Job *j) {
    for (ptrdiff_t y = 0; y < j->oh; y++) {
        if (y < j->top || y >= j->top + j->wh) {
            pad_span(j, y, 0, j->ow);
        } else {
            pad_span(j, y, 0, j->left);
            pad_span(j, y, j->left + j->ww, j->ow);
        }
    }
}

#endif
