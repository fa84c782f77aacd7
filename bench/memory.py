"""Peak memory of ``pinmigrate plan`` at scale:20000 and of ``apply`` at scale:2000.

Targets (issue 14): plan at N = 20000 at most 300 MB; apply at N = 2000 at most 150 MB.

The emulator runs in its own process; each command runs in another and reports its own
high-water mark (``VmHWM``) at exit (``rss/sitecustomize.py``). plan runs once with
``--output json`` (the plan streamed to stdout, discarded) and once with ``--out FILE`` and
text output (the plan saved, the table rendered), against an emulator with no added latency.
apply runs as ``bench/apply_throughput.py`` runs it (``apply FILE --yes --no-input
--concurrency 8 --output json``, 20 ms per request, a plan saved untimed after a reset). A
baseline measured in the same run: ``pinmigrate --version`` (the interpreter and the CLI
alone). Run from the repository root:

    /work/venv/bin/python bench/memory.py [-n 20000] [--apply-n 2000] [--repeat 2]
    /work/venv/bin/python bench/memory.py --quick       # plan at 2000, apply at 200, once
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    EmulatorProcess,
    Run,
    apply_args,
    clean_env,
    print_machine,
    run_measured,
    save_plan,
    warm_bytecode,
    workdir,
)

PLAN_TARGET_MB = 300
APPLY_TARGET_MB = 150


def checked(name: str, run: Run) -> Run:
    if run.code != 0:
        raise SystemExit(f"{name} exited {run.code}: {run.stderr[-800:]}")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20000, help="plan at scale:N (default 20000)")
    parser.add_argument("--apply-n", type=int, default=2000, help="apply at scale:N (2000)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="plan at 2000, apply at 200, once")
    args = parser.parse_args()
    if args.quick:
        args.n, args.apply_n, args.repeat = 2000, 200, 1
    print_machine()
    rows: list[tuple[str, float, float, float, int | None]] = []
    with (
        EmulatorProcess(f"scale:{args.n}", latency_ms=0) as emu,
        workdir("pinmigrate-bench-memory-") as tmp,
    ):
        env = clean_env(tmp, emu.env)
        warm_bytecode(env, tmp)
        cases = {
            "pinmigrate --version (baseline)": (["--version"], None),
            f"plan --output json, scale:{args.n}": (["plan", "--output", "json"], PLAN_TARGET_MB),
            f"plan --out FILE (text output), scale:{args.n}": (
                ["plan", "--out", str(tmp / "plan.json")],
                PLAN_TARGET_MB,
            ),
        }
        for name, (argv, target) in cases.items():
            for _ in range(args.repeat):
                run = checked(name, run_measured(argv, env, tmp))
                rows.append((name, run.peak_rss_mb, run.wall, run.cpu, target))
        size = (tmp / "plan.json").stat().st_size / 1024 / 1024
    with (
        EmulatorProcess(f"scale:{args.apply_n}", latency_ms=20) as emu,
        workdir("pinmigrate-bench-memory-") as tmp,
    ):
        env = clean_env(tmp, emu.env)
        warm_bytecode(env, tmp)
        name = f"apply --concurrency 8, scale:{args.apply_n}, 20 ms"
        for _ in range(args.repeat):
            emu.reset()
            save_plan(env, tmp, tmp / "plan.json")
            run = checked(name, run_measured(apply_args(tmp / "plan.json", 8), env, tmp))
            rows.append((name, run.peak_rss_mb, run.wall, run.cpu, APPLY_TARGET_MB))
    print(f"plan file at scale:{args.n}: {size:.0f} MB\n")
    print("| command | peak RSS | wall | CPU | target | met |")
    print("|---|---:|---:|---:|---:|---|")
    for name, peak, wall, cpu, target in rows:
        limit, verdict = ("", "") if target is None else (f"{target} MB", "yes")
        if target is not None and peak > target:
            verdict = "**no**"
        print(f"| {name} | {peak:.0f} MB | {wall:.2f} s | {cpu:.2f} s | {limit} | {verdict} |")


if __name__ == "__main__":
    main()
