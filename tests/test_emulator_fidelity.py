"""Adobe's published examples as the oracle of what the emulator serves.

Every successful example (or schema-built instance) of every Flow Service read pinmigrate
calls (:mod:`test_spec_examples` collects them from the vendored OpenAPI files) is flattened
into its field paths (``transformations[].params.segmentSelectors.selectors[].value.id``).
The emulator's objects of the same kind, read over loopback through pinmigrate's own client
after a patch and an enable (so ``lastOperation`` and a run exist), are flattened the same
way. A path of the examples that the emulator does not serve is an omission; a path the
emulator serves that no example has is an addition; a renamed field shows as both. Each must
be listed, with its reason, in the table of ``docs/emulator.md``, the one place where the
emulator's deliberate divergences are written down; anything else fails here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_spec_examples import CASES, USED

from pinmigrate.adobe import AdobeClient
from pinmigrate.emulator.context import Config
from pinmigrate.emulator.scenarios import OPTIONS, audience_id
from pinmigrate.inventory import Audience
from pinmigrate.models import add_audience_ops
from pinmigrate.settings import load_settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "emulator.md"
KINDS = ("flows", "connections", "targetConnections", "connectionSpecs", "runs")
ROW = re.compile(
    r"^\|\s*`(?P<kind>[^`]+)`\s*\|\s*`(?P<path>[^`]+)`\s*\|\s*(?P<way>\w+)\s*\|(?P<why>.*)\|\s*$"
)


def paths(node: Any, prefix: str = "") -> set[str]:
    """Every field path of a JSON value; list items are ``[]``."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            found.add(path)
            found |= paths(value, path)
    elif isinstance(node, list):
        for value in node:
            found |= paths(value, prefix + "[]")
    return found


def example_paths() -> dict[str, set[str]]:
    """Field paths of every successful published example, by resource."""
    found: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for case in CASES:
        (method, path), status, body = case.values[0]
        if method != "get" or status >= 300 or not isinstance(body, dict):
            continue
        items = body["items"] if isinstance(body.get("items"), list) else [body]
        for item in items:
            found[USED[(method, path)]] |= paths(item)
    return found


def documented() -> dict[tuple[str, str], list[str]]:
    """``(kind, "omitted" | "added") -> [path patterns]`` from the table of docs/emulator.md."""
    table: dict[tuple[str, str], list[str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match and match["way"] in ("omitted", "added"):
            assert match["why"].strip(), f"docs/emulator.md gives no reason for {line!r}"
            table.setdefault((match["kind"], match["way"]), []).append(match["path"])
    return table


def matches(path: str, pattern: str) -> bool:
    """``*`` matches anything; everything else, ``[]`` included, is literal."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), path) is not None


def undocumented(found: set[str], patterns: list[str]) -> list[str]:
    return sorted(p for p in found if not any(matches(p, pattern) for pattern in patterns))


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, set[str]]]:
    """Field paths of what the emulator serves, read with pinmigrate's client."""
    from pinmigrate.emulator import Emulator

    emu = Emulator(scenario="demo", port=0).start()
    try:
        adobe = AdobeClient(load_settings(env=emu.env()))
        # One twin patched, another enabled: each keeps its own ``lastOperation``.
        patched, enabled = [
            f
            for f in emu.state.find("flows", card="new", sandbox="prod")
            if f["state"] == "disabled"
        ][:2]
        raw = adobe.get("flows", patched["id"], sandbox="prod")
        extra = Audience(audience_id("prod", "Fidelity check"), "Fidelity check")
        adobe.patch(
            "flows", patched["id"], add_audience_ops(raw, [extra]), etag=raw["etag"], sandbox="prod"
        )
        adobe.flow_action(enabled["id"], "enable", sandbox="prod")
        found: dict[str, set[str]] = {kind: set() for kind in KINDS}
        for sandbox in emu.state.sandboxes:
            for kind in KINDS:
                for item in adobe.list(kind, sandbox=sandbox):
                    found[kind] |= paths(item)
        for flow in (patched, enabled):
            found["flows"] |= paths(adobe.get("flows", flow["id"], sandbox="prod"))
        yield found
    finally:
        emu.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_the_emulator_serves_every_published_field(kind: str, served: dict[str, set[str]]) -> None:
    published = example_paths()[kind]
    assert published, f"no published example of {kind}"
    omitted = undocumented(published - served[kind], documented().get((kind, "omitted"), []))
    assert not omitted, (
        f"the emulator's {kind} lack fields Adobe's examples have; serve them, or list each "
        f"in docs/emulator.md with its reason: {omitted}"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_the_emulator_adds_is_documented(
    kind: str, served: dict[str, set[str]]
) -> None:
    added = undocumented(
        served[kind] - example_paths()[kind], documented().get((kind, "added"), [])
    )
    assert not added, (
        f"the emulator's {kind} have fields no published example has (renamed?); list each in "
        f"docs/emulator.md with its reason: {added}"
    )


def test_every_documented_divergence_is_still_one(served: dict[str, set[str]]) -> None:
    """A row that no longer matches anything is a stale claim about the emulator."""
    published = example_paths()
    for (kind, way), patterns in documented().items():
        diff = (
            published[kind] - served[kind] if way == "omitted" else served[kind] - published[kind]
        )
        for pattern in patterns:
            assert any(matches(p, pattern) for p in diff), (
                f"docs/emulator.md lists {kind} {pattern!r} as {way}, but it is not (any more)"
            )


def test_every_scenario_option_and_config_switch_is_documented() -> None:
    """docs/emulator.md is the one place that lists the variants the emulator serves."""
    text = DOC.read_text(encoding="utf-8")
    assert not [option for option in OPTIONS if f"`+{option}`" not in text]
    assert not [f.name for f in dataclasses.fields(Config) if f"`{f.name}`" not in text]
