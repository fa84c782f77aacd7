"""Peak memory of ``pinmigrate plan`` at scale:N (default 20000; target under 300 MB).

The emulator runs in its own process; ``pinmigrate plan`` runs in another and reports its
own high-water mark (``VmHWM``) at exit, once with ``--output json`` (the plan streamed to
stdout, discarded) and once with ``--out FILE`` and text output (the plan saved, the table
rendered). A baseline measured in the same run: ``pinmigrate --version`` (the interpreter
and the CLI alone). Run from the repository root:

    /work/venv/bin/python bench/memory.py [-n 20000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    EmulatorProcess,
    clean_env,
    print_machine,
    run_measured,
    warm_bytecode,
    workdir,
)

TARGET_MB = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print_machine()
    rows: list[tuple[str, float, float, float]] = []
    with (
        EmulatorProcess(f"scale:{args.n}", latency_ms=0) as emu,
        workdir("pinmigrate-bench-memory-") as tmp,
    ):
        env = clean_env(tmp, emu.env)
        warm_bytecode(env, tmp)
        cases = {
            "pinmigrate --version (baseline)": ["--version"],
            "plan --output json": ["plan", "--output", "json"],
            "plan --out FILE (text output)": ["plan", "--out", str(tmp / "plan.json")],
        }
        for name, argv in cases.items():
            for _ in range(args.repeat):
                run = run_measured(argv, env, tmp)
                if run.code != 0:
                    raise SystemExit(f"{name} exited {run.code}: {run.stderr[-800:]}")
                rows.append((name, run.peak_rss_mb, run.wall, run.cpu))
        size = (tmp / "plan.json").stat().st_size / 1024 / 1024
    print(f"scale:{args.n} (no added latency), plan file {size:.0f} MB\n")
    print("| command | peak RSS | wall | CPU | under 300 MB |")
    print("|---|---:|---:|---:|---|")
    for name, peak, wall, cpu in rows:
        verdict = "" if name.endswith("(baseline)") else ("yes" if peak < TARGET_MB else "NO")
        print(f"| {name} | {peak:.0f} MB | {wall:.2f} s | {cpu:.2f} s | {verdict} |")


if __name__ == "__main__":
    main()
