"""The model repository: layouts on disk read into data, every config field checked, nothing read
from outside the root."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import deploykit as dk
from deploykit.serve.repository import (
    Batching,
    ModelConfig,
    NotInRepository,
    RepositoryError,
    VersionPolicy,
    parse_config,
    scan,
)

DIGITS = Path(dk.__file__).parent / "demo" / "digits.onnx"


def put(path: Path, source: Path = DIGITS) -> Path:
    """Copy ``source`` to ``path`` (its folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, path)
    return path


def config(model: Path, data: Any) -> Path:
    """Write ``data`` as ``model``'s config.json."""
    model.mkdir(parents=True, exist_ok=True)
    file = model / "config.json"
    file.write_text(data if isinstance(data, str) else json.dumps(data))
    return file


# -- layouts ---------------------------------------------------------------------------------------

def test_layout_models_versions_and_defaults(tmp_path: Path) -> None:
    put(tmp_path / "digits" / "1" / "model.onnx")
    put(tmp_path / "digits" / "3" / "model.onnx")
    put(tmp_path / "other" / "12" / "a.onnx")
    repo = scan(tmp_path)
    assert repo.root == tmp_path.resolve()
    assert list(repo.models) == ["digits", "other"]
    digits = repo.model("digits")
    assert digits.config == ModelConfig()
    assert list(digits.versions) == [1, 3]
    assert digits.versions[3].artifacts == [(tmp_path / "digits" / "3" / "model.onnx").resolve()]
    assert digits.served_versions() == [3]  # default policy: the latest one
    assert repo.model("other").served_versions() == [12]
    assert repo.notes == []


def test_single_file_is_a_repository_of_one(tmp_path: Path) -> None:
    file = put(tmp_path / "my-model.v2.onnx")
    repo = scan(str(file))
    assert list(repo.models) == ["my-model.v2"]
    entry = repo.model("my-model.v2")
    assert entry.served_versions() == [1]
    assert entry.versions[1].artifacts == [file.resolve()]


def test_single_manifest_file(tmp_path: Path) -> None:
    put(tmp_path / "a.onnx")
    put(tmp_path / "b.onnx")
    (tmp_path / "embed.json").write_text(json.dumps({"artifacts": ["b.onnx", "a.onnx"]}))
    version = scan(tmp_path / "embed.json").model("embed").versions[1]
    assert version.artifacts == [tmp_path.resolve() / "b.onnx", tmp_path.resolve() / "a.onnx"]
    assert version.manifest is not None


def test_several_artifacts_in_one_version(tmp_path: Path) -> None:
    put(tmp_path / "m" / "1" / "b.onnx")
    put(tmp_path / "m" / "1" / "a.onnx")
    (tmp_path / "m" / "1" / "a.onnx.data").write_bytes(b"external data, left alone")
    version = scan(tmp_path).model("m").versions[1]
    assert [p.name for p in version.artifacts] == ["a.onnx", "b.onnx"]
    assert version.manifest is None


def test_a_manifest_decides_the_artifacts_and_their_order(tmp_path: Path) -> None:
    folder = tmp_path / "m" / "1"
    put(folder / "a.onnx")
    put(folder / "sub" / "b.onnx")
    (folder / "model.json").write_text(json.dumps({"artifacts": ["sub/b.onnx", "a.onnx"]}))
    version = scan(tmp_path).model("m").versions[1]
    assert [p.name for p in version.artifacts] == ["b.onnx", "a.onnx"]
    assert version.manifest == folder / "model.json"


@pytest.mark.parametrize("items, match", [
    (["../../other/1/a.onnx"], "without '..'"),
    (["sub/../a.onnx"], "without '..'"),
    (["/etc/passwd.onnx"], "without '..'"),
    (["notes.txt"], "relative paths"),
    (["missing.onnx"], "cannot be resolved"),
])
def test_bad_manifest_entries(tmp_path: Path, items: list[str], match: str) -> None:
    put(tmp_path / "m" / "1" / "a.onnx")
    put(tmp_path / "other" / "1" / "a.onnx")
    (tmp_path / "m" / "1" / "notes.txt").write_text("hello")
    (tmp_path / "m" / "1" / "model.json").write_text(json.dumps({"artifacts": items}))
    with pytest.raises(RepositoryError, match=match):
        scan(tmp_path)


