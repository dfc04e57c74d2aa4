/* deploykit's preprocessing core: what the binding, the kernels and the dispatch share.
 *
 * Layout (see docs/preprocess.md):
 *   _core.c          the Python binding: arguments -> a Job, the table of entry points, module init
 *   dispatch.c       the table of instruction-set targets, one chosen at import
 *   output.c/.h      the output stage every op ends with: value tables, row writer, padding
 *   resample.h       the resample op's taps and scalar algorithm (cv2 and Pillow rules), plain C,
 *                    written once and compiled per target with that target's vector kernels as hooks
 *   resample_generic.c  its portable build
 *   resample_avx2.c     its AVX2 kernels and its AVX2 build
 * Plain C (no Python.h) everywhere but _core.c.
 */
#ifndef DK_CORE_H
#define DK_CORE_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define HOT static inline __attribute__((always_inline))
#else
#define HOT static inline
#endif

/* x86-64 with GCC or Clang: an AVX2+FMA build of the kernels besides the portable one, chosen at
 * import. DK_PORTABLE (setup.py's DEPLOYKIT_PORTABLE=1) leaves it out. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(DK_PORTABLE)
#define DK_X86_DISPATCH 1
#endif

#define CV_BITS 11          /* OpenCV INTER_RESIZE_COEF_BITS */
#define PIL_BITS 22         /* Pillow PRECISION_BITS for 8-bit images */
#define MAX_SIDE (1 << 20)  /* refuse absurd sizes before allocating */

/* Everything declared here is internal to the extension: called directly, not through the PLT. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

enum { OUT_U8 = 0, OUT_F32 = 1, OUT_F16 = 2 };

/* One call's work, filled by the binding (sizes in elements, strides in bytes, as numpy's). */
typedef struct {
    /* source image */
    const uint8_t *src; ptrdiff_t sh, sw, sc, s_row, s_col, s_ch;
    /* output tensor (3-D view) */
    void *out; int kind, nchw; ptrdiff_t oh, ow, oc;   /* kind: OUT_U8 / OUT_F32 / OUT_F16 */
    /* resample geometry: resized size, window of it, where the window goes */
    int rh, rw, wy, wx, wh, ww, top, left;
    int mode_pil, swap_rb, pad;
    float scale, mean[3], std[3]; int normalize;
    /* derived once per call by dk_prepare_output */
    ptrdiff_t cmap[3];       /* byte offset of the source channel feeding output channel c */
    float lut[3][256];       /* float output value of pixel value v in channel c */
    uint16_t lut16[3][256];  /* the same values as IEEE half-precision bits */
} Job;

/* The output stage's channel map and value tables (output.c). */
void dk_prepare_output(Job *j);

/* -- the resample op ------------------------------------------------------------------------- */

typedef struct {
    int i0, i1;      /* source indices */
    int w0, w1;      /* fixed-point weights */
} Tap2;

typedef struct {
    int ksize;
    int *lo, *n;      /* per output: first source index, tap count */
    int32_t *w;       /* per output: ksize weights */
} TapsN;


/* A vector horizontal pass set up for one call: it computes window pixels [0, n) of every row (n a
 * multiple of 8) and the scalar loop the rest. `tab` is malloc'd (freed by the driver). */
typedef struct {
    int n;               /* pixels the vector pass covers; 0: none */
    int ww;              /* pixels in a row (the planes' stride) */
    int pairs;           /* Pillow mode: tap pairs per pixel */
    int32_t *tab;        /* per pixel: source byte offsets and packed weights */
    int8_t masks[3][32]; /* byte shuffles laying out each output channel */
} HPass;

/* What a target's vector kernels offer resample's scalar driver (resample.h). Each does a prefix
 * of its row and returns how much (the scalar loop does the rest); a NULL hook: none. */
typedef struct {
    void (*cv2_hplan)(const Job *j, const Tap2 *xt, const ptrdiff_t *xoff, HPass *h);
    void (*cv2_hrow)(const HPass *h, const uint8_t *base, int32_t *row);
    size_t (*cv2_vrow)(const int32_t *a, const int32_t *b, int32_t b0, int32_t b1, uint8_t *row,
                       size_t n);
    /* fused with the float32 NCHW output stage: the window columns done in every plane */
    int (*cv2_vrow_f32)(const Job *j, const int32_t *a, const int32_t *b, int32_t b0, int32_t b1,
                        ptrdiff_t y);
    void (*pil_hplan)(const Job *j, const TapsN *xt, HPass *h);
    void (*pil_hrow)(const HPass *h, const uint8_t *base, uint8_t *dst);
    size_t (*pil_vrow)(const uint8_t *const *srcs, const int32_t *w, int taps, uint8_t *row,
                       size_t n);
} ResampleVec;

/* resample for each target: 0, or -1 when out of memory. */
int dk_resample_generic(const Job *j);
#ifdef DK_X86_DISPATCH
int dk_resample_avx2(const Job *j);
#endif

/* -- dispatch -------------------------------------------------------------------------------- */

/* One instruction-set target: every op's kernel built for it. A new op adds its field here, its
 * kernel to each target in dispatch.c, and its entry point to _core.c's method table. */
typedef struct {
    const char *name;               /* "avx2", "generic": _core.SIMD */
    int (*supported)(void);         /* can this CPU run it (NULL: any) */
    int (*resample)(const Job *j);
} Target;

/* The first target of the table this CPU runs, or the one named `forced` (DEPLOYKIT_SIMD) if it
 * runs it. Called once, at import. */
const Target *dk_choose_target(const char *forced);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
