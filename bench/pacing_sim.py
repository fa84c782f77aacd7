"""The throttle against limiter shapes the emulator does not serve: a quick simulation.

``pinmigrate/throttle.py`` is driven by real threads, as ``HttpClient`` drives it, against a
limiter in this process (no HTTP): each write waits the latency, then asks the limiter; a
refused write is retried after its ``Retry-After`` (whole seconds, rounded up), or, without
one, after full-jitter backoff as ``http.RetryPolicy`` does. Limiters: a token bucket
holding one second's worth (the emulator's default), a bucket of 10 tokens, a bucket of one
token, and a fixed window of RATE requests per calendar second. Run from the repository
root (each case takes N / RATE seconds or more; they run one after the other):

    python bench/pacing_sim.py                  # 4200 writes at 50/s: ~15 min
    python bench/pacing_sim.py --quick          # 600 writes
    python bench/pacing_sim.py --case bucket-1s --retry-after none

Columns: write rate (writes / span from the first send to the last success) and its share
of the limit; refused: the share of all attempts answered 429; refusals: those the
throttle reacted to; window at end and least; the pace at the end.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pinmigrate.throttle import Throttle


class Limiter:
    """A token bucket (``burst`` tokens, refilled at ``rate``) or a fixed window."""

    def __init__(self, rate: float, burst: float, *, window: bool = False) -> None:
        self.rate, self.burst, self.window = rate, burst, window
        self.tokens = burst
        self.stamp = time.monotonic()
        self.second = math.floor(self.stamp)
        self.count = 0
        self.lock = threading.Lock()

    def take(self) -> float | None:
        """None when admitted, else the seconds until a request would be."""
        with self.lock:
            now = time.monotonic()
            if self.window:
                second = math.floor(now)
                if second != self.second:
                    self.second, self.count = second, 0
                if self.count < self.rate:
                    self.count += 1
                    return None
                return self.second + 1 - now
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return None
            return (1 - self.tokens) / self.rate


CASES: dict[str, Callable[[float], Limiter]] = {
    "bucket-1s": lambda rate: Limiter(rate, rate),
    "bucket-10": lambda rate: Limiter(rate, 10),
    "bucket-1": lambda rate: Limiter(rate, 1),
    "fixed-window": lambda rate: Limiter(rate, 0, window=True),
}


def simulate(
    writes: int, limiter: Limiter, retry_after: str, *, start: int, most: int, latency: float
) -> dict[str, float | str]:
    throttle = Throttle(start, most)
    left = list(range(writes))
    lock = threading.Lock()
    counts = {"ok": 0, "refused": 0, "attempts": 0}
    first: list[float] = []
    last = [0.0]

    def one() -> None:
        attempt = 0
        while True:
            attempt += 1
            ticket = throttle.admit("POST")
            sent = time.monotonic()
            time.sleep(latency)
            wait = limiter.take()
            with lock:
                counts["attempts"] += 1
                if not first:
                    first.append(sent)
            if wait is None:
                throttle.settle(ticket, 200, time.monotonic() - sent, None)
                with lock:
                    counts["ok"] += 1
                    last[0] = time.monotonic()
                return
            header = float(max(1, math.ceil(wait))) if retry_after == "seconds" else None
            throttle.settle(ticket, 429, time.monotonic() - sent, header)
            with lock:
                counts["refused"] += 1
            backoff = random.uniform(0, 0.5 * 2 ** (attempt - 1))
            time.sleep(header if header is not None else backoff)

    def writer() -> None:
        while True:
            with lock:
                if not left:
                    return
                left.pop()
            one()

    threads = [threading.Thread(target=writer) for _ in range(most)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = throttle.state()
    span = last[0] - first[0]
    return {
        "rate": counts["ok"] / span,
        "refused": counts["refused"] / counts["attempts"],
        "refusals": state.refusals,
        "window": state.window,
        "least": state.least_window,
        "pace": "-" if state.write_rate is None else f"{state.write_rate:.0f}/s",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=4200, help="writes (default 4200)")
    parser.add_argument("--quick", action="store_true", help="600 writes")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--retry-after", choices=("seconds", "none"), action="append")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    writes = 600 if args.quick else args.n
    print(f"{writes} writes, limit {args.rate:g}/s, {args.latency_ms:g} ms, start 8, most 16\n")
    print("| limiter | Retry-After | write rate | of limit | refused | refusals | window | pace |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for case in args.case or list(CASES):
        for retry_after in args.retry_after or ["seconds", "none"]:
            r = simulate(
                writes,
                CASES[case](args.rate),
                retry_after,
                start=8,
                most=16,
                latency=args.latency_ms / 1000,
            )
            print(
                f"| {case} | {retry_after} | {r['rate']:.1f}/s "
                f"| {float(r['rate']) / args.rate:.0%} "
                f"| {r['refused']:.1%} | {r['refusals']} | {r['window']} (least {r['least']}) "
                f"| {r['pace']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
