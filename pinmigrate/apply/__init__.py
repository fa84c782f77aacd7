"""Carrying out a plan: the only code that writes to Adobe.

``world`` re-reads what the actions rely on, ``verdict`` judges each action (pure),
``writes`` sends each kind of write behind one guarded loop, ``engine`` runs them by dependency,
``runs`` waits for first runs, ``results`` is what the run reports.
"""

from pinmigrate.apply.engine import Executor, apply_plan
from pinmigrate.apply.results import ActionResult, ApplyReport, RunCheck

__all__ = ["ActionResult", "ApplyReport", "Executor", "RunCheck", "apply_plan"]
