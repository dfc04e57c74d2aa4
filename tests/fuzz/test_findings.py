"""What the 100,000-input campaign (``make fuzz``) found, kept fixed: the first finding of each kind is
made again from its (seed, index) — the campaign is deterministic — and must now load or fail with a
``DeployKitError``. All 35 were raw ``UnicodeDecodeError``/``TypeError``/``KeyError``/``ValueError``
from the numpy backend reading malformed graphs (``findings.json`` lists them; replaying all takes
two minutes, these five about 20 s)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from tests.fuzz import campaign

FINDINGS = json.loads((Path(__file__).parent / "findings.json").read_text())


@pytest.mark.zoo
def test_every_campaign_finding_now_ends_in_a_deploykit_error(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYKIT_CACHE_DIR", str(tmp_path))
    wanted: dict[int, set[int]] = defaultdict(set)
    for finding in FINDINGS["replayed"]:
        wanted[finding["seed"]].add(finding["i"])
    outcomes = {}
    for seed, indices in wanted.items():
        for index, kind, data in campaign.inputs(seed, max(indices) + 1):
            if index in indices:
                outcomes[(seed, index)] = campaign.attempt(kind, data)
    assert len(outcomes) == len(FINDINGS["replayed"]) == 5
    raw = {k: v for k, v in outcomes.items() if v.startswith("raw")}
    assert not raw, raw
