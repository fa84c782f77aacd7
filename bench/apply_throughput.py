"""Apply throughput: how close ``pinmigrate apply PLAN`` comes to its write floor.

Starts the emulator in its own process with scenario ``scale:N`` and a fixed latency per
request. For each concurrency it resets the emulator, saves a plan (``plan --out``, not
timed), clears the request log, then times the whole ``pinmigrate apply FILE --yes
--no-input --concurrency C --output json`` process and reads the request log back.
Run from the repository root:

    /work/venv/bin/python bench/apply_throughput.py             # N = 2000; C = 1, 8, 16
    /work/venv/bin/python bench/apply_throughput.py --quick     # N = 200
    /work/venv/bin/python bench/apply_throughput.py -c 8 -c 16 --repeat 2

Columns:

- actions: the plan's actions; writes: Flow Service writes answered 2xx (the emulator's count).
- requests: every request apply made (IMS token, staleness re-read, writes, confirming reads).
- floor: writes x latency / concurrency: the writes alone, perfectly spread over C
  connections. The staleness re-read before the first write, the confirming reads after
  each wave, the waves' dependency barriers, start-up and the report are all overhead
  that counts against the tool.
- wall: the whole apply process, interpreter start-up included.
- replay: the same writes (same requests, in the same order, over C connections at once)
  sent again after a reset by a client that does nothing else (no journal, no reads, no
  parsing). It is what the emulator itself allows C parallel writes to take on this machine
  right now: its own handling of each request and the scheduling of its 20 ms sleeps come
  on top of the latency. wall / replay is what apply adds to it.
- CPU: user + system time of the apply process (and of the emulator during it).
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
import urllib.parse
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    WRITE_METHODS,
    EmulatorProcess,
    clean_env,
    print_machine,
    run_measured,
    warm_bytecode,
    workdir,
)


def replay_writes(
    emu: EmulatorProcess, log: list[dict[str, Any]], plan: dict[str, Any], concurrency: int
) -> float:
    """Send the logged writes again, C at a time, after a reset; seconds taken."""
    emu.reset()
    env = emu.env
    parts = urllib.parse.urlsplit(emu.url)
    conn = HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": env["PINMIGRATE_ADOBE_CLIENT_ID"],
            "client_secret": env["PINMIGRATE_ADOBE_CLIENT_SECRET"],
            "scope": "openid,AdobeID,read_organizations",
        }
    )
    conn.request(
        "POST",
        "/ims/token/v3",
        body=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    token = json.loads(conn.getresponse().read())["access_token"]
    conn.close()
    audiences = {
        a["target_id"]: a["details"]["audiences"]
        for a in plan["actions"]
        if a["kind"] == "add_audiences"
    }
    work: queue.Queue[dict[str, Any]] = queue.Queue()
    writes = [e for e in sorted(log, key=lambda e: e["ts"]) if e["method"] in WRITE_METHODS]
    for entry in writes:
        work.put(entry)

    def worker() -> None:
        conn = HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
        while True:
            try:
                entry = work.get_nowait()
            except queue.Empty:
                break
            headers = {
                "Authorization": f"Bearer {token}",
                "x-api-key": env["PINMIGRATE_ADOBE_CLIENT_ID"],
                "x-gw-ims-org-id": env["PINMIGRATE_ADOBE_ORG_ID"],
                "x-sandbox-name": entry["sandbox"] or "prod",
                "Content-Type": "application/json",
                "If-Match": "*",
            }
            body = None
            if entry["method"] == "PATCH":
                flow_id = entry["path"].rsplit("/", 1)[-1]
                body = json.dumps(
                    [
                        {
                            "op": "add",
                            "path": "/transformations/0/params/segmentSelectors/selectors/-",
                            "value": {"type": "PLATFORM_SEGMENT", "value": audience},
                        }
                        for audience in audiences.get(flow_id, [])
                    ]
                )
            query = urllib.parse.urlencode(entry.get("query") or {}, doseq=True)
            target = entry["path"] + (f"?{query}" if query else "")
            conn.request(entry["method"], target, body=body, headers=headers)
            conn.getresponse().read()
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def bench_one(
    emu: EmulatorProcess, tmp: Path, env: dict[str, str], concurrency: int, latency: float
) -> dict[str, Any]:
    emu.reset()
    plan_file = tmp / f"plan-{concurrency}.json"
    made = run_measured(["plan", "--out", str(plan_file), "--output", "json"], env, tmp)
    if made.code != 0:
        raise SystemExit(f"plan --out exited {made.code}: {made.stderr[-500:]}")
    plan = json.loads(plan_file.read_text())
    emu.clear_requests()
    emu_cpu = emu.cpu_seconds()
    run = run_measured(
        [
            "apply",
            str(plan_file),
            "--yes",
            "--no-input",
            "--concurrency",
            str(concurrency),
            "--output",
            "json",
        ],
        env,
        tmp,
        keep_stdout=True,
    )
    emu_cpu = emu.cpu_seconds() - emu_cpu
    if run.code != 0:
        raise SystemExit(f"apply exited {run.code} at C={concurrency}: {run.stderr[-800:]}")
    report = json.loads(run.stdout)
    statuses: dict[str, int] = {}
    for result in report.get("results", []):
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    summary = emu.requests()
    replayed = replay_writes(emu, summary["log"], plan, concurrency)
    writes = int(summary["writes"])
    floor = writes * latency / concurrency
    actions = len(plan["actions"])
    return {
        "concurrency": concurrency,
        "actions": actions,
        "statuses": statuses,
        "writes": writes,
        "requests": summary["total"],
        "by_endpoint": summary["by_endpoint"],
        "per_action": summary["total"] / actions if actions else 0.0,
        "wall": run.wall,
        "cpu": run.cpu,
        "emulator_cpu": emu_cpu,
        "floor": floor,
        "ratio": run.wall / floor if floor else 0.0,
        "replay": replayed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="scale:N (default 2000)")
    parser.add_argument("--quick", action="store_true", help="N = 200")
    parser.add_argument(
        "-c", "--concurrency", type=int, action="append", help="default: 1, 8 and 16"
    )
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per concurrency")
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    args = parser.parse_args()
    n = 200 if args.quick else args.n
    latency = args.latency_ms / 1000
    print_machine()
    rows = []
    with (
        EmulatorProcess(f"scale:{n}", latency_ms=args.latency_ms) as emu,
        workdir("pinmigrate-bench-apply-") as tmp,
    ):
        env = clean_env(tmp, emu.env)
        warm_bytecode(env, tmp)
        for concurrency in args.concurrency or [1, 8, 16]:
            for _ in range(args.repeat):
                rows.append(bench_one(emu, tmp, env, concurrency, latency))
    print(f"scale:{n}, latency {args.latency_ms:g} ms per request\n")
    print(
        "| concurrency | actions | writes | requests | requests/action | wall | floor "
        "| wall / floor | replay | replay / floor | CPU (apply) | CPU (emulator) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['actions']} | {r['writes']} | {r['requests']} | "
            f"{r['per_action']:.2f} | {r['wall']:.2f} s | {r['floor']:.2f} s | "
            f"{r['ratio']:.2f}x | {r['replay']:.2f} s | {r['replay'] / r['floor']:.2f}x | "
            f"{r['cpu']:.2f} s | {r['emulator_cpu']:.2f} s |"
        )
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
