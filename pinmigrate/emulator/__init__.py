"""A local emulator of Adobe IMS, Flow Service and Pinterest v5, for demos and tests.

``state`` composes one backend per service (``ims``, ``flowservice``, ``pinterest``) with
``faults``; ``scenarios`` holds the worlds it can be reset to, ``server`` the HTTP skin and
the in-process :class:`Emulator` runner.
"""

from __future__ import annotations

from pinmigrate.emulator.model import (
    CLIENT_ID,
    CLIENT_SECRET,
    LEGACY_SPEC_ID,
    LEGACY_SPEC_NAME,
    NEW_SPEC_ID,
    NEW_SPEC_NAME,
    ORG_ID,
    PINTEREST_APP_ID,
    PINTEREST_APP_SECRET,
)
from pinmigrate.emulator.server import Emulator
from pinmigrate.emulator.state import Config, EmulatorState, Faults, parse_fault_spec

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "LEGACY_SPEC_ID",
    "LEGACY_SPEC_NAME",
    "NEW_SPEC_ID",
    "NEW_SPEC_NAME",
    "ORG_ID",
    "PINTEREST_APP_ID",
    "PINTEREST_APP_SECRET",
    "Config",
    "Emulator",
    "EmulatorState",
    "Faults",
    "parse_fault_spec",
]
