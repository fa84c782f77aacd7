"""Loaded by every bench child (``PYTHONPATH``): reports the process's own peak RSS at exit.

``wait4``'s ``ru_maxrss`` is no use here: on Linux a child starts from its parent's
high-water mark (fork/vfork before exec), so a bench that holds a large emulator state
would be charged to the command. ``VmHWM`` belongs to the exec'd process alone.
"""

import atexit
import os

_target = os.environ.get("PINMIGRATE_BENCH_PEAK_FILE")


def _report() -> None:
    if not _target:
        return
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                with open(_target, "w") as out:
                    out.write(line.split()[1])
                return


if _target:
    atexit.register(_report)
