"""How many requests, how long and how much memory ``pinmigrate plan`` takes, by size.

For each N it starts the emulator in its own process (``pinmigrate emulator --scenario
scale:N --latency-ms 20``), runs the real ``pinmigrate plan --output json`` as another
process (stdout discarded) and times that whole process, then reads the emulator's request
log and replays it (``replay.py``). Run from the repository root:

    /work/venv/bin/python bench/plan_requests.py                 # N = 200, 2000, 20000
    /work/venv/bin/python bench/plan_requests.py -n 2000 --repeat 3
    /work/venv/bin/python bench/plan_requests.py --quick         # N = 200, one run

Columns (the table is markdown, ready to paste into docs/performance.md):

- requests: every request the plan made (IMS token, card lookups, list pages).
- per-flow: what reading the same world one object at a time would take: the same list
  pages of flows to learn the ids, then one GET per flow, one GET per flow's target
  connection, one GET per distinct account of either card, plus the token and card lookups.
- wall: the whole ``pinmigrate plan`` process, interpreter start-up and imports included.
- replay: the same requests (same URLs, a list's pages in sequence, lists in parallel, each
  request after those the plan had seen answered before sending it) sent again to the same
  emulator by a client that does nothing else: no JSON decoding, no parsing. It is what the
  emulator itself allows the network phase to be on this machine right now.
- imports: ``python -c "import click, requests, pydantic, rich"``, median of 5 in the same
  run: the libraries plan needs, nothing of pinmigrate.
- wall / (replay + imports): what the tool adds to the least any Python tool on these
  libraries could take. wall / (2 x replay + imports): the issue's target, at most 1.0x
  ("plan wall <= 2x the replay of its own requests plus the start-up of the imports").
- floor: the critical path of sequential requests times the latency: the IMS token, then
  in each sandbox its card lookup pages, then its longest list's pages (sandboxes and the
  lists of a sandbox are read in parallel, a list's pages one after another). No client can
  be faster, whatever the emulator's own cost; wall / floor is the second, stricter ratio.
- start-up: process start until the first request left; network: the first request sent
  until the last answer came; after: the last answer until the process ended (planning,
  sealing and writing the plan). start-up + network + after = wall.
- CPU: user + system time of the plan process. peak RSS: its own high-water mark (VmHWM).

If the replay did not send as many requests as the plan did, or any answer differs from the
logged one, a line under the table says so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.parse
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    LIST_ENDPOINTS,
    EmulatorProcess,
    clean_env,
    median,
    print_machine,
    run_measured,
    warm_bytecode,
    workdir,
)
from replay import replay, schedule

#: The libraries plan needs, nothing of pinmigrate: the start-up in the plan target.
LIBRARIES = "import click, requests, pydantic, rich"


def count_objects(state: dict[str, Any]) -> dict[str, int]:
    """Pinterest flows, target connections and accounts of both cards, in every sandbox."""
    cards = {spec["id"] for spec in state.get("connectionSpecs", []) if "Pinterest" in spec["name"]}
    flows = accounts = 0
    for objects in state["objects"].values():
        for flow in objects["flows"]:
            targets = flow.get("inheritedAttributes", {}).get("targetConnections", [])
            if any(t.get("connectionSpec", {}).get("id") in cards for t in targets):
                flows += 1
        accounts += sum(
            1 for c in objects["connections"] if c.get("connectionSpec", {}).get("id") in cards
        )
    return {"flows": flows, "accounts": accounts}


def chains_by_sandbox(log: list[dict[str, Any]]) -> dict[str, dict[tuple[str, str], list[str]]]:
    """Per sandbox, per (endpoint, filter): the request targets of that chain, in order."""
    found: dict[str, dict[tuple[str, str], list[str]]] = defaultdict(lambda: defaultdict(list))
    for entry in sorted(log, key=lambda e: e["ts"]):
        if entry["endpoint"] not in LIST_ENDPOINTS:
            continue
        query = entry.get("query") or {}
        filters = query.get("property") or []
        key = json.dumps(filters if isinstance(filters, list) else [filters])
        target = entry["path"] + "?" + urllib.parse.urlencode(query, doseq=True)
        found[entry.get("sandbox") or "prod"][(entry["endpoint"], key)].append(target)
    return found


def critical_path(chains: dict[str, dict[tuple[str, str], list[str]]]) -> int:
    """Sequential requests on the longest path: token, card lookups, longest list."""
    longest = 0
    for per_sandbox in chains.values():
        specs = max(
            (len(v) for (ep, _), v in per_sandbox.items() if ep == "GET /connectionSpecs"),
            default=0,
        )
        lists = max(
            (len(v) for (ep, _), v in per_sandbox.items() if ep != "GET /connectionSpecs"),
            default=0,
        )
        longest = max(longest, specs + lists)
    return 1 + longest


def import_libraries(env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", LIBRARIES],
        env=env,
        cwd=cwd,
        check=True,
    )
    return time.perf_counter() - started


def bench(emu: EmulatorProcess, tmp: Path, env: dict[str, str], latency: float) -> dict[str, Any]:
    emu.clear_requests()
    emu_cpu = emu.cpu_seconds()
    started = time.time()
    run = run_measured(["plan", "--output", "json"], env, tmp)
    ended = time.time()
    emu_cpu = emu.cpu_seconds() - emu_cpu
    if run.code != 0:
        raise SystemExit(f"pinmigrate plan exited {run.code}: {run.stderr[-800:]}")
    summary = emu.requests()
    log = summary["log"]
    if len(log) != summary["total"]:
        raise SystemExit("the emulator's request log overflowed; raise its limit")
    chains = chains_by_sandbox(log)
    path = critical_path(chains)
    # Each entry is stamped when its answer was sent, after the injected latency.
    stamps = sorted(entry["ts"] for entry in log)
    first_sent = stamps[0] - latency
    replayed = replay(emu.url, emu.env, schedule(log, latency), writers=0)
    flows_pages = sum(
        len(v) for per in chains.values() for (ep, _), v in per.items() if ep == "GET /flows"
    )
    spec_pages = sum(
        len(v)
        for per in chains.values()
        for (ep, _), v in per.items()
        if ep == "GET /connectionSpecs"
    )
    return {
        "requests": summary["total"],
        "by_endpoint": summary["by_endpoint"],
        "tokens": summary["by_endpoint"].get("POST /ims/token/v3", 0),
        "flow_pages": flows_pages,
        "spec_pages": spec_pages,
        "critical_path": path,
        "floor": path * latency,
        "wall": run.wall,
        "startup": first_sent - started,
        "network": stamps[-1] - first_sent,
        "after": ended - stamps[-1],
        "replay": replayed.seconds,
        "honesty": replayed.honesty_line(len(log)),
        "cpu": run.cpu,
        "emulator_cpu": emu_cpu,
        "peak_mb": run.peak_rss_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, action="append", help="size(s); default 200 2000 20000")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per size")
    parser.add_argument("--quick", action="store_true", help="N = 200, one run")
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeat = [200], 1
    latency = args.latency_ms / 1000
    print_machine()
    rows = []
    for n in args.n or [200, 2000, 20000]:
        with (
            EmulatorProcess(f"scale:{n}", latency_ms=args.latency_ms) as emu,
            workdir("pinmigrate-bench-plan-") as tmp,
        ):
            env = clean_env(tmp, emu.env)
            warm_bytecode(env, tmp)
            startup = median([run_measured(["--version"], env, tmp).wall for _ in range(5)])
            libraries = median([import_libraries(env, tmp) for _ in range(5)])
            objects = count_objects(emu.state())
            for attempt in range(1, args.repeat + 1):
                row = bench(emu, tmp, env, latency)
                row.update(
                    n=n, run=attempt, version_startup=startup, libraries=libraries, **objects
                )
                row["per_flow"] = (
                    row["tokens"]
                    + row["spec_pages"]
                    + row["flow_pages"]
                    + 2 * objects["flows"]
                    + objects["accounts"]
                )
                rows.append(row)
    print(f"latency {args.latency_ms:g} ms per request\n")
    print(
        "| N | run | Pinterest flows | requests | per-flow | ratio | wall | replay | imports "
        "| wall / (replay + imports) | wall / (2 x replay + imports) | floor (path) "
        "| wall / floor | start-up | network | after | CPU | peak RSS |"
    )
    print(
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for r in rows:
        lean = r["replay"] + r["libraries"]
        target = 2 * r["replay"] + r["libraries"]
        print(
            f"| {r['n']} | {r['run']} | {r['flows']} | {r['requests']} | {r['per_flow']} | "
            f"{r['requests'] / r['per_flow']:.1%} | {r['wall']:.2f} s | {r['replay']:.2f} s | "
            f"{r['libraries']:.2f} s | {r['wall'] / lean:.2f}x | {r['wall'] / target:.2f}x | "
            f"{r['floor']:.2f} s ({r['critical_path']}) | {r['wall'] / r['floor']:.2f}x | "
            f"{r['startup']:.2f} s | {r['network']:.2f} s | {r['after']:.2f} s | "
            f"{r['cpu']:.2f} s | {r['peak_mb']:.0f} MB |"
        )
    for r in rows:
        if r["honesty"]:
            print(f"\nN = {r['n']}, run {r['run']}: {r['honesty']}")
    firsts = rows[:: args.repeat]
    print(
        "\nMeasured alongside (median of 5): `pinmigrate --version` (interpreter and CLI): "
        + ", ".join(f"{r['version_startup'] * 1000:.0f} ms" for r in firsts)
        + f"; imports, `python -c '{LIBRARIES}'`: "
        + ", ".join(f"{r['libraries'] * 1000:.0f} ms" for r in firsts)
    )
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
