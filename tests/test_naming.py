"""Errors that concern several objects name every one of them, in one line (issue 13 item 5)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pinmigrate.apply.results import ActionResult, ApplyReport
from pinmigrate.apply.targets import sandbox_problem
from pinmigrate.errors import ApplyFailed, ReconnectPending, listed, name_all


def test_name_all_counts_and_names_each_object_once() -> None:
    assert name_all(["A", "B", "C"], "ad account") == "3 ad accounts: A, B, C"
    assert name_all(["A", "A"], "ad account") == "1 ad account: A"
    assert name_all(["x"], "unknown sandbox") == "1 unknown sandbox: x"
    assert name_all(["x", "y"], "unknown sandbox") == "2 unknown sandboxes: x, y"
    assert name_all(["p", "q"], "child", "children") == "2 children: p, q"


def test_past_ten_the_rest_is_counted() -> None:
    flows = [f"f{i}" for i in range(25)]
    line = name_all(flows, "flow")
    assert line == "25 flows: " + ", ".join(flows[:10]) + ", ... and 15 more"
    assert listed(flows, limit=2, sep="; ") == "f0; f1; ... and 23 more"
    assert name_all(flows[:10], "flow").endswith("f9")


def _waiting(n: int) -> ApplyReport:
    results = []
    for i in range(n):
        result = ActionResult(f"reconnect_account:prod:a{i}", "reconnect_account", "prod", f"a{i}")
        result.status = "skipped"
        result.waits_for = f"'acct {i}' (prod, a{i})"
        results.append(result)
    return ApplyReport(run_id="r", results=results)


@pytest.mark.parametrize("count", [3, 12])
def test_every_account_waiting_for_a_reconnect_is_named(count: int) -> None:
    with pytest.raises(ReconnectPending) as caught:
        _waiting(count).raise_if_failed()
    line = caught.value.line()
    assert (
        f"{count} account(s) still need Reconnect OAuth in Adobe: "
        "'acct 0' (prod, a0); 'acct 1' (prod, a1); 'acct 2'"
    ) in line
    assert ("... and 2 more" in line) == (count > 10)


def test_every_failed_first_run_is_named() -> None:
    from pinmigrate.apply.results import RunCheck

    report = ApplyReport(run_id="r", results=[])
    report.runs = [RunCheck(f"f{i}", "prod", f"flow {i}", "failed") for i in range(3)]
    with pytest.raises(ApplyFailed) as caught:
        report.raise_if_failed()
    assert "first run failed for 3 new flows: 'flow 0', 'flow 1', 'flow 2'" in caught.value.line()


def test_every_action_outside_the_configured_sandboxes_is_named() -> None:
    actions: list[Any] = [
        SimpleNamespace(kind="enable_flow", sandbox=sb, target_name=name, target_id=ident)
        for sb, name, ident in [("qa", "A", "1"), ("prod", "B", "2"), ("uat", "C", "3")]
    ]
    problem = sandbox_problem(actions, ("prod",))
    assert problem is not None
    assert "sandboxes 'qa', 'uat', which are not configured" in problem
    assert "2 actions: enable_flow of 'A' (qa, 1); enable_flow of 'C' (uat, 3)" in problem


def test_a_long_list_of_pinterest_like_cards_ends_with_a_count() -> None:
    from pinmigrate.cards import LISTED, _listing

    specs = [{"name": f"Pinterest {i}", "id": f"id-{i}"} for i in range(LISTED + 2)]
    shown = _listing(specs, delivering={"id-0"})
    assert shown.startswith("'Pinterest 0' = id-0 (delivers flows), 'Pinterest 1' = id-1")
    assert shown.endswith(f"'Pinterest {LISTED - 1}' = id-{LISTED - 1}, ... and 2 more")
