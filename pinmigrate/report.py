"""How a run shows itself: progress on stderr while it runs, a table at the end.

Progress goes to stderr only (a rich bar on a terminal, one plain line per action
otherwise), so stdout carries nothing but the final report or its JSON.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Self

from pinmigrate.apply.results import ActionResult, ApplyReport

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.progress import Progress as RichProgress
    from rich.progress import Task, TaskID
    from rich.status import Status
    from rich.text import Text

    from pinmigrate.app import App
    from pinmigrate.apply.reconnects import PersonReconnect
    from pinmigrate.discovery import Progress
    from pinmigrate.http import HttpClient, RetryNotice
    from pinmigrate.throttle import ThrottleState

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


#: Runs of at most this many actions get one line per action without a terminal; larger
#: ones a count line every STATUS_EVERY seconds (a CI log of 4,200 lines helps nobody).
SMALL_RUN = 50
#: Without a terminal, no phase goes longer than this without a line (seconds): a little
#: under the 10 s promised, since a line is only checked for every HEARTBEAT_STEP.
STATUS_EVERY = 9.5
#: How often the heartbeat thread looks whether a line is due (seconds).
HEARTBEAT_STEP = 0.5
#: A retry line stays on the bar at least this long, though actions end meanwhile.
ASIDE_HOLD = 3.0
#: Without a terminal, retry lines come at most this often; the next one counts the rest.
ASIDE_EVERY = 2.0


#: How every live line begins: scripts (and tests) that want only the errors and notes of
#: stderr can leave these out.
PROGRESS_LINE = re.compile(
    r"^(\[\d+/\d+\] |(reading|read|checking|confirming|re-reading|retrying|applying|"
    r"rolling back|waiting for (Adobe|the first runs? of|\d+ accounts? to be reconnected))\b)"
)


def is_progress_line(line: str) -> bool:
    """True for a line the live display printed (not an error, a note or a result)."""
    return bool(PROGRESS_LINE.match(line))


def pace_words(count: int, total: int, elapsed: float) -> str:
    """``95/s, about 32 s left`` (empty until something ended)."""
    if count <= 0 or elapsed <= 0:
        return ""
    rate = count / elapsed
    shown = f"{rate:.0f}/s" if rate >= 10 else f"{rate:.1f}/s"
    left = max(0, total - count)
    if not left:
        return shown
    seconds = left / rate
    if seconds >= 90:
        eta = f"about {seconds / 60:.0f} min left"
    else:
        eta = f"about {max(1, round(seconds))} s left"
    return f"{shown}, {eta}"


def count_line(description: str, count: int, total: int, elapsed: float, pacing: str = "") -> str:
    """``applying: 1200/4200 (29 %), 95/s, about 32 s left, 8 at once``."""
    percent = int(100 * count / total) if total else 100
    words = [w for w in (pace_words(count, total, elapsed), pacing) if w]
    return f"{description}: {count}/{total} ({percent} %)" + "".join(f", {w}" for w in words)


def retry_line(notice: RetryNotice) -> str:
    """``retrying GET /flows in prod: HTTP 503, attempt 3 of 10, next in 4 s``."""
    from pinmigrate.adobe import FLOWSERVICE

    path = notice.path.removeprefix(FLOWSERVICE) or "/"
    where = f" in {notice.sandbox}" if notice.sandbox else f" ({notice.service})"
    if notice.delay >= 1:
        delay = f"in {notice.delay:.0f} s"
    else:
        delay = f"in {notice.delay:.1f} s" if notice.delay >= 0.1 else "at once"
    return (
        f"retrying {notice.method} {path}{where}: {notice.reason}, attempt {notice.attempt} "
        f"of {notice.attempts}, next {delay}"
    )


def _shown(text: str) -> str:
    """A live line as it may reach a terminal: secrets masked, control characters escaped."""
    from pinmigrate import redact
    from pinmigrate.terminal import safe_text

    return safe_text(redact.redact(text))


def revised_line(result: ActionResult) -> str | None:
    """What the display says of a write counted as it returned, which its confirming read
    then failed (None when the read confirmed it)."""
    if result.status in ("done", "already_done"):
        return None
    words = STATUS_STYLE.get(result.status, ("", result.status, ""))[1]
    why = f": {result.error}" if result.error else ""
    return f"{result.label} {words} on reading it back{why}"


def _needs_a_line(result: ActionResult) -> bool:
    """What did not succeed, and each account a person reconnected, always gets a line."""
    return result.status in ("failed", "skipped") or (
        result.kind == "reconnect_account" and result.status == "done"
    )


class _Live:
    """What both displays share: the count, its clock, the phase line (what the run waits
    for, set by the engine until it clears it) and the aside (the latest retry, from any
    thread). Thread-safe: writes, re-reads and HTTP retries report from their own threads."""

    def __init__(self, console: Console, clock: Callable[[], float], description: str) -> None:
        self.console = console
        self.description = description
        self.total = 0
        self.count = 0
        self._clock = clock
        self._lock = threading.RLock()
        self._began: float | None = None
        self._phase: tuple[str, float] | None = None
        self._aside: tuple[str, float] | None = None
        #: The run's throttle, read for the count line (``8 at once, 48 writes/s``).
        self._pacing: Callable[[], ThrottleState] | None = None

    def watch_pacing(self, state: Callable[[], ThrottleState]) -> None:
        """Show the writes in flight at once (and the pace) that ``state`` gives."""
        self._pacing = state

    def pacing_words(self) -> str:
        return self._pacing().describe() if self._pacing is not None else ""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def elapsed(self) -> float:
        return 0.0 if self._began is None else self._clock() - self._began

    def _print(self, text: str) -> None:
        self.console.print(_shown(text), markup=False, highlight=False, soft_wrap=True)

    def start(self, total: int) -> None:
        """The writes begin: the count starts, and the phase before them (the check) ends."""
        with self._lock:
            self.total = total
            self._began = self._clock()
            self._phase = None

    def finish(self) -> None:
        return None

    def aside(self, text: str) -> None:
        raise NotImplementedError

    def retry(self, notice: RetryNotice) -> None:
        """An HTTP retry (:attr:`pinmigrate.http.HttpClient.observer`)."""
        self.aside(retry_line(notice))


class LineProgress(_Live):
    """Plain lines on stderr (CI logs, pipes). Small runs get one line per action; larger
    ones a count line with rate and ETA at most every STATUS_EVERY seconds, plus a line for
    each action that did not succeed and each reconnect done. Whatever the phase (writes,
    re-reads, confirming reads, waits), a line comes at least every STATUS_EVERY seconds: a
    heartbeat thread repeats the current phase line (or the count) when all is quiet."""

    def __init__(
        self,
        console: Console,
        clock: Callable[[], float] = time.monotonic,
        *,
        description: str = "applying",
        every: float = STATUS_EVERY,
        heartbeat: bool = True,
    ) -> None:
        super().__init__(console, clock, description)
        self.every = every
        self._last_line = clock()
        #: When a line last said how far the run is (a count, ``[n/N]``, a phase with count).
        self._last_count = self._last_line
        self._last_aside = float("-inf")
        self._quiet_asides = 0
        self._shown_phase: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat = heartbeat

    def _line(self, text: str, *, counted: bool = False) -> None:
        self._last_line = self._clock()
        if counted:
            self._last_count = self._last_line
        self._print(text)

    def _beat(self) -> None:
        if self._heartbeat and self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(
                target=self._run_heartbeat, name="progress-heartbeat", daemon=True
            )
            self._thread.start()

    def _run_heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_STEP):
            self.tick()

    @property
    def small(self) -> bool:
        return self.total <= SMALL_RUN

    def start(self, total: int) -> None:
        super().start(total)
        with self._lock:
            self._shown_phase = None
            if not self.small:
                self._line(
                    f"{self.description}: {total} actions (a line at least every "
                    f"{round(self.every + HEARTBEAT_STEP)} s, and one for each action that does "
                    "not succeed)",
                    counted=True,
                )
        self._beat()

    def advance(self, result: ActionResult) -> None:
        with self._lock:
            self.count += 1
            if self.small or _needs_a_line(result):
                self._line(progress_line(self.count, self.total, result), counted=True)
            elif self._clock() - self._last_count >= self.every:
                # Retry lines do not hold the count back: it comes every STATUS_EVERY.
                self._line(self._count_line(), counted=True)

    def revise(self, result: ActionResult) -> None:
        """An action counted when its write returned, whose confirming read failed it."""
        line = revised_line(result)
        if line is not None:
            with self._lock:
                self._line(line)

    def finish(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        with self._lock:
            if self.total and not self.small and self._began is not None:
                self._line(
                    f"{self.description}: {self.count}/{self.total} in {self.elapsed():.0f} s"
                )
                self._began = None

    def status(self, text: str) -> None:
        """The phase line: printed when what it waits for changes, else every few seconds;
        an empty text ends the phase."""
        with self._lock:
            if not text:
                self._phase = None
                self._shown_phase = None
                return
            # "reading flows: prod 400" and "reading flows: prod 500" wait for one thing.
            topic = text.split(" (", 1)[0].split(": ", 1)[0]
            now = self._clock()
            self._phase = (text, now if self._shown_phase != topic else self._phase_since(now))
            if self._shown_phase != topic or now - self._last_line >= self.every:
                self._shown_phase = topic
                self._line(self._with_count(text), counted=self._counting)
        self._beat()

    def _phase_since(self, now: float) -> float:
        return self._phase[1] if self._phase is not None else now

    def aside(self, text: str) -> None:
        """A retry: a line, unless one came less than ASIDE_EVERY seconds ago (then counted)."""
        with self._lock:
            now = self._clock()
            if now - self._last_aside < ASIDE_EVERY:
                self._quiet_asides += 1
                return
            more = self._quiet_asides
            self._quiet_asides = 0
            self._last_aside = now
            self._line(text + (f" (+{more} more retries)" if more else ""))

    def tick(self) -> None:
        """The heartbeat: after STATUS_EVERY seconds without a line, say what the run waits
        for; while writes go on, say how far they are every STATUS_EVERY seconds."""
        with self._lock:
            now = self._clock()
            if self._phase is not None:
                if now - self._last_line >= self.every:
                    text, since = self._phase
                    still = self._with_count(f"{text} (still, {now - since:.0f} s)")
                    self._line(still, counted=self._counting)
            elif self._began is not None and self.total and now - self._last_count >= self.every:
                # Retry lines do not hold the count back.
                self._line(self._count_line(), counted=True)

    @property
    def _counting(self) -> bool:
        """True while the writes of a large run go on: its lines carry the count."""
        return self._began is not None and bool(self.total) and not self.small

    def _with_count(self, text: str) -> str:
        """A phase line of a large run says how far the run is: ``applying 2200/4200: ...``."""
        if not self._counting:
            return text
        return f"{self.description} {self.count}/{self.total}: {text}"

    def _count_line(self) -> str:
        return count_line(
            self.description, self.count, self.total, self.elapsed(), self.pacing_words()
        )


#: What the bar's other columns take (spinner, a short bar, the count; the pace is shown only
#: with the short "applying"), and the least its text is given.
BAR_COLUMNS = 36
BAR_TEXT_MIN = 30


class BarProgress(_Live):
    """A rich progress bar on a terminal, advanced as each write returns, with rate and ETA;
    its description shows what the run waits for. Actions that did not succeed are printed
    above it."""

    def __init__(
        self,
        console: Console,
        description: str = "applying",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(console, clock, description)
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        #: Before the bar starts (the first re-read), a phase line shows as a spinner.
        self._spinner: Status | None = None

    def start(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

        class Spinner(SpinnerColumn):
            """Spins on once every write is counted: the last confirming read is still on."""

            def render(self, task: Task) -> RenderableType:
                return self.spinner.render(task.get_time())

        super().start(total)
        with self._lock:
            self._stop_spinner()
            self._bar = Progress(
                Spinner(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[pace]}"),
                console=self.console,
                transient=True,
            )
            self._task = self._bar.add_task(self._description(), total=total, pace="")
            self._bar.start()

    def advance(self, result: ActionResult) -> None:
        with self._lock:
            self.count += 1
            if _needs_a_line(result):
                self.console.print(
                    _shown(progress_line(self.count, self.total, result)),
                    markup=False,
                    highlight=False,
                )
            self._update(advance=1)

    def revise(self, result: ActionResult) -> None:
        """An action counted when its write returned, whose confirming read failed it."""
        line = revised_line(result)
        if line is not None:
            with self._lock:
                self.console.print(_shown(line), markup=False, highlight=False)

    def finish(self) -> None:
        with self._lock:
            self._stop_spinner()
            if self._bar is not None:
                self._bar.stop()
                self._bar = None

    def status(self, text: str) -> None:
        """Shown in place of the bar's description until the engine clears it ("")."""
        with self._lock:
            self._phase = (text, self._clock()) if text else None
            self._update()

    def aside(self, text: str) -> None:
        """A retry: shown in place of the description for ASIDE_HOLD seconds at least."""
        with self._lock:
            self._aside = (text, self._clock())
            self._update()

    def _fresh_aside(self) -> bool:
        return self._aside is not None and self._clock() - self._aside[1] < ASIDE_HOLD

    def _description(self) -> str:
        if self._aside is not None and self._fresh_aside():
            text = self._aside[0]
        elif self._phase is not None:
            text = self._phase[0]
        else:
            text = self.description
        # The bar, the count and the pace keep their room: a long phase line is cut.
        room = max(BAR_TEXT_MIN, self.console.width - BAR_COLUMNS)
        text = _shown(text)
        return text if len(text) <= room else text[: room - 1] + "…"

    def _update(self, advance: int = 0) -> None:
        if self._bar is None or self._task is None:
            if self._phase is None and not self._fresh_aside():
                self._stop_spinner()  # a phase before the bar ended: nothing to show
            else:
                self._spin()
            return
        # While the run waits for something (a phase), the write rate and its ETA say nothing.
        waiting = self._phase is not None or self._fresh_aside()
        pace = ""
        if not waiting:
            words = [pace_words(self.count, self.total, self.elapsed()), self.pacing_words()]
            pace = ", ".join(w for w in words if w)
        self._bar.update(self._task, advance=advance, description=self._description(), pace=pace)

    def _spin(self) -> None:
        text = self._description()
        if self._spinner is None:
            self._spinner = self.console.status(text)
            self._spinner.start()
        else:
            self._spinner.update(text)

    def _stop_spinner(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None


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
    """A bar when stderr is a terminal, plain lines otherwise; use it in a ``with`` block so
    the bar and the heartbeat end whatever happens."""
    if console.is_terminal and not console.is_dumb_terminal:
        return BarProgress(console, description)
    return LineProgress(console, description=description)


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


#: The narrowest last column the report wraps under itself; narrower, it goes below the row,
#: indented this much.
MIN_WRAPPED = 24
WHY_INDENT = 5


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
    # On a terminal, a last column too long for its line wraps at its words under itself,
    # or, without room there, on lines of its own below each row; no word (id) is broken.
    indent = sum(widths[:-1]) + 2 * (len(widths) - 1)
    longest = max((len(word) for cells in lines for word in cells[-1].plain.split()), default=0)
    room = console.width - indent - 2
    layout = "line"
    if console.is_terminal and room < widths[-1]:
        if room >= max(MIN_WRAPPED, longest):
            layout = "under"
        elif console.width - WHY_INDENT >= longest:
            layout = "below"
    for n, cells in enumerate(lines):
        head = Text("  ").join(
            Text.assemble(cell, " " * (widths[i] - cell.cell_len))
            for i, cell in enumerate(cells[:-1])
        )
        last = cells[-1]
        if layout != "line" and not last.plain:
            head.rstrip()
            console.print(head, soft_wrap=True)
        elif layout == "under":
            for k, part in enumerate(last.wrap(console, room)):
                part.rstrip()
                start = head if k == 0 else Text(" " * indent)
                console.print(Text.assemble(start, "  ", part), soft_wrap=True)
        elif layout == "below":
            head.rstrip()
            console.print(head, soft_wrap=True)
            if n > 0:  # the header's "why" goes without saying
                for part in last.wrap(console, console.width - WHY_INDENT):
                    part.rstrip()
                    console.print(Text.assemble(" " * WHY_INDENT, part), soft_wrap=True)
        else:
            line = Text.assemble(head, "  ", last)
            line.rstrip()
            console.print(line, soft_wrap=True)


def _line(console: Console, text: Text) -> None:
    """One line of the report: word-wrapped on a terminal, never wrapped in a pipe or file
    (so that it greps whole)."""
    console.print(text, soft_wrap=not console.is_terminal)


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
        _line(console, Text("Nothing to change."))
    elif len(results) <= LISTED_UP_TO:
        _result_rows(console, results)
    else:
        problems = [r for r in results if r.status not in ("done", "already_done")]
        if problems:
            _line(console, Text(f"Did not succeed ({len(problems)}):", style="bold red"))
            _result_rows(console, problems)
        for status, title in (("done", "Done"), ("already_done", "Already done")):
            chosen = [r for r in results if r.status == status]
            if chosen:
                _counted(console, title, chosen)
    render_first_runs(console, report)
    if report.blockers or report.orphans:
        _line(console, Text("Not handled (no action was planned for these):", style="bold"))
        for blocker in report.blockers:
            _line(
                console,
                Text(f"  blocked  {blocker.sandbox} {blocker.flow_name!r}: {blocker.message}"),
            )
        for orphan in report.orphans:
            reason = orphan.reason or "no twin on the new card"
            _line(console, Text(f"  orphan   {orphan.sandbox} {orphan.flow_name!r}: {reason}"))
    left_alone = set(report.extra.get("left_alone") or [])
    notes = report.notes
    if len(left_alone) > NOTES_NAMED:
        # Rollback of a large run: its audiences and reconnects are counted, not listed.
        notes = [n for n in notes if n not in left_alone]
        _line(
            console,
            Text(
                f"Note: {len(left_alone)} audience or account change(s) are left as they are "
                "(rollback undoes flow states only); --output json lists them (left_alone)"
            ),
        )
    for note in notes:
        _line(console, Text(f"Note: {note}"))
    _line(console, Text(closing_line(report), style="bold"))


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
    _line(console, Text(heading, style="bold" if not bad else "bold red"))
    for run in bad:
        words = {"failed": "failed", "timeout": "not ended"}.get(run.status, run.status)
        ident = f"run {run.run_id}" if run.run_id else "no run"
        errors = (
            "; ".join(f"{e['code']}: {e['message']}".strip(": ") for e in run.errors) or run.detail
        )
        kept = f"; legacy flow {', '.join(run.kept_on)} stays on" if run.kept_on else ""
        _line(
            console,
            Text(
                f"  ✗ {run.sandbox} {run.flow_name!r} ({run.flow_id}): {words}, {ident}"
                f"{': ' + errors if errors else ''}{kept}",
                style="red",
            ),
        )


@contextmanager
def discovery_progress(console: Console, http: HttpClient | None = None) -> Iterator[Progress]:
    """What discovery reads, on stderr: a spinner on a terminal; else plain lines (the first
    before any request, each sandbox read, the flow counts at most every STATUS_EVERY
    seconds, and a heartbeat). HTTP retries of ``http`` show too, while it lasts."""
    if console.is_terminal and not console.is_dumb_terminal:
        with console.status("Reading both Pinterest cards from Adobe...") as spinner:
            lock = threading.Lock()
            aside: list[tuple[str, float]] = []

            def report(message: str) -> None:
                with lock:
                    if aside and time.monotonic() - aside[0][1] < ASIDE_HOLD:
                        return
                    spinner.update(_shown(f"Reading both Pinterest cards from Adobe: {message}"))

            def retried(notice: RetryNotice) -> None:
                with lock:
                    aside[:] = [(retry_line(notice), time.monotonic())]
                    spinner.update(_shown(aside[0][0]))

            with observing(http, retried):
                yield report
        return
    with LineProgress(console, description="reading") as lines, observing(http, lines.retry):
        yield lines.status


@contextmanager
def observing(http: HttpClient | None, observer: Callable[[RetryNotice], None]) -> Iterator[None]:
    """``observer`` is told of ``http``'s retries while the block runs (the live line)."""
    if http is None:
        yield
        return
    before, http.observer = http.observer, observer
    try:
        yield
    finally:
        http.observer = before


def output_report(app: App, report: ApplyReport) -> None:
    """The report on stdout: its JSON, or the table."""
    if app.json:
        app.print_json(report.to_json())
    else:
        render_report(app.out, report)
