/* The resample op's algorithm, in plain C: resize (cv2-exact bilinear, or Pillow's antialiased
 * bilinear), keep a window of the resized image (a centre crop computes only the pixels inside
 * it) and hand each of its rows to the output stage, after the padding around it is filled.
 *
 * Written once, compiled once per target: resample_generic.c includes it with no vector kernels
 * (the portable build), resample_avx2.c with its AVX2 kernels as the ResampleVec hooks. Each hook
 * does a prefix of a row; the scalar loops here do the rest, so every path gives the same integers.
 */
#ifndef DK_RESAMPLE_H
#define DK_RESAMPLE_H

#include <math.h>
#include <stdlib.h>

#include "core.h"
#include "output.h"

/* The including build's target attribute (resample_avx2.c: AVX2+FMA), for the steps below that
 * stay out of line: a scalar loop that wants the registers to itself. */
#ifndef RESAMPLE_TARGET
#define RESAMPLE_TARGET
#endif
#if defined(__GNUC__)
#define OUT_OF_LINE static RESAMPLE_TARGET __attribute__((noinline))
#else
#define OUT_OF_LINE static
#endif

/* -- taps: computed once per call, outside the pixel loops ----------------------------------- */
/* (here rather than in a file of their own: the drivers then see that the tables they fill are
 * theirs alone, and keep their pointers in registers across the loops' stores) */

/* cv::resize's taps. Columns clamp the weights at the borders; rows keep the weights and clamp
 * the indices (the vectorised vertical pass rounds each product separately, so it matters). */
