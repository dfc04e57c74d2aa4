/* The instruction-set targets the kernels are built for, best first; one is chosen at import. */
#include <string.h>

#include "core.h"

#ifdef DK_X86_DISPATCH
static int has_avx2_fma(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

static const Target targets[] = {
#ifdef DK_X86_DISPATCH
    {"avx2", has_avx2_fma, dk_resample_avx2},
#endif
    {"generic", NULL, dk_resample_generic},  /* last: runs anywhere */
};

#define N_TARGETS (sizeof targets / sizeof targets[0])

static int runs_here(const Target *t) { return t->supported == NULL || t->supported(); }

const Target *dk_choose_target(const char *forced) {
    for (size_t i = 0; forced && i < N_TARGETS; i++)
        if (strcmp(forced, targets[i].name) == 0 && runs_here(&targets[i])) return &targets[i];
    for (size_t i = 0; i < N_TARGETS; i++)
        if (runs_here(&targets[i])) return &targets[i];
    return &targets[N_TARGETS - 1];
}
