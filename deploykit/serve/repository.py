"""The model repository: ``repo/<model>/<version>/`` folders (or one model file) read into plain data.

Pure data: nothing here loads an Engine or speaks HTTP. A version folder holds the artifacts of one
model (``.onnx`` / ``.tflite`` files, or one ``.json`` manifest naming them, as ``dk.load`` takes);
``repo/<model>/config.json`` optionally says how to serve it (schema: ``ModelConfig``, every field
checked, unknown keys refused). Nothing outside the repository root is ever read: absolute paths,
``..`` and symlinks that resolve outside it are refused; hidden entries are skipped with a note.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..arguments import check_number, check_threads
from ..artifacts import is_several, read_manifest
from ..bundle.manifest import MANIFEST as BUNDLE_MANIFEST
from ..errors import DeployKitError, InvalidArgument, PreprocessError, UnknownBackend, first_line
from ..preprocess import Pipeline
from ..preprocess.pipeline import FORMAT as PIPELINE_FORMAT
from ..selection import check_backend_name

#: Model and label names: what may appear in a URL path segment, never ``..`` nor a hidden name.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: Artifact files a version folder may hold (a ``.json`` file there is a manifest).
ARTIFACT_SUFFIXES = (".onnx", ".tflite")
CONFIG_FILE = "config.json"
#: A config or manifest larger than this is refused unread (they are a few hundred bytes).
MAX_JSON_BYTES = 1 << 20
MAX_INSTANCES = 64
MAX_BATCH_SIZE = 65536
MAX_QUEUE_DELAY_MS = 60_000


class RepositoryError(InvalidArgument):
    """A repository, model folder, config or manifest deploykit refuses to serve (names the file,
    the field, what came and what is accepted)."""


class NotInRepository(RepositoryError, LookupError):
    """An unknown model, a version not served or an unknown label (also a ``LookupError``; the
    serving layer answers it with 404)."""


@dataclass(frozen=True)
class Batching:
    """Dynamic batching of one model: requests are merged up to ``max_batch_size`` rows."""

    max_batch_size: int
    max_queue_delay_ms: float = 0.0
    preferred_batch_sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions on disk are served: the ``latest`` N, ``all``, or a ``specific`` list."""

    kind: str = "latest"
    latest: int = 1
    specific: tuple[int, ...] = ()

    def select(self, available: Iterable[int]) -> list[int]:
        """The served versions among ``available``, ascending."""
        found = sorted(available)
        if self.kind == "all":
            return found
        if self.kind == "specific":
            return [v for v in found if v in self.specific]
        return found[-self.latest:]


@dataclass(frozen=True)
class Preprocess:
    """A preprocessing pipeline feeding one model input from the pixels clients send
    (``serve.preprocessing``); ``input`` None: the model's only input."""

    pipeline: Pipeline
    input: str | None = None


@dataclass(frozen=True)
class ModelConfig:
    """How one model is served; the defaults apply when ``config.json`` is absent."""

    backend: str = "auto"
    threads: int | None = None
    instances: int = 1
    batching: Batching | None = None
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    labels: Mapping[str, int] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    preprocess: Preprocess | None = None


@dataclass(frozen=True)
class VersionEntry:
    """One version folder: its artifact files (resolved, in ``dk.load`` order) and its manifest."""

    version: int
    artifacts: list[Path]
    manifest: Path | None = None


@dataclass
class ModelEntry:
    """One model folder: its config and every version found on disk."""

    name: str
    config: ModelConfig
    versions: dict[int, VersionEntry]

    def served_versions(self) -> list[int]:
        """The versions the version policy serves, ascending."""
        return self.config.version_policy.select(self.versions)

    def version(self, version: int) -> VersionEntry:
        """A served version; ``NotInRepository`` naming the served ones else."""
        served = self.served_versions()
        if version not in served:
            raise NotInRepository(f"model {self.name!r} has no served version {version!r}; served: "
                                  f"{_listed(served)}")
        return self.versions[version]

    def version_for_label(self, label: str) -> int:
        """The served version a label names; ``NotInRepository`` for an unknown or unserved label."""
        if label not in self.config.labels:
            raise NotInRepository(f"model {self.name!r} has no label {label!r}; labels: "
                                  f"{_listed(self.config.labels)}")
        version = self.config.labels[label]
        served = self.served_versions()
        if version not in served:
            raise NotInRepository(f"model {self.name!r}: label {label!r} names version {version}, "
                                  f"which is not served (served: {_listed(served)})")
        return version


