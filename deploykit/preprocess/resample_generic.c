/* The resample op's portable build: resample.h's scalar algorithm with no vector kernels (SSE2 on
 * x86-64, NEON on aarch64: whatever the compiler makes of it for the baseline instruction set). */
#include "resample.h"

static const ResampleVec no_vector_kernels = {0};

int dk_resample_generic(const Job *j) { return resample_with(j, &no_vector_kernels); }
