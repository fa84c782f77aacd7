"""Start-up cost: `pinmigrate --help` and `--version` against `python -c "import click"`.

Prints a markdown table of median wall times over repeated runs and their ratio to the
baseline measured in the same run. Target: ratio at most 2x.

    python bench/startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "baseline: python -c 'import click'": [sys.executable, "-c", "import click"],
    "pinmigrate --help": [sys.executable, "-m", "pinmigrate", "--help"],
    "pinmigrate --version": [sys.executable, "-m", "pinmigrate", "--version"],
}


def median_seconds(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    # Interleave warm-up runs so that no case profits from a warmer page cache.
    for argv in CASES.values():
        median_seconds(argv, 2)
    results = {name: median_seconds(argv, args.runs) for name, argv in CASES.items()}
    baseline = next(iter(results.values()))
    print(f"| command | median ms ({args.runs} runs) | ratio to baseline |")
    print("|---|---:|---:|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds * 1000:.1f} | {seconds / baseline:.2f}x |")


if __name__ == "__main__":
    main()