@dataclass
class Repository:
    """The models found under ``root``, and notes on what was skipped and why."""

    root: Path
    models: dict[str, ModelEntry]
    notes: list[str] = field(default_factory=list)

    def model(self, name: str) -> ModelEntry:
        """The model named ``name``; ``NotInRepository`` naming the known models else."""
        if name not in self.models:
            raise NotInRepository(f"no model {name!r} in the repository {self.root}; models: "
                                  f"{_listed(self.models)}")
        return self.models[name]


def scan(path: str | os.PathLike[str]) -> Repository:
    """Read a repository folder, or one model file (``.onnx``, ``.tflite``, ``.json`` manifest) as a
    repository of one model named after the file's stem, version 1."""
    given = Path(path).expanduser()
    if given.is_dir():
        root = given.resolve()
        notes: list[str] = []
        models: dict[str, ModelEntry] = {}
        for entry in _entries(root, root, notes):
            if not entry.is_dir():
                notes.append(f"{entry}: ignored (a model is a folder <name>/<version>/)")
                continue
            name = _check_name(entry.name, "model folder name", entry)
            models[name] = _scan_model(root, entry, name, notes)
        return Repository(root, models, notes)
    if given.is_file() and (given.suffix.lower() in ARTIFACT_SUFFIXES or is_several(given)):
        file = given.resolve()
        name = _check_name(given.stem, "model name (the file's stem)", given)
        version = _scan_version(file.parent, file.parent, 1, [file], [])
        models = {name: ModelEntry(name, ModelConfig(), {1: version})} if version else {}
        return Repository(file.parent, models)
    raise RepositoryError(f"{given}: not a repository folder nor a model file (.onnx, .tflite or a .json "
                          "manifest)" + ("" if given.exists() else "; it does not exist"))


def _scan_model(root: Path, folder: Path, name: str, notes: list[str]) -> ModelEntry:
    """One model folder: its config and its version folders."""
    config, versions = ModelConfig(), {}
    for entry in _entries(root, folder, notes):
        if entry.name == CONFIG_FILE:
            config = parse_config(entry)
        elif re.fullmatch(r"[0-9]+", entry.name):
            if not re.fullmatch(r"[1-9][0-9]{0,17}", entry.name) or not entry.is_dir():
                raise RepositoryError(f"{entry}: a version is a folder named by an integer >= 1 "
                                      "(1, 2, ...; no leading zeros, at most 18 digits)")
            found = _scan_version(root, entry, int(entry.name), _entries(root, entry, notes), notes)
            if found is not None:
                versions[found.version] = found
        else:
            notes.append(f"{entry}: ignored (neither {CONFIG_FILE} nor a version folder)")
    model = ModelEntry(name, config, dict(sorted(versions.items())))
    if not model.served_versions():
        notes.append(f"{folder}: model {name!r} has no version to serve (on disk: "
                     f"{_listed(model.versions)})")
    for label, version in config.labels.items():
        if version not in model.served_versions():
            notes.append(f"{folder}: label {label!r} names version {version}, which is not served")
    return model


def _scan_version(root: Path, folder: Path, version: int, entries: list[Path],
                  notes: list[str]) -> VersionEntry | None:
    """One version folder's artifacts: the folder itself when it is a bundle (``deploykit.json``), else
    its manifest's list, else its model files by name; None (with a note) when it holds none. Other
    files (ONNX external data, ...) are left alone."""
    if any(e.name == BUNDLE_MANIFEST and e.is_file() for e in entries):  # a bundle: dk.load verifies it
        return VersionEntry(version, [folder.resolve()], folder / BUNDLE_MANIFEST)
    manifests = [e for e in entries if e.is_file() and is_several(e)]
    files = [e for e in entries if e.suffix.lower() in ARTIFACT_SUFFIXES]
    if len(manifests) > 1:
        raise RepositoryError(f"{folder}: several manifests ({_listed(m.name for m in manifests)}); "
                              "a version holds at most one")
    if manifests:
        files = _manifest_files(root, manifests[0])
    if not files:
        notes.append(f"{folder}: version {version} skipped: no artifact (.onnx, .tflite or a .json "
                     "manifest)")
        return None
    for file in files:
        if not file.is_file():
            raise RepositoryError(f"{file}: an artifact must be a regular file")
    return VersionEntry(version, [f.resolve() for f in files], manifests[0] if manifests else None)


