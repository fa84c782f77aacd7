"""Apply throughput: ``pinmigrate apply PLAN`` against a replay of its own requests.

Starts the emulator in its own process with scenario ``scale:N`` and a fixed latency per
request. For each concurrency it resets the emulator, saves a plan (``plan --out``, not
timed), clears the request log, then times the whole ``pinmigrate apply FILE --yes
--no-input --concurrency C --output json`` process, reads the request log back, resets the
emulator again and replays every logged request (``replay.py``). Run from the repository
root:

    python bench/apply_throughput.py             # N = 2000; C = 1, 8, 16
    python bench/apply_throughput.py --quick     # N = 200
    python bench/apply_throughput.py -c 8 -c 16 --repeat 2

Columns (the table is markdown, ready to paste into docs/performance.md):

- window: apply adapts how many writes it has in flight (``pinmigrate/throttle.py``). A
  "fixed" row runs it with ``--max-concurrency C``: its window never grows past C, like the
  replay's C connections (the like-for-like comparison). An "adaptive" row lets it grow to
  16 (``--max-concurrency 16``, the default ceiling) while answers stay fast, as a run with
  the default settings would; "at end" is
  the window when the run ended. Both rows are compared with the same replay over C
  connections.
- actions: the plan's actions; writes: Flow Service writes answered 2xx (the emulator's count).
- requests: every request apply made (IMS token, card lookups, staleness re-read, writes,
  confirming reads).
- wall: the whole apply process, interpreter start-up included.
- replay: every one of those requests sent again, after a reset, by a client that does
  nothing else: writes in the order apply's were answered over C connections, list pages of
  one chain in sequence, chains in parallel, and each request after every request that apply
  had seen answered before sending it (``replay.py`` says exactly how). It is what the
  emulator lets this work take on this machine right now; wall / replay is what apply adds
  (its start-up, CPU, and any time its connections sat idle). Target: at most 1.3x at C = 8.
- floor: writes x latency / concurrency: the writes alone, perfectly spread over C
  connections, with no cost for the emulator's handling. A second, stricter reference.
- CPU: user + system time of the apply process (and of the emulator during it).

If the replay did not send as many requests as apply did, or any answer differs from the
logged one, a line under the table says so: its figure is then not the same work.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    EmulatorProcess,
    apply_args,
    clean_env,
    print_machine,
    run_measured,
    save_plan,
    warm_bytecode,
    workdir,
)
from replay import Entry, replay, schedule


def audience_bodies(plan: dict[str, Any]) -> Callable[[Entry], str | None]:
    """The body of each logged write, rebuilt from the plan (the log keeps no bodies)."""
    audiences = {
        a["target_id"]: a["details"]["audiences"]
        for a in plan["actions"]
        if a["kind"] == "add_audiences"
    }

    def body_for(entry: Entry) -> str | None:
        if entry["method"] != "PATCH":
            return None
        flow_id = entry["path"].rsplit("/", 1)[-1]
        return json.dumps(
            [
                {
                    "op": "add",
                    "path": "/transformations/0/params/segmentSelectors/selectors/-",
                    "value": {"type": "PLATFORM_SEGMENT", "value": audience},
                }
                for audience in audiences.get(flow_id, [])
            ]
        )

    return body_for


#: The ceiling of an adaptive row: the default ``migration.max_concurrency``.
ADAPTIVE_MOST = 16


def bench_one(
    emu: EmulatorProcess,
    tmp: Path,
    env: dict[str, str],
    concurrency: int,
    latency: float,
    *,
    fixed: bool,
) -> dict[str, Any]:
    """One apply at ``concurrency``: ``fixed`` keeps its window there (``--max-concurrency
    C``), else it may grow up to the default ceiling while answers stay fast."""
    emu.reset()
    plan_file = tmp / f"plan-{concurrency}.json"
    plan = save_plan(env, tmp, plan_file)
    emu.clear_requests()
    emu_cpu = emu.cpu_seconds()
    argv = apply_args(plan_file, concurrency)
    argv += ["--max-concurrency", str(concurrency if fixed else ADAPTIVE_MOST)]
    run = run_measured(argv, env, tmp, keep_stdout=True)
    emu_cpu = emu.cpu_seconds() - emu_cpu
    if run.code != 0:
        raise SystemExit(f"apply exited {run.code} at C={concurrency}: {run.stderr[-800:]}")
    report = json.loads(run.stdout)
    statuses: dict[str, int] = {}
    for result in report.get("results", []):
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    summary = emu.requests()
    log = summary["log"]
    if len(log) != summary["total"]:
        raise SystemExit("the emulator's request log overflowed; raise its limit")
    emu.reset()
    replayed = replay(
        emu.url,
        emu.env,
        schedule(log, latency),
        writers=concurrency,
        body_for=audience_bodies(plan),
    )
    writes = int(summary["writes"])
    floor = writes * latency / concurrency
    actions = len(plan["actions"])
    pacing = report.get("pacing") or {}
    window = f"{concurrency}" if fixed else f"{concurrency} to {ADAPTIVE_MOST}"
    return {
        "concurrency": concurrency,
        "window": window,
        "window_at_end": pacing.get("concurrency"),
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
        "replay": replayed.seconds,
        "honesty": replayed.honesty_line(len(log)),
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
    parser.add_argument(
        "--window",
        choices=("both", "fixed", "adaptive"),
        default="both",
        help="fixed: apply's window stays at C (--max-concurrency C); adaptive: it may grow "
        "to the default ceiling (16) while answers stay fast; both (default): one row each",
    )
    args = parser.parse_args()
    kinds = {"both": (True, False), "fixed": (True,), "adaptive": (False,)}[args.window]
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
                for fixed in kinds:
                    rows.append(bench_one(emu, tmp, env, concurrency, latency, fixed=fixed))
    print(f"scale:{n}, latency {args.latency_ms:g} ms per request\n")
    print(
        "| C | window | at end | actions | writes | requests | requests/action | wall | replay "
        "| wall / replay | floor | wall / floor | replay / floor | CPU (apply) "
        "| CPU (emulator) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['window']} | {r['window_at_end']} | {r['actions']} | "
            f"{r['writes']} | {r['requests']} | "
            f"{r['per_action']:.2f} | {r['wall']:.2f} s | {r['replay']:.2f} s | "
            f"{r['wall'] / r['replay']:.2f}x | {r['floor']:.2f} s | "
            f"{r['wall'] / r['floor']:.2f}x | {r['replay'] / r['floor']:.2f}x | "
            f"{r['cpu']:.2f} s | {r['emulator_cpu']:.2f} s |"
        )
    for r in rows:
        if r["honesty"]:
            print(f"\nC = {r['concurrency']}: {r['honesty']}")
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
