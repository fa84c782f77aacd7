"""What the bench scripts share: an emulator in its own process, and timed pinmigrate runs.

The emulator runs as ``python -m pinmigrate emulator`` in a separate process, so that it
never competes with the command under test for one interpreter's GIL; the command runs as
``python -m pinmigrate ...`` in another, and the bench times the whole process (interpreter
start-up, imports and all). The bench talks to the emulator only over its /_emulator/ API.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Flow Service list endpoints: each (sandbox, endpoint, filter) pages in one sequential chain.
LIST_ENDPOINTS = (
    "GET /flows",
    "GET /connections",
    "GET /targetConnections",
    "GET /connectionSpecs",
)
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
PYC_CACHE = Path(tempfile.gettempdir()) / "pinmigrate-bench-pycache"


def machine() -> dict[str, str]:
    """The facts a reader needs to judge the figures: cores, memory, CPU, Python."""
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError), open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "python": sys.version.split()[0],
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def print_machine() -> None:
    m = machine()
    print(
        f"machine: {m['cores']} cores ({m['cpu']}), {m['memory']} RAM, Python {m['python']}, "
        f"load average at start {m['load']}\n"
    )


def clean_env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: no PINMIGRATE_* or proxy settings from the caller."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PINMIGRATE_") and k.lower() not in ("http_proxy", "https_proxy")
    }
    env.update(
        PINMIGRATE_STATE_DIR=str(tmp / "state"),
        XDG_CONFIG_HOME=str(tmp / "config"),
        # rss/ holds a sitecustomize that reports each child's own peak RSS at exit.
        PYTHONPATH=f"{ROOT / 'bench' / 'rss'}{os.pathsep}{ROOT}",
        NO_COLOR="1",
        # As an installed package would: imports read cached bytecode instead of compiling
        # every module on every start (this sandbox sets PYTHONDONTWRITEBYTECODE); the cache
        # lives outside the checkout.
        PYTHONPYCACHEPREFIX=str(PYC_CACHE),
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra or {})
    return env


class EmulatorProcess:
    """``pinmigrate emulator`` in a child process, steered over HTTP."""

    def __init__(
        self,
        scenario: str,
        *,
        latency_ms: float,
        page_size: int = 100,
        rate_limits: Sequence[str] = (),
    ) -> None:
        self.scenario = scenario
        self.latency_ms = latency_ms
        self.page_size = page_size
        #: ``--rate-limit`` SPECs, e.g. ``"flowservice=50/s:scope=writes"``.
        self.rate_limits = tuple(rate_limits)
        self.env: dict[str, str] = {}
        self.url = ""
        self._tmp = tempfile.TemporaryDirectory(prefix="pinmigrate-bench-emu-")
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> EmulatorProcess:
        argv = [
            sys.executable,
            "-m",
            "pinmigrate",
            "emulator",
            "--scenario",
            self.scenario,
            "--latency-ms",
            f"{self.latency_ms:g}",
            "--page-size",
            str(self.page_size),
            "--port",
            "0",
        ]
        for spec in self.rate_limits:
            argv += ["--rate-limit", spec]
        self._proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=clean_env(Path(self._tmp.name)),
            cwd=self._tmp.name,
        )
        assert self._proc.stdout is not None
        # The announcement: one comment line, then one `export NAME=value` line per setting.
        deadline = time.monotonic() + 300
        while "PINMIGRATE_PINTEREST_API_URL" not in self.env:
            line = self._proc.stdout.readline()
            if not line:
                raise SystemExit(f"the emulator exited early ({self._proc.wait()})")
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                self.env[name] = shlex.split(value)[0] if value else ""
            if time.monotonic() > deadline:
                raise SystemExit("the emulator did not announce itself in time")
        self.url = self.env["PINMIGRATE_ADOBE_PLATFORM_URL"]
        while True:
            try:
                self.control("GET", "state?summary=true")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
        self._tmp.cleanup()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/_emulator/{path}",
            data=data,
            method=method,
            # The control API changes state only for JSON requests, bodiless ones included.
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def reset(self) -> None:
        self.control("POST", "reset", {"scenario": self.scenario})

    def clear_requests(self) -> None:
        self.control("DELETE", "requests")

    def requests(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "requests")
        return result

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "state")
        return result

    def cpu_seconds(self) -> float:
        """User + system CPU the emulator process has used so far (from /proc)."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class Run:
    """One timed child process."""

    argv: list[str]
    code: int
    wall: float
    cpu: float
    peak_rss_mb: float
    stdout: str = ""
    stderr: str = ""


def run_measured(
    args: Sequence[str], env: dict[str, str], cwd: Path, *, keep_stdout: bool = False
) -> Run:
    """Time ``python -m pinmigrate ARGS`` as a whole process, with its CPU time and peak RSS."""
    argv = [sys.executable, "-m", "pinmigrate", *args]
    peak_file = cwd / ".peak-rss-kb"
    peak_file.unlink(missing_ok=True)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            env={**env, "PINMIGRATE_BENCH_PEAK_FILE": str(peak_file)},
            cwd=cwd,
            stdout=out if keep_stdout else subprocess.DEVNULL,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return Run(
        argv=argv,
        code=proc.returncode,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        # VmHWM as the child saw it (rss/sitecustomize.py); wait4's figure only as a fallback.
        peak_rss_mb=(int(peak_file.read_text()) if peak_file.exists() else usage.ru_maxrss) / 1024,
        stdout=stdout,
        stderr=stderr,
    )


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def warm_bytecode(env: dict[str, str], cwd: Path) -> None:
    """Fill the bytecode cache once, so that no timed run pays for compiling."""
    run_measured(["--version"], env, cwd)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import pinmigrate.commands.plan, pinmigrate.commands.apply, "
            "pinmigrate.adobe, pinmigrate.models, pinmigrate.apply, pinmigrate.render",
        ],
        env=env,
        cwd=cwd,
        check=True,
    )


def save_plan(env: dict[str, str], cwd: Path, plan_file: Path) -> dict[str, Any]:
    """``pinmigrate plan --out FILE`` (not timed); the plan as saved."""
    made = run_measured(["plan", "--out", str(plan_file), "--output", "json"], env, cwd)
    if made.code != 0:
        raise SystemExit(f"plan --out exited {made.code}: {made.stderr[-500:]}")
    plan: dict[str, Any] = json.loads(plan_file.read_text())
    return plan


def apply_args(plan_file: Path, concurrency: int) -> list[str]:
    """The apply the benches time: the saved plan, no questions, the JSON report on stdout."""
    return [
        "apply",
        str(plan_file),
        "--yes",
        "--no-input",
        "--concurrency",
        str(concurrency),
        "--output",
        "json",
    ]
