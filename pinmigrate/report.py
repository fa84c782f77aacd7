"""How a run shows itself: progress on stderr while it runs, a table at the end.

Progress goes to stderr only (a rich bar on a terminal, one plain line per action
otherwise), so stdout carries nothing but the final report or its JSON.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pinmigrate.apply.results import ActionResult, ApplyReport

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

    from pinmigrate.app import App
    from pinmigrate.apply.reconnects import PersonReconnect
    from pinmigrate.discovery import Progress

#: status -> (symbol, words, colour)
STATUS_STYLE: dict[str, tuple[str, str, str]] = {
    "done": ("✓", "done", "green"),
    "already_done": ("=", "already done", "cyan"),
    "skipped": ("-", "skipped", "yellow"),
    "failed": ("✗", "failed", "red"),
    "pending": ("?", "not run", "yellow"),
}


def progress_line(index: int, total: int, result: ActionResult) -> str:
    """``[3/12] enable_flow prod 'Loyalty members' done`` (plus why, when it did not succeed)."""
    words = STATUS_STYLE.get(result.status, ("", result.status, ""))[1]
    why = f": {result.error}" if result.error and result.status in ("failed", "skipped") else ""
    note = f" ({result.note})" if result.note and not why else ""
    return f"[{index}/{total}] {result.label} {words}{why}{note}"


#: Without a terminal, an unchanged waiting line is repeated this often (seconds).
STATUS_EVERY = 10.0


class LineProgress:
    """One plain line per finished action on stderr (CI logs, pipes)."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.total = 0
        self.count = 0
        self._lock = threading.Lock()
        self._clock = clock
        self._last_status: tuple[str, float] | None = None

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, result: ActionResult) -> None:
        with self._lock:
            self.count += 1
            line = progress_line(self.count, self.total, result)
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def finish(self) -> None:
        return None

    def status(self, text: str) -> None:
        """A waiting line: printed when what it waits for changes, else every few seconds."""
        topic = text.split(" (", 1)[0]
        now = self._clock()
        last = self._last_status
        if last is not None and last[0] == topic and now - last[1] < STATUS_EVERY:
            return
        self._last_status = (topic, now)
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


