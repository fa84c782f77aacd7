"""How many requests, how long and how much memory ``pinmigrate plan`` takes, by size.

For each N it starts the emulator in this process with scenario ``scale:N`` and a fixed
latency per request, runs the real ``pinmigrate plan --output json`` in a child process
(stdout discarded) against it, reads the emulator's request log, and prints a markdown
table. Run from the repository root:

    /work/venv/bin/python bench/plan_requests.py            # N = 200, 2000, 20000
    /work/venv/bin/python bench/plan_requests.py -n 2000    # one size

Columns:

- requests: every request the plan made (IMS token, card lookups, list pages).
- per-flow: what reading the same world one object at a time would take: the same list
  pages of flows to learn the ids, then one GET per flow, one GET per flow's target
  connection, one GET per distinct account of either card, plus the token and card lookups.
- floor: the longest chain of sequential page requests (per sandbox, per resource, per
  filter) times the latency; nothing can read that list faster. "path" adds what must come
  before any list (the IMS token, then the card lookup): the true critical path.
- wall: time spent inside ``pinmigrate.cli.run`` in the child (imports included, interpreter
  start-up excluded); startup is the child's time before ``run`` was called.
- network phase: first to last request in the emulator's log (plus one latency).
- CPU: user + system time of the child. Where it exceeds the floor, the run is CPU-bound:
  decoding and validating every page's JSON under the GIL, not waiting on the network.
- peak RSS: the child's high-water mark (``VmHWM``), i.e. pinmigrate's alone: the emulator
  and its world live in this process. (``ru_maxrss`` is not used: on Linux it carries over
  the parent's resident size at fork time.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pinmigrate.emulator import LEGACY_SPEC_ID, NEW_SPEC_ID, Emulator  # noqa: E402

LIST_ENDPOINTS = (
    "GET /flows",
    "GET /connections",
    "GET /targetConnections",
    "GET /connectionSpecs",
)

CHILD = r"""
import json, os, resource, sys, time
started = time.perf_counter()
sys.stdout = open(os.devnull, "w")
from pinmigrate.cli import run
t0 = time.perf_counter()
code = run(["plan", "--output", "json"])
wall = time.perf_counter() - t0
sys.stdout.close()
usage = resource.getrusage(resource.RUSAGE_SELF)
# ru_maxrss would also count the parent's pages at fork time (the emulator's whole world);
# VmHWM belongs to this address space only, which exec started afresh.
try:
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    peak_kb = int(fields["VmHWM"].split()[0])
except OSError:
    peak_kb = usage.ru_maxrss
result = {"code": code, "wall": wall, "startup": t0 - started, "peak_kb": peak_kb,
          "cpu": usage.ru_utime + usage.ru_stime}
with open(sys.argv[1], "w") as out:
    json.dump(result, out)
"""


def count_objects(emu: Emulator) -> dict[str, int]:
    """Pinterest flows, target connections and accounts of both cards, in every sandbox."""
    cards = {LEGACY_SPEC_ID, NEW_SPEC_ID}
    flows = accounts = 0
    for objects in emu.state.objects.values():
        for flow in objects["flows"].values():
            targets = flow.get("inheritedAttributes", {}).get("targetConnections", [])
            if any(t.get("connectionSpec", {}).get("id") in cards for t in targets):
                flows += 1
        accounts += sum(
            1
            for c in objects["connections"].values()
            if c.get("connectionSpec", {}).get("id") in cards
        )
    return {"flows": flows, "accounts": accounts}


def chains(log: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    """Sequential page requests per (sandbox, endpoint, filter): each is one paging chain."""
    found: Counter[tuple[str, str, str]] = Counter()
    for entry in log:
        if entry["endpoint"] not in LIST_ENDPOINTS:
            continue
        query = entry.get("query") or {}
        filters = query.get("property") or []
        key = json.dumps(filters if isinstance(filters, list) else [filters])
        found[(entry.get("sandbox") or "prod", entry["endpoint"], key)] += 1
    return found


def bench(n: int, latency_ms: float) -> dict[str, Any]:
    latency = latency_ms / 1000
    with (
        Emulator(scenario=f"scale:{n}", port=0, latency_ms=latency_ms) as emu,
        tempfile.TemporaryDirectory() as tmp,
    ):
        objects = count_objects(emu)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PINMIGRATE_")}
        env.update(emu.env())
        env.update(
            PINMIGRATE_STATE_DIR=str(Path(tmp) / "state"),
            XDG_CONFIG_HOME=str(Path(tmp) / "config"),
            PYTHONPATH=str(ROOT),
        )
        emu.clear_requests()
        result_file = Path(tmp) / "result.json"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", CHILD, str(result_file)], env=env, cwd=tmp, check=True
        )
        process_wall = time.perf_counter() - started
        child = json.loads(result_file.read_text())
        if child["code"] != 0:
            raise SystemExit(f"pinmigrate plan exited {child['code']} at N={n}")
        summary = emu.requests()
    log = summary["log"]
    pages = chains(log)
    longest = max(pages.values())
    flow_pages = sum(v for (_, endpoint, _), v in pages.items() if endpoint == "GET /flows")
    spec_pages = sum(
        v for (_, endpoint, _), v in pages.items() if endpoint == "GET /connectionSpecs"
    )
    tokens = summary["by_endpoint"].get("POST /ims/token/v3", 0)
    per_flow = tokens + spec_pages + flow_pages + 2 * objects["flows"] + objects["accounts"]
    stamps = [entry["ts"] for entry in log]
    # Each entry is stamped when its answer was sent, after the injected latency.
    network = max(stamps) - min(stamps) + latency
    floor = longest * latency
    path = (1 + 1 + longest) * latency
    return {
        "n": n,
        "flows": objects["flows"],
        "requests": summary["total"],
        "by_endpoint": summary["by_endpoint"],
        "per_flow": per_flow,
        "ratio": summary["total"] / per_flow,
        "wall": child["wall"],
        "startup": child["startup"],
        "process_wall": process_wall,
        "longest_chain": longest,
        "floor": floor,
        "path": path,
        "wall_over_floor": child["wall"] / floor,
        "network": network,
        "cpu": child["cpu"],
        "peak_mb": child["peak_kb"] / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-n", type=int, action="append", choices=(200, 2000, 20000), help="size(s) to run"
    )
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    args = parser.parse_args()
    rows = [bench(n, args.latency_ms) for n in (args.n or [200, 2000, 20000])]
    print(f"latency {args.latency_ms:g} ms per request\n")
    print(
        "| N | Pinterest flows | requests | per-flow requests | ratio | wall | floor "
        "(longest chain) | wall / floor | path | network phase | CPU | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['n']} | {r['flows']} | {r['requests']} | {r['per_flow']} | "
            f"{r['ratio']:.1%} | {r['wall']:.2f} s | {r['floor']:.2f} s "
            f"({r['longest_chain']} pages) | {r['wall_over_floor']:.2f}x | {r['path']:.2f} s | "
            f"{r['network']:.2f} s | {r['cpu']:.2f} s | {r['peak_mb']:.0f} MB |"
        )
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
