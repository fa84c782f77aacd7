"""Start-up cost: `pinmigrate --help` and `--version` against `python -c "import click"`.

Prints a markdown table of median wall times over repeated runs and their ratio to the
baseline measured in the same run. Target: ratio at most 2x.

    python bench/startup.py [--runs 30]
    python bench/startup.py --quick     # 5 runs each

The cases take turns (one run of each, then again), so that a burst of load from
elsewhere on the machine falls on all of them alike rather than on one. Every case runs in
the same environment as the other benches: bytecode cached outside the checkout, as an
installed package has it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import clean_env, median, print_machine, warm_bytecode, workdir

CASES = {
    "baseline: python -c 'import click'": [sys.executable, "-c", "import click"],
    "pinmigrate --help": [sys.executable, "-m", "pinmigrate", "--help"],
    "pinmigrate --version": [sys.executable, "-m", "pinmigrate", "--version"],
}


def once(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="5 runs each")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="compile every module on every start (PYTHONDONTWRITEBYTECODE=1, as this "
        "sandbox's shell sets it): pinmigrate's modules then pay, click's installed ones not",
    )
    args = parser.parse_args()
    if args.quick:
        args.runs = 5
    print_machine()
    with workdir("pinmigrate-bench-startup-") as tmp:
        env = clean_env(tmp)
        if args.no_bytecode_cache:
            env.pop("PYTHONPYCACHEPREFIX", None)
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            warm_bytecode(env, tmp)
        times: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(2):  # warm-up: page cache and bytecode, not timed
            for argv in CASES.values():
                once(argv, env, tmp)
        for _ in range(args.runs):
            for name, argv in CASES.items():
                times[name].append(once(argv, env, tmp))
    results = {name: median(values) for name, values in times.items()}
    baseline = next(iter(results.values()))
    cache = "no bytecode cache" if args.no_bytecode_cache else "bytecode cached"
    print(f"{cache}\n")
    print(f"| command | median ms ({args.runs} runs) | ratio to baseline |")
    print("|---|---:|---:|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds * 1000:.1f} | {seconds / baseline:.2f}x |")


if __name__ == "__main__":
    main()