static inline void cv2_taps(int src, int dst, int clamp, Tap2 *taps) {
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

static inline void tapsn_free(TapsN *t) { free(t->lo); free(t->n); free(t->w); }

/* Pillow's taps: a triangle filter widened by the downscale factor, 22-bit weights. */
static inline int pil_taps(int src, int dst, TapsN *t) {
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

HOT uint8_t clip8(int64_t v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }
HOT uint8_t clip_u8(int32_t v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* -- cv2 INTER_LINEAR: two taps per axis, horizontal pass into int32 rows, then vertical ------- */

typedef struct {
    Tap2 *xt, *yt;       /* column and row taps of the whole resized image */
    ptrdiff_t *xoff;     /* per window column: byte offsets of its two source pixels (2 x ww) */
    int32_t *buf[2];     /* two horizontally resampled source rows (oc planes of ww) */
    int idx[2];          /* the source row each buffer holds (-1: none yet) */
    uint8_t *row;        /* one output row, oc planes of ww uint8 */
    size_t n;            /* ww * oc */
} Cv2;
/* The vector horizontal pass, if the target has one for this call, is a separate HPass: the
 * kernels get its address, and the state above stays in registers. */

HOT void cv2_end(Cv2 *s, HPass *h) {
    free(s->xt); free(s->yt); free(s->xoff); free(s->buf[0]); free(s->buf[1]); free(s->row);
    free(h->tab);
}

/* Scratch, taps and column offsets for one call; -1 when out of memory. */
HOT int cv2_begin(const Job *j, const ResampleVec *v, Cv2 *s, HPass *h) {
    s->n = (size_t)j->ww * (size_t)j->oc;
    s->xt = malloc(sizeof(Tap2) * (size_t)j->rw);
    s->yt = malloc(sizeof(Tap2) * (size_t)j->rh);
    s->xoff = malloc(sizeof(ptrdiff_t) * 2 * (size_t)j->ww);
    s->buf[0] = malloc(sizeof(int32_t) * s->n);
    s->buf[1] = malloc(sizeof(int32_t) * s->n);
    s->row = malloc(s->n);
    s->idx[0] = s->idx[1] = -1;
    *h = (HPass){0};
    if (!s->xt || !s->yt || !s->xoff || !s->buf[0] || !s->buf[1] || !s->row) {
        cv2_end(s, h);
        return -1;
    }
    cv2_taps((int)j->sw, j->rw, 1, s->xt);
    cv2_taps((int)j->sh, j->rh, 0, s->yt);
    for (int ox = 0; ox < j->ww; ox++) {
        s->xoff[ox] = s->xt[j->wx + ox].i0 * j->s_col;
        s->xoff[j->ww + ox] = s->xt[j->wx + ox].i1 * j->s_col;
    }
    if (v->cv2_hplan) v->cv2_hplan(j, s->xt, s->xoff, h);
    return 0;
}

/* One source row resampled horizontally (weights sum to 2^11), window columns [start, ww). */
OUT_OF_LINE void cv2_hrow(const Job *j, const Cv2 *s, int y, int32_t *row, int start) {
    const uint8_t *base = j->src + (ptrdiff_t)y * j->s_row;
    const Tap2 *taps = s->xt + j->wx;
    const ptrdiff_t *xoff0 = s->xoff, *xoff1 = s->xoff + j->ww;
    int ww = j->ww;
    if (j->oc == 3) {  /* the common case, with the channel offsets in registers */
        ptrdiff_t c0 = j->cmap[0], c1 = j->cmap[1], c2 = j->cmap[2];
        for (int ox = start; ox < ww; ox++) {
            const uint8_t *p0 = base + xoff0[ox], *p1 = base + xoff1[ox];
            int32_t w0 = taps[ox].w0, w1 = taps[ox].w1;
            row[ox] = p0[c0] * w0 + p1[c0] * w1;
            row[ww + ox] = p0[c1] * w0 + p1[c1] * w1;
            row[2 * ww + ox] = p0[c2] * w0 + p1[c2] * w1;
        }
        return;
    }
    ptrdiff_t c0 = j->cmap[0];
    for (int ox = start; ox < ww; ox++)
        row[ox] = base[xoff0[ox] + c0] * taps[ox].w0 + base[xoff1[ox] + c0] * taps[ox].w1;
}

/* Source row y resampled horizontally into dst: the vector prefix, then the scalar rest. */
HOT void cv2_hpass(const Job *j, const ResampleVec *v, const Cv2 *s, const HPass *h, int y,
               int32_t *dst) {
    if (v->cv2_hrow && h->n) v->cv2_hrow(h, j->src + (ptrdiff_t)y * j->s_row, dst);
    cv2_hrow(j, s, y, dst, h->n);
}

/* The two horizontally resampled source rows output row t needs, kept in the two buffers (either
 * is reused when it already holds one of them). */
HOT void cv2_fetch(const Job *j, const ResampleVec *v, Cv2 *s, const HPass *h, const Tap2 *t,
                   const int32_t **a, const int32_t **b) {
    int s0 = s->idx[0] == t->i0 ? 0 : s->idx[1] == t->i0 ? 1 : -1;
    if (s0 < 0) {
        s0 = s->idx[0] == t->i1 ? 1 : 0;
        cv2_hpass(j, v, s, h, t->i0, s->buf[s0]);
        s->idx[s0] = t->i0;
    }
    int s1 = s0;
    if (t->i1 != t->i0) {
        s1 = 1 - s0;
        if (s->idx[s1] != t->i1) {
            cv2_hpass(j, v, s, h, t->i1, s->buf[s1]);
            s->idx[s1] = t->i1;
        }
    }
    *a = s->buf[s0];
    *b = s->buf[s1];
}

/* Output row y from source rows a and b: ((a >> 4) * b0 >> 16) + ((b >> 4) * b1 >> 16), rounded
 * by 2 bits (OpenCV's vectorised vertical pass), then the output stage. */
HOT void cv2_vpass(const Job *j, const ResampleVec *v, const Cv2 *s, const int32_t *a,
                   const int32_t *b, int32_t b0, int32_t b1, ptrdiff_t y) {
    uint8_t *row = s->row;
    size_t n = s->n, start = 0;
    if (v->cv2_vrow_f32 && j->kind == OUT_F32 && j->nchw) {
        if (v->cv2_vrow_f32(j, a, b, b0, b1, y) == j->ww) return;
        /* the last columns of each plane: the scalar loop below, then the emit (which rewrites
         * the vector columns with the same values) */
    } else if (v->cv2_vrow) {
        start = v->cv2_vrow(a, b, b0, b1, row, n);
    }
    for (size_t i = start; i < n; i++) {
        int32_t x = (((a[i] >> 4) * b0) >> 16) + (((b[i] >> 4) * b1) >> 16);
        row[i] = clip_u8((x + 2) >> 2);
    }
    emit_row(j, y, row);
}

/* cv2 INTER_LINEAR for the window; -1 on allocation failure. */
HOT int run_cv2(const Job *j, const ResampleVec *v) {
    Cv2 s;
    HPass h;
    if (cv2_begin(j, v, &s, &h) < 0) return -1;
    for (int oy = 0; oy < j->wh; oy++) {
        const Tap2 *t = &s.yt[j->wy + oy];
        const int32_t *a, *b;
        cv2_fetch(j, v, &s, &h, t, &a, &b);
        cv2_vpass(j, v, &s, a, b, t->w0, t->w1, j->top + oy);
    }
    cv2_end(&s, &h);
    return 0;
}

/* -- Pillow BILINEAR: a triangle filter widened by the downscale factor, 22-bit weights ------- */

typedef struct {
    TapsN xt, yt;          /* column and row taps of the whole resized image */
    int horizontal, vertical;  /* does that axis change size */
    int ring;              /* rows in tmp */
    size_t rowlen;         /* ww * oc */
    /* horizontally resampled source rows live in a ring of `ring` rows: an output row's taps span
     * at most ksize consecutive rows, and the rows needed only move forward (a few KB, in cache) */
    uint8_t *tmp;
    uint8_t *row;          /* one output row */
    const uint8_t **srcs;  /* an output row's taps: rows of tmp */
} Pil;

HOT void pil_end(Pil *s, HPass *h) {
    free(s->tmp); free(s->row); free(s->srcs); free(h->tab);
    tapsn_free(&s->xt); tapsn_free(&s->yt);
}

/* Taps and scratch for one call; -1 when out of memory. */
HOT int pil_begin(const Job *j, const ResampleVec *v, Pil *s, HPass *h) {
    *s = (Pil){0};
    *h = (HPass){0};
    if (pil_taps((int)j->sw, j->rw, &s->xt) < 0) return -1;
    if (pil_taps((int)j->sh, j->rh, &s->yt) < 0) { tapsn_free(&s->xt); return -1; }
    s->horizontal = j->rw != j->sw;
    s->vertical = j->rh != j->sh;
    s->ring = s->vertical ? s->yt.ksize : 1;
    s->rowlen = (size_t)j->ww * (size_t)j->oc;
    s->tmp = malloc(s->rowlen * (size_t)s->ring);
    s->row = malloc(s->rowlen);
    s->srcs = malloc(sizeof(uint8_t *) * (size_t)s->yt.ksize);
    if (!s->tmp || !s->row || !s->srcs) { pil_end(s, h); return -1; }
    if (v->pil_hplan && s->horizontal) v->pil_hplan(j, &s->xt, h);
    return 0;
}

/* Source row y resampled horizontally into dst (oc planes of ww): the vector prefix, then the
 * scalar rest (a copy of the window's columns when the width does not change). */
HOT void pil_hpass(const Job *j, const ResampleVec *v, const Pil *s, const HPass *h, int y,
               uint8_t *dst) {
    const uint8_t *base = j->src + (ptrdiff_t)y * j->s_row;
    /* locals: the byte stores below could alias any field of *s */
    const int *xlo = s->xt.lo, *xn = s->xt.n;
    const int32_t *xw = s->xt.w;
    ptrdiff_t oc = j->oc, ksize = s->xt.ksize;
    int horizontal = s->horizontal;
    if (v->pil_hrow && h->n) v->pil_hrow(h, base, dst);
    for (int ox = h->n; ox < j->ww; ox++) {
        int x = j->wx + ox;
        if (!horizontal) {
            for (ptrdiff_t c = 0; c < oc; c++) dst[c * j->ww + ox] = base[x * j->s_col + j->cmap[c]];
            continue;
        }
        const int32_t *w = &xw[(size_t)x * ksize];
        const uint8_t *p = base + (ptrdiff_t)xlo[x] * j->s_col;
        /* int32 as Pillow: 255 * 2^22 * (sum of |weights| ~ 1) stays below 2^31 */
        int32_t sum[3] = {1 << (PIL_BITS - 1), 1 << (PIL_BITS - 1), 1 << (PIL_BITS - 1)};
        for (int k = 0; k < xn[x]; k++, p += j->s_col)
            for (ptrdiff_t c = 0; c < oc; c++) sum[c] += p[j->cmap[c]] * w[k];
        for (ptrdiff_t c = 0; c < oc; c++) dst[c * j->ww + ox] = clip8(sum[c] >> PIL_BITS);
    }
}

/* Row o of the resized image, from its rows of the ring, written at output row y. */
HOT void pil_vpass(const Job *j, const ResampleVec *v, Pil *s, int o, ptrdiff_t y) {
    const int32_t *w = &s->yt.w[(size_t)o * s->yt.ksize];
    const uint8_t **srcs = s->srcs;
    uint8_t *row = s->row;
    size_t rowlen = s->rowlen;
    int lo = s->yt.lo[o], taps = s->yt.n[o];
    for (int k = 0; k < taps; k++) srcs[k] = s->tmp + (size_t)((lo + k) % s->ring) * rowlen;
    size_t start = v->pil_vrow ? v->pil_vrow(srcs, w, taps, row, rowlen) : 0;
    for (size_t i = start; i < rowlen; i++) {
        int32_t sum = 1 << (PIL_BITS - 1);
        for (int k = 0; k < taps; k++) sum += srcs[k][i] * w[k];
        row[i] = clip8(sum >> PIL_BITS);
    }
    emit_row(j, y, row);
}

/* Pillow BILINEAR for the window: horizontal pass into the ring, then vertical pass; -1 on
 * allocation failure. */
HOT int run_pil(const Job *j, const ResampleVec *v) {
    Pil s;
    HPass h;
    if (pil_begin(j, v, &s, &h) < 0) return -1;
    int next = 0;  /* the next source row to resample horizontally */
    for (int oy = 0; oy < j->wh; oy++) {
        int o = j->wy + oy;
        int lo = s.vertical ? s.yt.lo[o] : o, hi = s.vertical ? s.yt.lo[o] + s.yt.n[o] : o + 1;
        if (next < lo) next = lo;
        for (; next < hi; next++) pil_hpass(j, v, &s, &h, next, s.tmp + (size_t)(next % s.ring) * s.rowlen);
        if (s.vertical)
            pil_vpass(j, v, &s, o, j->top + oy);
        else
            emit_row(j, j->top + oy, s.tmp);
    }
    pil_end(&s, &h);
    return 0;
}

/* The whole op: padding around the window, then the window in the chosen mode. The job is copied
 * first: a local whose address never escapes, so that the compiler keeps its fields in registers
 * across the loops' byte stores (which could otherwise alias the caller's Job). */
HOT int resample_with(const Job *job, const ResampleVec *v) {
    Job local = *job;
    const Job *j = &local;
    fill_padding(j);
    return j->mode_pil ? run_pil(j, v) : run_cv2(j, v);
}

#endif