def test_a_malformed_manifest_and_two_manifests(tmp_path: Path) -> None:
    folder = tmp_path / "m" / "1"
    put(folder / "a.onnx")
    (folder / "model.json").write_text('{"files": []}')
    with pytest.raises(RepositoryError, match="a manifest is a JSON object"):
        scan(tmp_path)
    (folder / "model.json").write_text('{"artifacts": ["a.onnx"]}')
    (folder / "again.json").write_text('{"artifacts": ["a.onnx"]}')
    with pytest.raises(RepositoryError, match="several manifests"):
        scan(tmp_path)


def test_empty_repository(tmp_path: Path) -> None:
    repo = scan(tmp_path)
    assert repo.models == {} and repo.notes == []
    with pytest.raises(NotInRepository, match="models: none"):
        repo.model("digits")


def test_version_folder_without_artifacts_is_skipped_with_a_note(tmp_path: Path) -> None:
    put(tmp_path / "m" / "1" / "model.onnx")
    (tmp_path / "m" / "2").mkdir()
    (tmp_path / "m" / "2" / "README.md").write_text("copy in progress")
    repo = scan(tmp_path)
    assert list(repo.model("m").versions) == [1]
    assert any("version 2 skipped: no artifact" in n for n in repo.notes)


def test_model_without_versions_is_listed_with_a_note(tmp_path: Path) -> None:
    config(tmp_path / "empty", {"instances": 2})
    repo = scan(tmp_path)
    assert repo.model("empty").versions == {} and repo.model("empty").served_versions() == []
    assert any("no version to serve" in n for n in repo.notes)


def test_hidden_and_stray_entries_are_ignored_with_notes(tmp_path: Path) -> None:
    put(tmp_path / "m" / "1" / "model.onnx")
    put(tmp_path / ".cache" / "1" / "x.onnx")
    put(tmp_path / "m" / ".2" / "model.onnx")
    (tmp_path / "README.md").write_text("hi")
    (tmp_path / "m" / "notes").mkdir()
    repo = scan(tmp_path)
    assert list(repo.models) == ["m"] and list(repo.model("m").versions) == [1]
    text = "\n".join(repo.notes)
    assert ".cache: hidden" in text and ".2: hidden" in text
    assert "README.md: ignored" in text and "notes: ignored" in text


@pytest.mark.parametrize("name", ["0", "007", "-1x"])
def test_bad_version_folders(tmp_path: Path, name: str) -> None:
    put(tmp_path / "m" / name / "model.onnx")
    if name.isdigit():
        with pytest.raises(RepositoryError, match="integer >= 1"):
            scan(tmp_path)
    else:
        assert scan(tmp_path).model("m").versions == {}


