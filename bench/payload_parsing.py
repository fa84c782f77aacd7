"""What reading one Adobe payload into an inventory value costs, in µs per object.

Times ``models.flow_from_payload``, ``target_from_payload`` and ``account_from_payload``
over the payloads of the emulator's ``scale:N`` world (JSON round-tripped, as discovery
receives them), and prints each against a baseline measured in the same run:
``json.loads`` of the same objects, the decoding every way of reading them pays first.

    python bench/payload_parsing.py                  # the working tree's models.py
    python bench/payload_parsing.py --against REV    # and the models.py of a git revision
    python bench/payload_parsing.py --quick          # scale:60, 3 passes

With ``--against``, that revision's module is loaded beside the current one and timed in
the same process. A module with the hand-written quick path (``_flow_from_dict`` and
friends) is timed twice: as it is, and with the quick path switched off, so that its
pydantic models read every payload.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import print_machine  # noqa: E402

from pinmigrate import models  # noqa: E402
from pinmigrate.emulator.scenarios import build  # noqa: E402

KINDS = {
    "flow": ("flows", "flow_from_payload", "_flow_from_dict"),
    "target connection": ("targetConnections", "target_from_payload", "_target_from_dict"),
    "account": ("connections", "account_from_payload", "_account_from_dict"),
}


def payloads(count: int) -> dict[str, list[str]]:
    """The JSON text of every flow, target connection and account of scale:count."""
    counter = iter(range(10**9))
    world = build(f"scale:{count}", now=1.7e9, new_etag=lambda: f'"{next(counter)}"')
    found: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for objects in world.objects.values():
        for kind, (resource, _, _) in KINDS.items():
            found[kind].extend(json.dumps(obj) for obj in objects[resource].values())
    return found


def load_revision(rev: str) -> ModuleType:
    """``pinmigrate/models.py`` as it was at ``rev``, as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{rev}:pinmigrate/models.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="pinmigrate-bench-")) / "models_then.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("models_then", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["models_then"] = module  # forward references resolve through sys.modules
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Reader:
    label: str
    read: Callable[[Any], Any]


def per_object(fn: Callable[[Any], Any], items: list[Any], repeat: int) -> float:
    """Best of ``repeat`` passes over items, in µs per item."""
    best = min(timeit.repeat(lambda: [fn(x) for x in items], number=1, repeat=repeat))
    return best / len(items) * 1e6


def readers(label: str, module: ModuleType, name: str, quick_name: str) -> list[Reader]:
    """How a module reads one kind of payload: as it is, and without its quick path if any."""
    parse: Callable[..., Any] = getattr(module, name)
    found = [Reader(label, lambda raw: parse(raw, "legacy", sandbox="prod"))]
    quick = getattr(module, quick_name, None)
    if quick is not None:

        def models_only(raw: Any) -> Any:
            setattr(module, quick_name, _give_up)
            try:
                return parse(raw, "legacy", sandbox="prod")
            finally:
                setattr(module, quick_name, quick)

        found.append(Reader(f"{label}, models only (quick path off)", models_only))
    return found


def _give_up(*args: Any) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=600, help="scale:N world to read (default 600)")
    parser.add_argument("--repeat", type=int, default=15, help="passes; the best is kept")
    parser.add_argument("--against", metavar="REV", help="also time models.py at this revision")
    parser.add_argument("--quick", action="store_true", help="scale:60, 3 passes")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeat = 60, 3
    print_machine()

    texts = payloads(args.n)
    then = load_revision(args.against) if args.against else None
    rows: list[tuple[str, str, float, float]] = []
    for kind, (_, name, quick_name) in KINDS.items():
        decoded = [json.loads(t) for t in texts[kind]]
        baseline = per_object(json.loads, texts[kind], args.repeat)
        cases = readers("this tree", models, name, quick_name)
        if then is not None:
            cases += readers(args.against, then, name, quick_name)
        for case in cases:
            case.read(decoded[0])  # build deferred validators outside the timing
        rows.append((kind, "baseline: json.loads", baseline, 1.0))
        for case in cases:
            micros = per_object(case.read, decoded, args.repeat)
            rows.append((kind, case.label, micros, micros / baseline))
        if kind == "flow":
            micros = per_object(models.audiences_of, decoded, args.repeat)
            rows.append((kind, "this tree: audiences_of alone", micros, micros / baseline))

    print(f"scale:{args.n}: {', '.join(f'{len(v)} {k}s' for k, v in texts.items())}\n")
    print("| object | reader | µs per object | ratio to json.loads |")
    print("|---|---|---:|---:|")
    for kind, label, micros, ratio in rows:
        print(f"| {kind} | {label} | {micros:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
