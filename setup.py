"""Builds the C preprocessing core; everything else is declared in pyproject.toml.

DEPLOYKIT_SANITIZE=1 builds it with AddressSanitizer + UBSan (see `make sanitize`);
DEPLOYKIT_PORTABLE=1 builds it without the x86 AVX2 dispatch and with -Werror (see `make portable`).
"""

import os

from setuptools import Extension, setup

# the binding, the dispatch table, the output stage, the resample op (portable and AVX2 builds);
# deploykit/preprocess/core.h describes the layout
SOURCES = [f"deploykit/preprocess/{name}.c"
           for name in ("_core", "dispatch", "output", "resample_generic", "resample_avx2")]
HEADERS = [f"deploykit/preprocess/{name}.h" for name in ("core", "output", "resample")]

# -ffp-contract=off: no fused multiply-adds behind our back — the float outputs must be exactly
# float32(v) * scale, then (x - mean) / std, on every build and instruction set
common = ["-std=c11", "-ffp-contract=off", "-Wall", "-Wextra"]
flags = ["-O3", *common, "-Werror=implicit-function-declaration"]
link: list[str] = []
if os.environ.get("DEPLOYKIT_SANITIZE"):
    flags = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=undefined", *common]
    link = ["-fsanitize=address,undefined"]
if os.environ.get("DEPLOYKIT_PORTABLE"):
    flags = [*flags, "-DDK_PORTABLE=1", "-Werror"]

setup(
    ext_modules=[
        Extension("deploykit.preprocess._core", SOURCES, depends=HEADERS,
                  extra_compile_args=flags, extra_link_args=link),
    ],
)
