"""Native operator implementations, one family per module; importing this registers them all.

The explicit list below is the whole set: add a module here when you add a family.
"""

from . import (  # noqa: F401
    control,
    conv,
    elementwise,
    math,
    normalization,
    pool,
    quantize,
    reduce,
    resize,
    rnn,
    shape,
)
