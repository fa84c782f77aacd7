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


#: Runs of at most this many actions list every result; larger ones count the successes.
LISTED_UP_TO = 50
#: Above this many things left alone by a rollback, the report counts them.
NOTES_NAMED = 10
#: What each side of the migration is called in the report.
SIDE_WORDS = {"legacy": "legacy flow", "new": "new flow", "account": "account"}
#: The kinds of action whose changes ``pinmigrate rollback`` undoes.
FLOW_KINDS = frozenset({"enable_flow", "disable_flow"})


def _why(result: ActionResult) -> str:
    if result.error:
        return result.error
    if result.note:
        return result.note
    if result.status == "already_done":
        return "already so when the run read it"
    if result.status == "pending":
        return "not started: the run stopped first"
    return ""


def _object(result: ActionResult) -> str:
    """``'Loyalty members' (flow-id)``: the name a person knows and the id Adobe knows."""
    if result.target_name:
        return f"{result.target_name!r} ({result.target_id})"
    return result.target_id


def _result_rows(console: Console, results: Sequence[ActionResult]) -> None:
    """One aligned line per result, never wrapped inside a cell (a long line is the
    terminal's to wrap); "why" only when some result has a reason."""
    from rich.text import Text

    whys = [_why(r) for r in results]
    header = ["", "status", "action", "side", "sandbox", "object", "why"]
    lines: list[list[Text]] = [[Text(h, style="bold") for h in header]]
    for result, why in zip(results, whys, strict=True):
        symbol, words, colour = STATUS_STYLE.get(result.status, ("?", result.status, ""))
        lines.append(
            [
                Text(symbol, style=colour),
                Text(words, style=colour),
                Text(result.kind),
                Text(SIDE_WORDS.get(result.side, result.side)),
                Text(result.sandbox),
                Text(_object(result)),
                Text(why),
            ]
        )
    if not any(whys):
        lines = [cells[:-1] for cells in lines]
    widths = [max(cells[i].cell_len for cells in lines) for i in range(len(lines[0]))]
    for cells in lines:
        line = Text("  ").join(
            cell if i == len(cells) - 1 else Text.assemble(cell, " " * (widths[i] - cell.cell_len))
            for i, cell in enumerate(cells)
        )
        line.rstrip()
        console.print(line, soft_wrap=True)


def _counted(console: Console, title: str, results: Sequence[ActionResult]) -> None:
    """``Done (1998):`` then one line per kind and side, with its count."""
    from rich.text import Text

    counts: dict[tuple[str, str], int] = {}
    for result in results:
        key = (result.kind, SIDE_WORDS.get(result.side, result.side))
        counts[key] = counts.get(key, 0) + 1
    console.print(Text(f"{title} ({len(results)}):", style="bold"), soft_wrap=True)
    width = max(len(kind) for kind, _ in counts)
    for (kind, side), count in counts.items():
        console.print(Text(f"  {kind:<{width}}  {count:>6}  {side}"), soft_wrap=True)


def closing_line(report: ApplyReport) -> str:
    """The summary, said last (``Apply (run R): 3 done, ...``); when an apply changed flows
    and something failed (not merely waits for a person's reconnect, which a rerun
    finishes), it adds that `pinmigrate rollback` undoes the run's flow changes."""
    counts = report.counts()
    what = "Rollback" if report.kind.endswith("rollback") else "Apply"
    of = f" of run {report.extra['rollback_of']}" if report.extra.get("rollback_of") else ""
    keys = ["done", "already_done", "skipped", "failed"] + (
        ["pending"] if counts.get("pending") else []
    )
    parts = [f"{counts[k]} {STATUS_STYLE[k][1]}" for k in keys]
    if report.retries:
        parts.append(f"{report.retries} HTTP {'retry' if report.retries == 1 else 'retries'}")
    line = f"{what}{of} (run {report.run_id}): " + ", ".join(parts)
    changed = any(r.status == "done" and r.kind in FLOW_KINDS for r in report.results)
    failed = (not report.ok and not report.waits_for_reconnects) or bool(
        report.failed_runs or report.timed_out_runs
    )
    if what == "Apply" and changed and failed:
        line += f"; `pinmigrate rollback` undoes the flow changes of run {report.run_id}"
    return line + "."


def render_report(console: Console, report: ApplyReport) -> None:
    """The final report: what did not succeed in full, the successes listed (small runs) or
    counted (large ones), what was left out, and the summary line last."""
    from rich.text import Text

    results = report.results
    if not results:
        console.print("Nothing to change.")
    elif len(results) <= LISTED_UP_TO:
        _result_rows(console, results)
    else:
        problems = [r for r in results if r.status not in ("done", "already_done")]
        if problems:
            console.print(
                Text(f"Did not succeed ({len(problems)}):", style="bold red"), soft_wrap=True
            )
            _result_rows(console, problems)
        for status, title in (("done", "Done"), ("already_done", "Already done")):
            chosen = [r for r in results if r.status == status]
            if chosen:
                _counted(console, title, chosen)
    render_first_runs(console, report)
    if report.blockers or report.orphans:
        console.print(
            Text("Not handled (no action was planned for these):", style="bold"), soft_wrap=True
        )
        for blocker in report.blockers:
            console.print(
                Text(f"  blocked  {blocker.sandbox} {blocker.flow_name!r}: {blocker.message}"),
                soft_wrap=True,
            )
        for orphan in report.orphans:
            reason = orphan.reason or "no twin on the new card"
            console.print(
                Text(f"  orphan   {orphan.sandbox} {orphan.flow_name!r}: {reason}"), soft_wrap=True
            )
    left_alone = set(report.extra.get("left_alone") or [])
    notes = report.notes
    if len(left_alone) > NOTES_NAMED:
        # Rollback of a large run: its audiences and reconnects are counted, not listed.
        notes = [n for n in notes if n not in left_alone]
        console.print(
            Text(
                f"Note: {len(left_alone)} audience or account change(s) are left as they are "
                "(rollback undoes flow states only); --output json lists them (left_alone)"
            ),
            soft_wrap=True,
        )
    for note in notes:
        console.print(Text(f"Note: {note}"), soft_wrap=True)
    console.print(Text(closing_line(report), style="bold"), soft_wrap=True)


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
