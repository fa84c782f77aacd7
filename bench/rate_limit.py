"""Apply under a server rate limit: the write rate achieved against the limit, and the 429s.

Starts the emulator in its own process with scenario ``scale:N``, 20 ms of latency and a
token-bucket limit on Flow Service (``--rate-limit flowservice=RATE/s:retry-after=V:scope=S``;
the bucket holds one second's worth), saves a plan (``plan --out``, not timed), clears the
request log, then times the whole ``pinmigrate apply FILE --yes --no-input --concurrency C
--output json`` process and reads the request log and apply's JSON report. One emulator per
Retry-After variant. Run from the repository root:

    /work/venv/bin/python bench/rate_limit.py                   # N = 2000, 50/s, writes only
    /work/venv/bin/python bench/rate_limit.py --quick           # N = 200
    /work/venv/bin/python bench/rate_limit.py --retry-after date --scope all --rate 20

Columns (the table is markdown, ready to paste into docs/performance.md):

- writes 2xx: Flow Service writes answered 2xx (the emulator's count); attempts: all write
  requests, refused ones included.
- write span: from the first to the last write answered 2xx (the request log's ``ts``, the
  moment each answer was sent). write rate: (writes 2xx - 1) / write span, the rate apply
  sustained between its first and last write; of limit: that rate over RATE (target: at
  least 90 %). The bucket starts full, so the first second may exceed RATE by its burst;
  from 1 s on: the same rate from the first write answered a second after the first one.
- 429s: requests the limiter refused (the log's ``fault == "rate_limit"``), and their share
  of all requests apply made (target: at most 3 %).
- abandoned: the plan's actions apply's JSON report does not show ``done`` or
  ``already_done`` (target: none), and apply's exit code.
- retries: the HTTP retries apply's report counts. wall, CPU: the whole apply process.
"""

from __future__ import annotations

import argparse
import json
import sys
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
from replay import is_write

FINISHED = ("done", "already_done")


def write_rate(log: list[dict[str, Any]]) -> tuple[float, float, float]:
    """From the writes answered 2xx: the span from the first to the last, the rate over it,
    and the rate from one second after the first on (the bucket's initial burst spent)."""
    stamps = sorted(
        e["ts"] for e in log if is_write(e) and e["status"] and 200 <= e["status"] < 300
    )
    if len(stamps) < 2 or stamps[-1] == stamps[0]:
        return 0.0, 0.0, 0.0
    span = stamps[-1] - stamps[0]
    later = [t for t in stamps if t >= stamps[0] + 1.0]
    settled = (len(later) - 1) / (later[-1] - later[0]) if len(later) > 1 else 0.0
    return span, (len(stamps) - 1) / span, settled


def bench_one(args: argparse.Namespace, n: int, variant: str) -> dict[str, Any]:
    spec = f"flowservice={args.rate:g}/s:retry-after={variant}:scope={args.scope}"
    with (
        EmulatorProcess(f"scale:{n}", latency_ms=args.latency_ms, rate_limits=[spec]) as emu,
        workdir("pinmigrate-bench-rate-") as tmp,
    ):
        env = clean_env(tmp, emu.env)
        warm_bytecode(env, tmp)
        plan_file = tmp / "plan.json"
        plan = save_plan(env, tmp, plan_file)
        emu.clear_requests()
        run = run_measured(apply_args(plan_file, args.concurrency), env, tmp, keep_stdout=True)
        summary = emu.requests()
    log = summary["log"]
    if len(log) != summary["total"]:
        raise SystemExit("the emulator's request log overflowed; raise its limit")
    try:
        report = json.loads(run.stdout)
    except ValueError:
        report = {}
    finished = sum(1 for r in report.get("results", []) if r.get("status") in FINISHED)
    span, rate, settled = write_rate(log)
    refused = sum(1 for e in log if e.get("fault") == "rate_limit")
    return {
        "variant": variant,
        "spec": spec,
        "actions": len(plan["actions"]),
        "writes": int(summary["writes"]),
        "attempts": int(summary["write_attempts"]),
        "span": span,
        "rate": rate,
        "share_of_limit": rate / args.rate,
        "settled": settled,
        "refused": refused,
        "requests": summary["total"],
        "refused_share": refused / summary["total"] if summary["total"] else 0.0,
        "abandoned": len(plan["actions"]) - finished,
        "code": run.code,
        "retries": report.get("summary", {}).get("retries"),
        "wall": run.wall,
        "cpu": run.cpu,
        "error": "" if report else (run.stderr.strip().splitlines() or ["no output"])[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="scale:N (default 2000)")
    parser.add_argument("--quick", action="store_true", help="N = 200")
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=50.0, help="writes per second allowed")
    parser.add_argument("--scope", choices=("all", "writes"), default="writes")
    parser.add_argument(
        "--retry-after",
        choices=("seconds", "date", "none"),
        action="append",
        help="the limiter's Retry-After header; repeat for several runs (default: seconds, none)",
    )
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    args = parser.parse_args()
    n = 200 if args.quick else args.n
    print_machine()
    rows = [bench_one(args, n, variant) for variant in args.retry_after or ["seconds", "none"]]
    print(
        f"scale:{n}, latency {args.latency_ms:g} ms per request, concurrency "
        f"{args.concurrency}, limit {args.rate:g}/s on Flow Service "
        f"{'writes' if args.scope == 'writes' else 'requests'}\n"
    )
    print(
        "| Retry-After | writes 2xx | attempts | write span | write rate | of limit "
        "| from 1 s on | 429s | of requests | abandoned | exit | retries | wall | CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['writes']} | {r['attempts']} | {r['span']:.2f} s | "
            f"{r['rate']:.1f}/s | {r['share_of_limit']:.0%} | {r['settled']:.1f}/s | "
            f"{r['refused']} | "
            f"{r['refused_share']:.1%} | {r['abandoned']} of {r['actions']} | {r['code']} | "
            f"{r['retries']} | {r['wall']:.2f} s | {r['cpu']:.2f} s |"
        )
    for r in rows:
        if r["error"]:
            print(f"\n{r['variant']}: apply wrote no JSON report: {r['error']}")
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