def test_a_version_that_is_a_file_is_refused(tmp_path: Path) -> None:
    put(tmp_path / "m" / "1")
    with pytest.raises(RepositoryError, match="a version is a folder"):
        scan(tmp_path)


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="does not exist"):
        scan(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(RepositoryError, match="not a repository folder nor a model file"):
        scan(tmp_path / "notes.txt")
    assert isinstance(RepositoryError("x"), dk.InvalidArgument)
    assert issubclass(NotInRepository, LookupError) and issubclass(NotInRepository, ValueError)


# -- safety ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bad name", "a$b", "_x", "-x", "a..b", "x" * 129, "modèle"])
def test_hostile_model_names_refused(tmp_path: Path, name: str) -> None:
    put(tmp_path / name / "1" / "model.onnx")
    with pytest.raises(RepositoryError, match="model folder name"):
        scan(tmp_path)


def test_hostile_file_stem_refused(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="model name"):
        scan(put(tmp_path / "a b.onnx"))


def test_symlinks_inside_the_root_are_followed(tmp_path: Path) -> None:
    put(tmp_path / "store" / "weights.onnx")
    (tmp_path / "m" / "1").mkdir(parents=True)
    os.symlink(tmp_path / "store" / "weights.onnx", tmp_path / "m" / "1" / "model.onnx")
    os.symlink(tmp_path / "m", tmp_path / "alias")
    repo = scan(tmp_path)
    assert repo.model("alias").versions[1].artifacts == [(tmp_path / "store" / "weights.onnx").resolve()]


@pytest.mark.parametrize("where", ["model", "version", "artifact", "config", "manifest_entry"])
def test_symlinks_out_of_the_root_refused(tmp_path: Path, where: str) -> None:
    outside, root = tmp_path / "outside", tmp_path / "repo"
    put(outside / "m" / "1" / "model.onnx")
    put(root / "ok" / "1" / "model.onnx")
    config(outside, {"instances": 2})
    if where == "model":
        os.symlink(outside / "m", root / "m")
    elif where == "version":
        (root / "m").mkdir()
        os.symlink(outside / "m" / "1", root / "m" / "1")
    elif where == "artifact":
        (root / "m" / "1").mkdir(parents=True)
        os.symlink(outside / "m" / "1" / "model.onnx", root / "m" / "1" / "model.onnx")
    elif where == "config":
        put(root / "m" / "1" / "model.onnx")
        os.symlink(outside / "config.json", root / "m" / "config.json")
    else:  # a manifest given directly: its folder is the root, its entries are not listed
        put(root / "a.onnx")
        os.symlink(outside / "m" / "1" / "model.onnx", root / "out.onnx")
        (root / "model.json").write_text('{"artifacts": ["a.onnx", "out.onnx"]}')
        root = root / "model.json"
    with pytest.raises(RepositoryError, match="outside the repository"):
        scan(root)


def test_broken_and_looping_symlinks_refused(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    os.symlink(tmp_path / "nowhere.onnx", tmp_path / "m" / "1" / "model.onnx")
    with pytest.raises(RepositoryError, match="cannot be resolved"):
        scan(tmp_path)
    os.remove(tmp_path / "m" / "1" / "model.onnx")
    os.symlink(tmp_path / "m" / "1" / "b.onnx", tmp_path / "m" / "1" / "a.onnx")
    os.symlink(tmp_path / "m" / "1" / "a.onnx", tmp_path / "m" / "1" / "b.onnx")
    with pytest.raises(RepositoryError, match="cannot be resolved"):
        scan(tmp_path)


def test_not_regular_files_refused(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    os.mkfifo(tmp_path / "m" / "1" / "model.onnx")
    with pytest.raises(RepositoryError, match="not a regular file"):
        scan(tmp_path)
    os.remove(tmp_path / "m" / "1" / "model.onnx")
    (tmp_path / "m" / "1" / "model.onnx").mkdir()
    with pytest.raises(RepositoryError, match="must be a regular file"):
        scan(tmp_path)


def test_oversized_config_refused_unread(tmp_path: Path) -> None:
    file = config(tmp_path / "m", '{"instances": 1' + " " * (1 << 20) + "}")
    with pytest.raises(RepositoryError, match="refused unread"):
        parse_config(file)


# -- config ----------------------------------------------------------------------------------------

def test_full_config(tmp_path: Path) -> None:
    file = config(tmp_path / "m", {
        "backend": "ONNXRuntime", "threads": 2, "instances": 3,
        "batching": {"max_batch_size": 16, "max_queue_delay_ms": 0.5, "preferred_batch_sizes": [8, 4]},
        "version_policy": {"specific": [2, 1]}, "labels": {"stable": 1, "canary": 2},
        "options": {"providers": ["CPUExecutionProvider"]},
    })
    assert parse_config(file) == ModelConfig(
        backend="onnxruntime", threads=2, instances=3,
        batching=Batching(16, 0.5, (4, 8)), version_policy=VersionPolicy("specific", specific=(1, 2)),
        labels={"stable": 1, "canary": 2}, options={"providers": ["CPUExecutionProvider"]})
    assert parse_config(config(tmp_path / "n", {"batching": {"max_batch_size": 4}})).batching == \
        Batching(4, 0.0, ())


BAD_CONFIGS: list[tuple[Any, str]] = [
    ("{not json", "cannot read the config"),
    ('{"instances": 1, "instances": 2}', "a key given twice"),
    ([], "the config must be a JSON object"),
    ({"instance": 2}, r"unknown key\(s\) 'instance'; accepted: 'backend', 'batching'"),
    ({"preprocess": {}}, "preprocess needs pipeline"),
    ({"backend": "tensorrt-llm"}, "unknown backend 'tensorrt-llm'"),
    ({"backend": 3}, "backend name must be a string"),
    ({"threads": 0}, "threads must be an int >= 1"),
    ({"threads": "4"}, "threads must be an int >= 1"),
    ({"threads": 2.0}, "threads must be an int >= 1"),
    ({"instances": 0}, "instances must be an int >= 1, got 0"),
    ({"instances": True}, "instances must be an int >= 1, got True"),
    ({"instances": None}, "instances must be an int >= 1, got None"),
    ({"instances": 65}, "instances must be <= 64"),
    ({"batching": 8}, "batching must be a JSON object"),
    ({"batching": {}}, "batching needs max_batch_size"),
    ({"batching": {"max_batch_size": 0}}, "batching.max_batch_size must be an int >= 1"),
    ({"batching": {"max_batch_size": 1 << 20}}, "batching.max_batch_size must be <= 65536"),
    ({"batching": {"max_batch_size": 8, "max_queue_delay_ms": -1}},
     "max_queue_delay_ms must be a number >= 0"),
    ({"batching": {"max_batch_size": 8, "max_queue_delay_ms": "1"}}, "max_queue_delay_ms must be a number"),
    ('{"batching": {"max_batch_size": 8, "max_queue_delay_ms": NaN}}', "max_queue_delay_ms must be a number"),
    ({"batching": {"max_batch_size": 8, "max_queue_delay_ms": 1e9}}, "max_queue_delay_ms must be <= 60000"),
    ({"batching": {"max_batch_size": 8, "preferred_batch_sizes": [16]}},
     r"preferred_batch_sizes\[0\] must be <= 8"),
    ({"batching": {"max_batch_size": 8, "preferred_batch_sizes": [2, 2]}}, "lists a value twice"),
    ({"batching": {"max_batch_size": 8, "preferred_batch_sizes": 4}}, "must be a list of ints"),
    ({"batching": {"max_batch_size": 8, "max_delay": 1}}, r"batching: unknown key\(s\) 'max_delay'"),
    ({"version_policy": "latest"}, "version_policy must be"),
    ({"version_policy": {}}, "version_policy must be"),
    ({"version_policy": {"latest": 1, "all": True}}, "version_policy must be"),
    ({"version_policy": {"newest": 1}}, "version_policy must be"),
    ({"version_policy": {"latest": 0}}, "version_policy.latest must be an int >= 1"),
    ({"version_policy": {"all": 1}}, 'version_policy must be .*; got {"all": 1}'),
    ({"version_policy": {"specific": []}}, "must be a non-empty list"),
    ({"version_policy": {"specific": [1, -2]}}, r"version_policy.specific\[1\] must be an int >= 1"),
    ({"labels": ["stable"]}, "labels must be a JSON object"),
    ({"labels": {"../x": 1}}, "label '../x' refused"),
    ({"labels": {"stable": "1"}}, "labels.stable must be an int >= 1"),
    ({"options": ["x"]}, "options must be a JSON object"),
]


@pytest.mark.parametrize("data, match", BAD_CONFIGS)
def test_bad_configs_refused(tmp_path: Path, data: Any, match: str) -> None:
    file = config(tmp_path / "m", data)
    with pytest.raises(RepositoryError, match=match) as info:
        parse_config(file)
    assert str(info.value).startswith(str(file))
    put(tmp_path / "m" / "1" / "model.onnx")
    with pytest.raises(RepositoryError, match=match):
        scan(tmp_path)


# -- version policies and labels -------------------------------------------------------------------

@pytest.mark.parametrize("policy, served", [
    (None, [5]),
    ({"latest": 2}, [3, 5]),
    ({"latest": 10}, [1, 2, 3, 5]),
    ({"all": True}, [1, 2, 3, 5]),
    ({"specific": [1, 3, 4]}, [1, 3]),
])
def test_version_policies(tmp_path: Path, policy: Any, served: list[int]) -> None:
    for v in (1, 2, 3, 5):
        put(tmp_path / "m" / str(v) / "model.onnx")
    if policy is not None:
        config(tmp_path / "m", {"version_policy": policy})
    entry = scan(tmp_path).model("m")
    assert entry.served_versions() == served
    assert entry.version(served[-1]).version == served[-1]
    with pytest.raises(NotInRepository, match=f"no served version 4; served: {', '.join(map(str, served))}"):
        entry.version(4)


def test_labels(tmp_path: Path) -> None:
    for v in (1, 2, 3):
        put(tmp_path / "m" / str(v) / "model.onnx")
    config(tmp_path / "m", {"version_policy": {"latest": 2}, "labels": {"stable": 2, "canary": 3, "old": 1}})
    repo = scan(tmp_path)
    entry = repo.model("m")
    assert entry.version_for_label("stable") == 2 and entry.version_for_label("canary") == 3
    with pytest.raises(NotInRepository, match="label 'old' names version 1, which is not served"):
        entry.version_for_label("old")
    with pytest.raises(NotInRepository, match="no label 'beta'; labels: 'stable', 'canary', 'old'"):
        entry.version_for_label("beta")
    assert any("label 'old' names version 1, which is not served" in n for n in repo.notes)


def test_unknown_model_names_the_known_ones(tmp_path: Path) -> None:
    put(tmp_path / "a" / "1" / "model.onnx")
    put(tmp_path / "b" / "1" / "model.onnx")
    with pytest.raises(NotInRepository, match=r"no model 'c' in the repository .*; models: 'a', 'b'"):
        scan(tmp_path).model("c")
