"""A declarative, JSON-serialisable preprocessing spec, stored next to a model so that serving
runs exactly what training used.

    spec = Pipeline.letterbox(640)        # or Pipeline.resize_to(224), Pipeline.resize_crop(256, 224, ...)
    spec.save("model.preprocess.json")
    tensor = Pipeline.load("model.preprocess.json")(frame)

Which ops exist, which settings each takes and how they are checked come from ``ops.OPS``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PreprocessError, SpecNotFound
from ..reprs import html_table
from . import checks, ops, resample
from .batching import batch

FORMAT = "deploykit.preprocess/1"


@dataclass(frozen=True)
class Pipeline:
    """One preprocessing recipe: ``op`` (a name in ``ops.OPS``: "letterbox", "resize" or
    "resize_crop") and its settings, each checked (and normalised) when the spec is made."""

    op: str
    size: tuple[int, int] | None = None  # letterbox / resize target
    resize: int | None = None  # resize_crop: shorter side
    crop: tuple[int, int] | None = None  # resize_crop: centre crop
    mode: str = "cv2"
    swap_rb: bool = True
    scale: float = 1 / 255
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    dtype: str = "float32"
    layout: str = "NCHW"
    pad_value: int = 114
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # free-form notes

    @classmethod
    def letterbox(cls, size: ops.Size, **kwargs: Any) -> Pipeline:
        return cls._make({"op": "letterbox", "size": size, **kwargs})

    @classmethod
    def resize_to(cls, size: ops.Size, **kwargs: Any) -> Pipeline:
        """The "resize" op (``resize`` is the field of resize_crop's shorter side)."""
        return cls._make({"op": "resize", "size": size, **kwargs})

    @classmethod
    def resize_crop(cls, resize: int, crop: ops.Size, **kwargs: Any) -> Pipeline:
        kwargs.setdefault("mode", ops.OPS["resize_crop"].mode)
        return cls._make({"op": "resize_crop", "resize": resize, "crop": crop, **kwargs})

    @classmethod
    def _make(cls, data: Mapping[Any, Any]) -> Pipeline:
        """A spec from settings by name; an unknown name is refused (not ignored)."""
        unknown = sorted(str(k) for k in set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise PreprocessError(f"unknown preprocessing setting(s): {', '.join(unknown)}")
        return cls(**data)

    def __post_init__(self) -> None:
        entry = ops.OPS.get(self.op) if isinstance(self.op, str) else None
        if entry is None:
            raise PreprocessError(f"op must be one of {', '.join(map(repr, ops.OPS))}, got {self.op!r}")
        missing = [k for k in entry.required if getattr(self, k) is None]
        if missing:
            raise PreprocessError(f"a {self.op} pipeline needs {' and '.join(missing)}")
        checked: dict[str, Any] = {}
        for name in _OP_FIELDS:
            value, check = getattr(self, name), entry.params.get(name) or _EVERY_SPEC.get(name)
            if check is not None:
                checked[name] = None if value is None else check(value, name)
            elif value is not None:
                raise PreprocessError(f"{name} is not a setting of {self.op} (it takes "
                                      f"{', '.join(entry.params)})")
        checked.update(resample.settings(self.swap_rb, self.scale, self.mean, self.std, self.dtype,
                                         self.layout, self.mode)._asdict())
        if not isinstance(self.extra, dict):
            raise PreprocessError(f"extra must be a dict (free-form notes), got {type(self.extra).__name__}")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def _kwargs(self) -> dict[str, Any]:
        entry = ops.OPS[self.op]
        return {name: getattr(self, name) for name in entry.settings}

    def __call__(self, image: Any, out: np.ndarray | None = None) -> np.ndarray:
        """The tensor for one image (use ``apply`` for the letterbox transform too)."""
        return self.apply(image, out)[0]

    def apply(self, image: Any, out: np.ndarray | None = None
              ) -> tuple[np.ndarray, ops.LetterboxTransform | None]:
        tensor, extra = ops.apply(self.op, image, out, **self._kwargs())
        return tensor, extra

    def batch(self, images: Sequence[Any], *, out: np.ndarray | None = None,
              threads: int | None = None) -> np.ndarray:
        return batch(images, self.op, out=out, threads=threads, **self._kwargs())

    # -- description ---------------------------------------------------------------------
    def _settings(self) -> list[tuple[str, str]]:
        """The settings this pipeline has (unset ones left out), as text."""
        return [(k, f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in self.to_dict().items()
                if k not in ("format", "op")]

    def __repr__(self) -> str:
        return f"Pipeline.{self.op}(" + ", ".join(f"{k}={v}" for k, v in self._settings()) + ")"

    def _repr_html_(self) -> str:
        return html_table(f"deploykit preprocessing: {self.op}", self._settings(), ("setting", "value"))

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()
                if v is not None and not (k == "extra" and not v)}
        return {"format": FORMAT, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pipeline:
        if not isinstance(data, Mapping):
            raise PreprocessError(f"a preprocessing spec is a JSON object, got {type(data).__name__}")
        data = dict(data)
        if data.pop("format", None) != FORMAT:
            raise PreprocessError(f"not a {FORMAT} preprocessing spec")
        return cls._make(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Pipeline:
        if not isinstance(text, (str, bytes, bytearray)):
            raise PreprocessError(f"text: expected the spec's JSON text, got {type(text).__name__}")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, or bytes that are not UTF-8
            raise PreprocessError(f"invalid preprocessing spec: {e}") from e
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the spec atomically (a reader never sees half a file)."""
        target = _path(path)
        partial = target.with_name(target.name + f".part{os.getpid()}")
        try:
            partial.write_text(self.to_json() + "\n")
            os.replace(partial, target)
        except OSError as e:
            raise PreprocessError(f"path: cannot write the preprocessing spec to {target} "
                                  f"({e.strerror or e})") from e

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Pipeline:
        target = _path(path)
        try:
            text = target.read_bytes()
        except FileNotFoundError as e:
            raise SpecNotFound(f"path: no preprocessing spec at {target}") from e
        except OSError as e:
            raise PreprocessError(f"path: cannot read a preprocessing spec from {target} "
                                  f"({e.strerror or e})") from e
        return cls.from_json(text)


#: The fields holding the ops' own settings (every ``Op.params`` name is a field of Pipeline).
_OP_FIELDS = tuple(dict.fromkeys(p for op in ops.OPS.values() for p in op.params))
#: Op settings that every spec carries with a default, ignored by the ops that do not take them.
_EVERY_SPEC = {"pad_value": checks.level}


def _path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise PreprocessError(f"path: expected a file path, got {type(path).__name__}")
    return Path(path)
