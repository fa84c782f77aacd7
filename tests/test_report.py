"""The apply and rollback report a person reads at the end of a run, at any size."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from pinmigrate.apply.results import ActionResult, ApplyReport, RunCheck
from pinmigrate.report import LISTED_UP_TO, render_report

RUN = "20261129T120000000Z-abcdef"


def text_of(report: ApplyReport, width: int = 80) -> str:
    out = io.StringIO()
    render_report(Console(file=out, width=width, color_system=None), report)
    return out.getvalue()


def flow_result(n: int, kind: str, status: str = "done", **extra: object) -> ActionResult:
    side = "legacy" if kind == "disable_flow" else "new"
    flow = f"{side}-flow-{n:04d}"
    result = ActionResult(
        action_id=f"{kind}:prod:{flow}",
        kind=kind,
        sandbox="prod",
        target_id=flow,
        target_name=f"Scale flow {n:04d}",
        side=side,  # type: ignore[arg-type]
    )
    result.status = status  # type: ignore[assignment]
    for key, value in extra.items():
        setattr(result, key, value)
    return result


def scale_report() -> ApplyReport:
    """300 pairs: 600 flow switches, of which one enable failed and its disable was skipped."""
    results = []
    for n in range(300):
        if n == 17:
            results.append(
                flow_result(n, "enable_flow", "failed", error="Adobe said no (500 FLOW-0001)")
            )
            results.append(
                flow_result(
                    n, "disable_flow", "skipped", error="not attempted: its twin was not enabled"
                )
            )
            continue
        results.append(flow_result(n, "enable_flow"))
        results.append(flow_result(n, "disable_flow", "already_done" if n == 3 else "done"))
    return ApplyReport(run_id=RUN, results=results, retries=4)


def test_a_large_report_is_short_names_each_failure_and_ends_with_the_summary() -> None:
    text = text_of(scale_report())
    lines = text.splitlines()

    assert len(lines) < 20, text
    # Each failure and skip in full: what, side, sandbox, name and id, why.
    [failed] = [line for line in lines if "failed " in line and "enable_flow" in line]
    assert "new flow" in failed and "prod" in failed
    assert "'Scale flow 0017' (new-flow-0017)" in failed
    assert "Adobe said no (500 FLOW-0001)" in failed
    [skipped] = [line for line in lines if "skipped " in line and "disable_flow" in line]
    assert "legacy flow" in skipped and "(legacy-flow-0017)" in skipped
    assert "its twin was not enabled" in skipped
    # Successes are counted per kind and side, not listed.
    assert "Scale flow 0001" not in text
    assert any(line.split()[:3] == ["enable_flow", "299", "new"] for line in lines), text
    assert any(line.split()[:3] == ["disable_flow", "298", "legacy"] for line in lines), text
    assert any(line.split()[:3] == ["disable_flow", "1", "legacy"] for line in lines), text
    # The summary is the last line, with the rollback hint: flows changed, and one failed.
    assert lines[-1] == (
        f"Apply (run {RUN}): 597 done, 1 already done, 1 skipped, 1 failed, 4 HTTP retries; "
        f"`pinmigrate rollback` undoes the flow changes of run {RUN}."
    )


def test_a_small_report_lists_every_result_with_its_side() -> None:
    report = ApplyReport(
        run_id=RUN,
        results=[flow_result(1, "enable_flow"), flow_result(1, "disable_flow")],
    )
    text = text_of(report)
    lines = text.splitlines()
    assert [line.split()[2:4] for line in lines if "Scale flow 0001" in line] == [
        ["enable_flow", "new"],
        ["disable_flow", "legacy"],
    ]
    # No result has a reason: the "why" column is left out rather than left empty.
    assert "why" not in lines[0].split()
    assert lines[-1] == f"Apply (run {RUN}): 2 done, 0 already done, 0 skipped, 0 failed."


def test_the_why_column_is_filled_for_every_result_with_a_reason() -> None:
    report = ApplyReport(
        run_id=RUN,
        results=[
            flow_result(1, "enable_flow", note="412: retried with a fresh etag"),
            flow_result(1, "disable_flow", "already_done"),
            flow_result(2, "enable_flow"),
        ],
    )
    lines = text_of(report, width=200).splitlines()
    assert lines[0].split()[-1] == "why"
    assert lines[1].endswith("412: retried with a fresh etag")
    assert lines[2].endswith("already so when the run read it")
    assert lines[3].endswith("(new-flow-0002)")


def test_a_report_cut_at_the_threshold_lists_all_or_counts() -> None:
    small = ApplyReport(run_id=RUN, results=[flow_result(n, "enable_flow") for n in range(50)])
    assert LISTED_UP_TO == 50
    assert "Scale flow 0049" in text_of(small)
    large = ApplyReport(run_id=RUN, results=[flow_result(n, "enable_flow") for n in range(51)])
    assert "Scale flow 0049" not in text_of(large)
    assert "Done (51):" in text_of(large)


def test_no_rollback_hint_unless_a_flow_changed_and_something_failed() -> None:
    def closing(report: ApplyReport) -> str:
        return text_of(report, width=300).splitlines()[-1]

    all_ok = ApplyReport(run_id=RUN, results=[flow_result(1, "enable_flow")])
    assert "rollback" not in closing(all_ok)
    nothing_changed = ApplyReport(
        run_id=RUN,
        results=[
            flow_result(1, "enable_flow", "already_done"),
            flow_result(1, "disable_flow", "failed", error="Adobe said no"),
        ],
    )
    assert "rollback" not in closing(nothing_changed)
    # Only waiting for a person's reconnect: apply again finishes it, nothing failed.
    waiting = ApplyReport(
        run_id=RUN,
        results=[
            flow_result(1, "enable_flow"),
            flow_result(2, "enable_flow", "skipped", error="not attempted", waits_for="acct"),
        ],
    )
    assert "rollback" not in closing(waiting)
    # Every write went through but a first run failed: the flows changed, the cutover did not.
    run_failed = ApplyReport(
        run_id=RUN,
        results=[flow_result(1, "enable_flow")],
        runs=[RunCheck("new-flow-0001", "prod", "Scale flow 0001", "failed", detail="boom")],
    )
    assert closing(run_failed).endswith(
        f"`pinmigrate rollback` undoes the flow changes of run {RUN}."
    )
    run_late = ApplyReport(
        run_id=RUN,
        results=[flow_result(1, "enable_flow")],
        runs=[RunCheck("new-flow-0001", "prod", "Scale flow 0001", "timeout", detail="900 s")],
    )
    assert closing(run_late).endswith(f"undoes the flow changes of run {RUN}.")
    # A rollback that failed in part does not suggest rolling back the rollback.
    rollback = ApplyReport(
        run_id=RUN,
        kind="pinmigrate.rollback",
        results=[flow_result(1, "enable_flow"), flow_result(2, "disable_flow", "failed")],
        extra={"rollback_of": "20261129T110000000Z-fedcba"},
    )
    assert closing(rollback) == (
        f"Rollback of run 20261129T110000000Z-fedcba (run {RUN}): "
        "1 done, 0 already done, 0 skipped, 1 failed."
    )


def test_report_lines_are_not_hard_wrapped_when_piped() -> None:
    long_reason = "Adobe said no: " + "x" * 150
    report = ApplyReport(
        run_id=RUN,
        results=[flow_result(1, "enable_flow", "failed", error=long_reason)],
    )
    lines = text_of(report, width=80).splitlines()
    assert any(line.endswith(long_reason) and "(new-flow-0001)" in line for line in lines)


def test_results_in_json_carry_sandbox_name_and_side() -> None:
    payload = scale_report().to_json()
    first = payload["results"][0]
    assert first == {
        "action_id": "enable_flow:prod:new-flow-0000",
        "kind": "enable_flow",
        "sandbox": "prod",
        "side": "new",
        "target_id": "new-flow-0000",
        "target_name": "Scale flow 0000",
        "status": "done",
        "error": None,
    }


def test_a_large_rollback_counts_what_it_leaves_alone() -> None:
    left = [f"audiences added to flow 'Scale flow {n:04d}' (prod, f{n}) stay" for n in range(200)]
    covers = "this rollback covers run B and the earlier run(s) it carried on: A"
    report = ApplyReport(
        run_id=RUN,
        kind="pinmigrate.rollback",
        results=[flow_result(n, "disable_flow") for n in range(60)],
        notes=[*left, covers],
        extra={"rollback_of": "B", "left_alone": left},
    )
    lines = text_of(report, width=300).splitlines()
    assert len(lines) < 10
    assert not any("Scale flow 0001" in line for line in lines)
    assert "Note: 200 audience or account change(s) are left as they are" in "\n".join(lines)
    assert f"Note: {covers}" in lines
    # A few are still named one by one.
    few = ApplyReport(
        run_id=RUN,
        kind="pinmigrate.rollback",
        results=[],
        notes=left[:3],
        extra={"rollback_of": "B", "left_alone": left[:3]},
    )
    assert f"Note: {left[2]}" in text_of(few, width=300).splitlines()


@pytest.mark.slow
def test_a_large_rollback_preview_counts_the_flows_per_sandbox_and_side(
    cli: Callable[..., Any], state_dir: Path, tmp_path: Path
) -> None:
    from pinmigrate.emulator import Emulator

    emulator = Emulator(scenario="scale:30", port=0)
    emulator.start()
    try:
        env = {
            **emulator.env(),
            "PINMIGRATE_STATE_DIR": str(state_dir),
            "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        }
        applied = cli(["apply", "--yes"], env)
        assert applied.exit_code == 0, applied.stderr
        preview = cli(["rollback"], env)  # no terminal, no --yes: shown, then refused
    finally:
        emulator.stop()
    assert preview.exit_code == 5
    lines = preview.stdout.splitlines()
    assert len(lines) < 10, preview.stdout
    counted = [line.split() for line in lines[1:] if line.split()[1:2] in (["enable"], ["disable"])]
    assert {(c[0], " ".join(c[1:4]), int(c[4])) for c in counted} == {
        (sandbox, what, n)
        for sandbox, n in (("prod", 10), ("dev", 10), ("stage", 10))
        for what in ("enable legacy flows", "disable new flows")
    }


@pytest.mark.parametrize("width", [90, 140])  # below the row; under its column
def test_on_a_terminal_the_why_wraps_under_itself_and_no_id_is_broken(width: int) -> None:
    why = (
        "not attempted: its twin's first run a5d94b37-48ab-5f89-99ec-5ddfd442b283 failed: "
        "CONNECTOR-2001-500: Pinterest refused the audience upload; the legacy flow stays on"
    )
    report = ApplyReport(
        run_id=RUN,
        results=[
            flow_result(1, "enable_flow"),
            flow_result(1, "disable_flow", "skipped", error=why),
        ],
    )
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system=None)
    render_report(console, report)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= width for line in lines)
    [row] = [n for n, line in enumerate(lines) if "legacy-flow-0001" in line]
    shown = lines[row].split("(legacy-flow-0001)")[1].strip()
    tail = []
    for line in lines[row + 1 :]:
        if not line.startswith("     "):
            break
        tail.append(line.strip())
    assert tail  # the reason went on under the row...
    assert " ".join([shown, *tail]).strip() == why  # ...whole, each id on one line
    # The closing line is word-wrapped too, never cut inside a word.
    assert "`pinmigrate rollback`" in out.getvalue().replace("\n", " ")
