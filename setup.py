"""Builds the C preprocessing core; everything else is declared in pyproject.toml.

DEPLOYKIT_SANITIZE=1 builds it with AddressSanitizer + UBSan (see `make sanitize`).
"""

import os

from setuptools import Extension, setup

# -ffp-contract=off: no fused multiply-adds behind our back — the float outputs must be exactly
# float32(v) * scale, then (x - mean) / std, on every build and instruction set
flags = ["-O3", "-std=c11", "-ffp-contract=off", "-Wall", "-Wextra",
         "-Werror=implicit-function-declaration"]
link: list[str] = []
if os.environ.get("DEPLOYKIT_SANITIZE"):
    flags = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=undefined", "-std=c11", "-ffp-contract=off", "-Wall", "-Wextra"]
    link = ["-fsanitize=address,undefined"]

setup(
    ext_modules=[
        Extension("deploykit.preprocess._core", ["deploykit/preprocess/_core.c"],
                  extra_compile_args=flags, extra_link_args=link),
    ],
)
