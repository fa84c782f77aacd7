"""pinmigrate's JSON Patch for audiences, applied by the fake's own RFC 6902 code: every flow
shape a copy can have (an audience list, an empty one, none at all) ends with the audiences."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pinmigrate import models
from pinmigrate.inventory import Audience

from .fake_services import apply_patch, audience_ids

WANTED = [Audience("a-1", "Soldes d'été", ""), Audience("a-2", "顧客", "")]


def flow(params: dict[str, Any] | None) -> dict[str, Any]:
    general: dict[str, Any] = {"name": "GeneralTransform"}
    if params is not None:
        general["params"] = params
    return {"id": "f", "transformations": [{"name": "Other", "params": {}}, general]}


@pytest.mark.parametrize(
    "params",
    [
        {"segmentSelectors": {"selectors": [{"type": "PLATFORM_SEGMENT", "value": {"id": "x"}}]}},
        {"segmentSelectors": {"selectors": []}},
        {"segmentSelectors": {}},
        {"segmentSelectors": {"selectors": None}},
        {"profileSelectors": {"selectors": []}},
        {},
        None,
    ],
    ids=["some", "empty", "no-selectors", "null-selectors", "no-segment-selectors", "bare", "none"],
)
def test_audiences_land_whatever_the_flow_holds(params: dict[str, Any] | None) -> None:
    raw = flow(params)
    before = audience_ids(raw)
    ops = models.add_audience_ops(raw, WANTED)
    after = apply_patch(copy.deepcopy(raw), ops)
    assert audience_ids(after) == before | {"a-1", "a-2"}
    # Nothing else of the flow moved.
    assert after["transformations"][0] == raw["transformations"][0]
    kept = {k: v for k, v in (params or {}).items() if k != "segmentSelectors"}
    assert {k: v for k, v in after["transformations"][1]["params"].items() if k in kept} == kept