class BarProgress:
    """A rich progress bar on a terminal; actions that did not succeed are printed above it."""

    def __init__(self, console: Console, description: str = "applying") -> None:
        self.console = console
        self.description = description
        self.count = 0
        self.total = 0
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def start(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.total = total
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            console=self.console,
            transient=True,
        )
        self._task = self._bar.add_task(self.description, total=total, last="")
        self._bar.start()

    def advance(self, result: ActionResult) -> None:
        self.count += 1
        # What did not succeed, and each account a person reconnected, stay above the bar.
        if result.status in ("failed", "skipped") or (
            result.kind == "reconnect_account" and result.status == "done"
        ):
            self.console.print(
                progress_line(self.count, self.total, result), markup=False, highlight=False
            )
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=1, last=result.label, description=self.description)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def status(self, text: str) -> None:
        """Shown in place of the bar's description until the next action ends."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=text)


#: At most this many browser tabs are opened for reconnects; the rest are listed only.
MAX_PAGES_OPENED = 5


def ask_person(
    console: Console, open_page: Callable[[str], bool] | None = None
) -> Callable[[Sequence[PersonReconnect]], None]:
    """Tells the person which accounts to reconnect in Adobe (stderr), and opens the pages
    with ``open_page`` when a person is there to see them (distinct pages, a few at most)."""
    from pinmigrate.apply.reconnects import UI_STEPS

    def ask(requests: Sequence[PersonReconnect]) -> None:
        count = len(requests)
        console.print(
            f"{count} account{'s' if count != 1 else ''} need{'s' if count == 1 else ''} "
            f"Reconnect OAuth in Adobe ({UI_STEPS}):",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        for request in requests:
            console.print(f"  {request.line}", markup=False, highlight=False, soft_wrap=True)
        if open_page is None:
            return
        pages = list(dict.fromkeys(r.page for r in requests))
        for page in pages[:MAX_PAGES_OPENED]:
            open_page(page)
        if len(pages) > MAX_PAGES_OPENED:
            console.print(
                f"Opened the first {MAX_PAGES_OPENED} pages; open the others from the list.",
                markup=False,
                highlight=False,
            )

    return ask


def make_progress(console: Console, *, description: str = "applying") -> LineProgress | BarProgress:
    """A bar when stderr is a terminal, plain lines otherwise."""
    if console.is_terminal and not console.is_dumb_terminal:
        return BarProgress(console, description)
    return LineProgress(console)


def _why(result: ActionResult) -> str:
    if result.error:
        return result.error
    return result.note


def render_report(console: Console, report: ApplyReport) -> None:
    """The final table: what was done, already done, skipped and failed, and why."""
    from rich.table import Table
    from rich.text import Text

    counts = report.counts()
    what = "Rollback" if report.kind.endswith("rollback") else "Apply"
    of = f" of run {report.extra['rollback_of']}" if report.extra.get("rollback_of") else ""
    parts = [
        f"{counts[k]} {STATUS_STYLE[k][1]}" for k in ("done", "already_done", "skipped", "failed")
    ]
    if report.retries:
        parts.append(f"{report.retries} HTTP {'retry' if report.retries == 1 else 'retries'}")
    console.print(
        Text(f"{what}{of} (run {report.run_id}): " + ", ".join(parts), style="bold"),
    )
    if report.results:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("")
        table.add_column("status")
        table.add_column("action")
        table.add_column("sandbox")
        table.add_column("object", overflow="fold")
        table.add_column("why", overflow="fold")
        for result in report.results:
            symbol, words, colour = STATUS_STYLE.get(result.status, ("?", result.status, ""))
            table.add_row(
                Text(symbol, style=colour),
                Text(words, style=colour),
                result.kind,
                result.sandbox,
                Text(result.target_name or result.target_id),
                Text(_why(result)),
            )
        console.print(table)
    else:
        console.print("Nothing to change.")
    render_first_runs(console, report)
    if report.blockers or report.orphans:
        console.print(Text("Not handled (no action was planned for these):", style="bold"))
        for blocker in report.blockers:
            console.print(
                Text(f"  blocked  {blocker.sandbox} {blocker.flow_name!r}: {blocker.message}")
            )
        for orphan in report.orphans:
            reason = orphan.reason or "no twin on the new card"
            console.print(Text(f"  orphan   {orphan.sandbox} {orphan.flow_name!r}: {reason}"))
    for note in report.notes:
        console.print(Text(f"Note: {note}"))


def render_first_runs(console: Console, report: ApplyReport) -> None:
    """``--wait-runs``: how the new flows' first runs ended; each failure and timeout in
    full (run id, Adobe's error codes and messages, the legacy flow kept on), successes
    counted."""
    from rich.text import Text

    if not report.runs:
        return
    ok = [r for r in report.runs if r.ok]
    bad = [r for r in report.runs if not r.ok]
    heading = f"First runs: {len(ok)} of {len(report.runs)} succeeded"
    console.print(Text(heading, style="bold" if not bad else "bold red"))
    for run in bad:
        words = {"failed": "failed", "timeout": "not ended"}.get(run.status, run.status)
        ident = f"run {run.run_id}" if run.run_id else "no run"
        errors = (
            "; ".join(f"{e['code']}: {e['message']}".strip(": ") for e in run.errors) or run.detail
        )
        kept = f"; legacy flow {', '.join(run.kept_on)} stays on" if run.kept_on else ""
        console.print(
            Text(
                f"  ✗ {run.sandbox} {run.flow_name!r} ({run.flow_id}): {words}, {ident}"
                f"{': ' + errors if errors else ''}{kept}",
                style="red",
            )
        )


@contextmanager
def discovery_progress(console: Console) -> Iterator[Progress | None]:
    """A spinner on stderr while Adobe is read, when stderr is a terminal; else silence."""
    if not console.is_terminal:
        yield None
        return
    with console.status("Reading both Pinterest cards from Adobe...") as status:

        def report(message: str) -> None:
            status.update(f"Reading both Pinterest cards from Adobe: {message}")

        yield report


def output_report(app: App, report: ApplyReport) -> None:
    """The report on stdout: its JSON, or the table."""
    if app.json:
        app.print_json(report.to_json())
    else:
        render_report(app.out, report)
