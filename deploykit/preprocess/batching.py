"""Many images into one (N, ...) tensor: one image per task on plain worker threads (the core
releases the GIL), each op planned once per image size."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

from ..errors import PreprocessError
from ..hostinfo import usable_cpus
from . import checks, resample
from .ops import Op, find
from .resample import CoreCall


def _images(images: Any) -> Sequence[Any]:
    """``images`` as a sequence: a list or tuple, an (N, H, W[, C]) array, or any other iterable."""
    if isinstance(images, (str, bytes)) or not hasattr(images, "__iter__"):
        raise PreprocessError(f"images: expected a sequence of images (or an (N, H, W[, C]) array), "
                              f"got {type(images).__name__}")
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise PreprocessError(f"images: an array of images must be (N, H, W[, C]), got shape "
                                  f"{images.shape}")
        seq: Sequence[Any] = list(images)
    else:
        seq = images if isinstance(images, Sequence) else list(images)
    if not seq:
        raise PreprocessError("batch: no images")
    return seq


def _settings(entry: Op, kwargs: dict[str, Any]) -> None:
    """The keywords given for a table op: each one it takes, none it needs missing."""
    unknown = sorted(set(kwargs) - set(entry.settings))
    if unknown:
        raise PreprocessError(f"{', '.join(unknown)}: not a setting of {entry.name} (it takes "
                              f"{', '.join(entry.settings)})")
    missing = [k for k in entry.required if k not in kwargs]
    if missing:
        raise PreprocessError(f"{entry.name} needs {' and '.join(missing)}")


def _slots(out: Any, n: int) -> np.ndarray:
    if not isinstance(out, np.ndarray) or out.ndim != 4 or len(out) != n:
        raise PreprocessError(f"out: expected a 4-D array with {n} slots, got "
                              f"{getattr(out, 'shape', type(out).__name__)}")
    return out


def _allocate(n: int, one: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The (n, ...) tensor of n images of shape ``one``, refused before allocating when over the
    byte limit."""
    checks.allocation((n, *one), dtype, "images", f"a batch of {n} images of {one}")
    return np.empty((n, *one), dtype)


def _first_tensor(value: Any) -> np.ndarray:
    """What a user's op returned for the first image: a (1, ...) array, or a tuple starting with one."""
    first = value[0] if isinstance(value, tuple) and value else value
    if not isinstance(first, np.ndarray) or first.ndim < 1 or len(first) != 1:
        raise PreprocessError(f"op: a function must return a (1, ...) array (or a tuple starting with "
                              f"one), got {getattr(first, 'shape', type(first).__name__)}")
    return first


def batch(images: Sequence[Any], op: Callable[..., Any] | str, *, out: np.ndarray | None = None,
          threads: int | None = None, **kwargs: Any) -> np.ndarray:
    """Preprocess ``images`` with ``op`` (letterbox, resize or resize_crop, the function or its
    name; or a function of yours taking ``out=``) into one (N, ...) tensor, one image per task on
    a thread pool (the core releases the GIL)."""
    entry = find(op)
    user_op: Callable[..., Any] | None = None if entry is not None else cast(Callable[..., Any], op)
    n_threads = checks.threads(threads)
    images = _images(images)
    if entry is not None:
        _settings(entry, kwargs)
    n = len(images)
    calls: dict[tuple[int, int], CoreCall] = {}  # planned once per image size
    if out is not None:  # every image straight into its slot of the caller's tensor
        result = _slots(out, n)
    elif entry is not None:  # the first image's plan tells the shape
        img = checks.image(images[0])
        first_call = calls[img.shape[:2]] = entry.plan(img.shape[:2], **kwargs)[0]
        resample.check_allocation(first_call)  # one image's tensor alone within the limit
        result = _allocate(n, first_call.shape[1:], first_call.dtype)
    else:  # a user's op: its first result tells the shape
        first = _first_tensor(cast(Callable[..., Any], user_op)(images[0], **kwargs))
        result = _allocate(n, first.shape[1:], first.dtype)
        result[0] = first[0]
    todo = range(1 if user_op is not None and out is None else 0, n)
    workers = max(1, min(n_threads or usable_cpus(), len(todo)))

    def one(i: int) -> None:
        if user_op is not None:  # a user's op: called as it is
            user_op(images[i], out=result[i:i + 1], **kwargs)
            return
        img = checks.image(images[i])
        hw = img.shape[:2]
        call = calls.get(hw)
        if call is None:
            call = calls[hw] = cast(Op, entry).plan(hw, **kwargs)[0]
            if (n, *call.shape[1:]) != result.shape or result.dtype != call.dtype:
                raise PreprocessError(f"out: expected a {call.dtype} array of shape "
                                      f"{(n, *call.shape[1:])}, got {result.shape} {result.dtype}")
        resample.run(img, result[i], call)

    if workers == 1:
        for i in todo:
            one(i)
    else:
        _spread(one, list(todo), workers)
    return result


def _spread(task: Callable[[int], None], items: list[int], workers: int) -> None:
    """Run ``task`` on every item from ``workers`` threads, each taking the next image when it is
    free (one image per task, no fixed split); the first error is raised here, the rest skipped."""
    queue = iter(items)  # next() on a list iterator is atomic under the GIL
    errors: list[BaseException] = []

    def work() -> None:
        for i in queue:
            if errors:
                return
            try:
                task(i)
            except BaseException as e:  # re-raised in the caller's thread
                errors.append(e)
                return

    pool = [threading.Thread(target=work, name=f"deploykit-preprocess-{k}") for k in range(workers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