def _manifest_files(root: Path, manifest: Path) -> list[Path]:
    """The artifacts a manifest names: relative paths inside the repository, no ``..``."""
    _check_size(manifest)
    try:
        files = read_manifest(manifest)
    except DeployKitError as e:
        raise RepositoryError(first_line(e)) from e
    for file in files:
        parts = file.relative_to(manifest.parent).parts if file.is_relative_to(manifest.parent) else ()
        if not parts or ".." in parts or file.suffix.lower() not in ARTIFACT_SUFFIXES:
            raise RepositoryError(f"{manifest}: artifact {str(file)!r} refused; a manifest names .onnx or "
                                  ".tflite files by relative paths without '..'")
        _inside(root, file)
    return files


def _entries(root: Path, folder: Path, notes: list[str]) -> list[Path]:
    """A folder's entries by name, hidden ones skipped with a note; each must resolve inside
    ``root`` and be a regular file or a folder."""
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            notes.append(f"{entry}: hidden, ignored")
            continue
        target = _inside(root, entry)
        if not (target.is_dir() or target.is_file()):
            raise RepositoryError(f"{entry}: not a regular file nor a folder")
        found.append(entry)
    return found


def _inside(root: Path, path: Path) -> Path:
    """Where ``path`` resolves, if that is inside ``root``; ``RepositoryError`` else."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError) as e:  # missing, a broken symlink, a symlink loop
        raise RepositoryError(f"{path}: cannot be resolved ({e})") from e
    if not target.is_relative_to(root):
        raise RepositoryError(f"{path}: resolves to {target}, outside the repository {root}; refused")
    return target


def parse_config(file: Path) -> ModelConfig:
    """A model's ``config.json``, every field checked (schema: ``ModelConfig``)."""
    _check_size(file)
    try:
        data = json.loads(file.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RepositoryError(f"{file}: cannot read the config ({first_line(e)})") from e
    try:
        _keys(data, "the config", {"backend", "threads", "instances", "batching", "version_policy",
                                   "labels", "options", "preprocess"})
        labels = _keys(data.get("labels", {}), "labels")
        return ModelConfig(
            backend=check_backend_name(data.get("backend", "auto")),
            threads=check_threads(data.get("threads"), "threads", warn_above_usable=False),
            instances=_bounded(data.get("instances", 1), "instances", MAX_INSTANCES),
            batching=_batching(data["batching"]) if "batching" in data else None,
            version_policy=_policy(data.get("version_policy", {"latest": 1})),
            labels={_check_name(k, "label"): _bounded(v, f"labels.{k}") for k, v in labels.items()},
            options=_keys(data.get("options", {}), "options"),
            preprocess=_preprocess(data["preprocess"]) if "preprocess" in data else None)
    except (InvalidArgument, UnknownBackend) as e:
        raise RepositoryError(f"{file}: {first_line(e)}") from e


def _preprocess(data: Any) -> Preprocess:
    _keys(data, "preprocess", {"input", "pipeline"})
    if "pipeline" not in data:
        raise InvalidArgument("preprocess needs pipeline (a dk.preprocess.Pipeline as a JSON object, e.g. "
                              '{"op": "letterbox", "size": [640, 640]})')
    name = data.get("input")
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidArgument(f"preprocess.input must be the name of a model input, got {name!r}")
    spec = _keys(data["pipeline"], "preprocess.pipeline")
    try:
        pipeline = Pipeline.from_dict({"format": PIPELINE_FORMAT, **spec})
    except PreprocessError as e:
        raise InvalidArgument(f"preprocess.pipeline: {first_line(e)}") from None
    return Preprocess(pipeline, name)


def _batching(data: Any) -> Batching:
    _keys(data, "batching", {"max_batch_size", "max_queue_delay_ms", "preferred_batch_sizes"})
    if "max_batch_size" not in data:
        raise InvalidArgument("batching needs max_batch_size (an int >= 1)")
    top = _bounded(data["max_batch_size"], "batching.max_batch_size", MAX_BATCH_SIZE)
    delay = _bounded(data.get("max_queue_delay_ms", 0.0), "batching.max_queue_delay_ms",
                     MAX_QUEUE_DELAY_MS, minimum=0, integer=False)
    sizes = _distinct(data.get("preferred_batch_sizes", []), "batching.preferred_batch_sizes", top,
                      empty=True)
    return Batching(top, float(delay), sizes)


def _policy(data: Any) -> VersionPolicy:
    kind, value = next(iter(data.items())) if isinstance(data, dict) and len(data) == 1 else ("", None)
    if kind == "latest":
        return VersionPolicy("latest", latest=_bounded(value, "version_policy.latest"))
    if kind == "specific":
        return VersionPolicy("specific", specific=_distinct(value, "version_policy.specific"))
    if kind == "all" and value is True:
        return VersionPolicy("all")
    raise InvalidArgument('version_policy must be {"latest": N}, {"all": true} or {"specific": '
                          f"[versions]}}; got {json.dumps(data)}")


def _bounded(value: Any, name: str, most: int | None = None, *, minimum: int = 1,
             integer: bool = True) -> Any:
    """An int (a number unless ``integer``) >= ``minimum`` and <= ``most``."""
    n = check_number(value, name, minimum=minimum, integer=integer)
    if most is not None and n > most:
        raise InvalidArgument(f"{name} must be <= {most}, got {n}")
    return n


def _distinct(value: Any, name: str, most: int | None = None, *, empty: bool = False) -> tuple[int, ...]:
    """A list of distinct ints >= 1 (and <= ``most``), ascending; non-empty unless ``empty``."""
    if not isinstance(value, list) or (not value and not empty):
        raise InvalidArgument(f"{name} must be a {'' if empty else 'non-empty '}list of ints >= 1, "
                              f"got {json.dumps(value)}")
    items = [_bounded(v, f"{name}[{i}]", most) for i, v in enumerate(value)]
    if len(set(items)) != len(items):
        raise InvalidArgument(f"{name} lists a value twice: {value}")
    return tuple(sorted(items))


def _keys(data: Any, name: str, known: set[str] | None = None) -> dict[str, Any]:
    """``data`` if it is a JSON object whose keys are all ``known`` (any keys when None)."""
    if not isinstance(data, dict):
        raise InvalidArgument(f"{name} must be a JSON object, got {json.dumps(data)}")
    unknown = sorted(set(data) - known) if known is not None else []
    if unknown:
        raise InvalidArgument(f"{name}: unknown key(s) {_listed(unknown)}; accepted: "
                              f"{_listed(sorted(known or ()))}")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a key given twice in one object: {_listed(k for k in keys if keys.count(k) > 1)}")
    return dict(pairs)


def _check_size(file: Path) -> None:
    if file.stat().st_size > MAX_JSON_BYTES:
        raise RepositoryError(f"{file}: over {MAX_JSON_BYTES} bytes; refused unread")


def _check_name(name: str, what: str, where: Path | None = None) -> str:
    if not NAME.fullmatch(name) or ".." in name:
        prefix = f"{where}: " if where else ""
        raise RepositoryError(f"{prefix}{what} {name!r} refused; accepted: letters, digits, '_', '.', "
                              "'-', starting with a letter or digit, at most 128, no '..'")
    return name


def _listed(items: Iterable[Any]) -> str:
    shown = [repr(i) if isinstance(i, str) else str(i) for i in dict.fromkeys(items)]
    return ", ".join(shown[:20]) + (f", ... ({len(shown)} in all)" if len(shown) > 20 else "") or "none"
