"""docs/json.md cannot rot: every JSON document a command prints is described there, key by key.

Each command runs with ``--output json`` against the emulator; the keys it prints (top level,
and each item of ``results``) must be the keys docs/json.md lists for its ``kind``, and every
key listed there must be printed by some run unless the docs mark it optional.
"""

from __future__ import annotations

import json
import re
import select
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e_support import spawn

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "json.md").read_text(encoding="utf-8")
ROW = re.compile(r"^\| `([a-z_]+)` \| ([^|]+) \|", re.M)


@dataclass
class Documented:
    keys: set[str] = field(default_factory=set)
    optional: set[str] = field(default_factory=set)
    items: dict[str, set[str]] = field(default_factory=dict)


def documented() -> dict[str, Documented]:
    """kind -> its documented keys, from each ``## ...: `pinmigrate.KIND``` section."""
    found: dict[str, Documented] = {}
    for section in re.split(r"^## ", DOC, flags=re.M)[1:]:
        heading, _, body = section.partition("\n")
        kind = re.search(r": `(pinmigrate\.[a-z.]+)`$", heading)
        if kind is None:
            continue
        top, *subsections = re.split(r"^### ", body, flags=re.M)
        doc = found.setdefault(kind.group(1), Documented())
        table = top.split("| key | type | meaning |", 1)[1].split("\n\n", 1)[0]
        for key, kind_of in ROW.findall(table):
            doc.keys.add(key)
            if "*optional*" in kind_of:
                doc.optional.add(key)
        for sub in subsections:
            title, _, rest = sub.partition("\n")
            name = re.fullmatch(r"`([a-z_]+)\[\]`", title.strip())
            if name:
                doc.items[name.group(1)] = {k for k, _ in ROW.findall(rest)}
    # Rollback's results are described once, with apply's ("as for apply").
    found["pinmigrate.rollback"].items.setdefault(
        "results", found["pinmigrate.apply"].items["results"]
    )
    return found


def test_the_docs_parse_into_every_kind() -> None:
    assert set(documented()) == {
        "pinmigrate.plan",
        "pinmigrate.inventory",
        "pinmigrate.apply",
        "pinmigrate.rollback",
        "pinmigrate.doctor",
        "pinmigrate.auth.status",
        "pinmigrate.auth.login",
        "pinmigrate.auth.logout",
        "pinmigrate.init",
        "pinmigrate.demo",
        "pinmigrate.emulator",
    }
    assert documented()["pinmigrate.apply"].items["results"] >= {"side", "target_name"}


def emulator_document(timeout: float = 30.0) -> dict[str, Any]:
    """``pinmigrate emulator --output json``: its one document, then it is stopped."""
    proc = spawn(["emulator", "--port", "0", "--output", "json"], {})
    text = b""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                text += proc.stdout.read1(65536)
                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    continue
        raise AssertionError(f"no JSON from the emulator command: {text!r}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_every_json_output_is_documented_key_by_key(
    cli: Callable[..., Any], emu_env: dict[str, str], emulator: Any, tmp_path: Path
) -> None:
    def run(*args: str, input: str | None = None, codes: tuple[int, ...] = (0,)) -> Any:
        result = cli([*args, "--output", "json"], emu_env, input=input)
        assert result.exit_code in codes, (args, result.stderr)
        return result.json()

    plan_file = tmp_path / "plan.json"
    outputs = [
        run("doctor"),
        run("discover"),
        run("plan", "--out", str(plan_file)),
        run("show", str(plan_file)),
        run("auth", "status", codes=(4,)),  # no usable login yet
        run("auth", "login", "--with-token", input=json.dumps(emulator.tokens())),
        run("auth", "status"),
        # No reconnect in Adobe yet: some actions wait for it (exit 4), others are done.
        run("apply", "--yes", "--reconnect-timeout", "0", codes=(4,)),
        run("rollback", "--yes"),
        run("rollback", "--yes"),  # nothing left to undo
        run("auth", "logout"),
        run("init", str(tmp_path / "pinmigrate.toml")),
        run("demo"),
        emulator_document(),
    ]

    docs = documented()
    printed: dict[str, set[str]] = defaultdict(set)
    printed_items: dict[tuple[str, str], set[str]] = defaultdict(set)
    for output in outputs:
        assert output["schema_version"] == 1
        kind = output["kind"]
        assert kind in docs, f"{kind} is not in docs/json.md"
        printed[kind] |= set(output)
        assert set(output) <= docs[kind].keys, (
            f"{kind} prints keys docs/json.md does not list: {set(output) - docs[kind].keys}"
        )
        for name in docs[kind].items:
            for item in output.get(name) or []:
                printed_items[(kind, name)] |= set(item)
    for kind, doc in docs.items():
        missing = doc.keys - doc.optional - printed[kind]
        assert not missing, f"docs/json.md lists keys {kind} never printed: {missing}"
        for name, keys in doc.items.items():
            assert printed_items[(kind, name)] == keys, (kind, name)
    # The apply run and the rollback both listed results, so their item keys were compared.
    assert printed_items[("pinmigrate.apply", "results")]
    assert printed_items[("pinmigrate.rollback", "results")]
