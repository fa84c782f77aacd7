"""Ids that would change the meaning of a URL path are refused before any request
(issue 12 item 5); flags and plan files are in tests/test_bad_input.py."""

from __future__ import annotations

import pytest
import responses

from pinmigrate.ids import UnsafeIdError

# --- ids in addresses ----------------------------------------------------------------------------

BAD_IDS = ["", ".", "..", "a/b", "../connections", "a\\b", "a?op=enable", "a#b", "%2e%2e", "a;b"]


@pytest.mark.parametrize("bad", BAD_IDS)
@responses.activate
def test_the_adobe_client_sends_nothing_for_an_id_that_changes_the_path(bad: str) -> None:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.settings import load_settings

    settings = load_settings(
        env={
            "PINMIGRATE_ADOBE_ORG_ID": "ABCDEF0123456789ABCDEF01@AdobeOrg",
            "PINMIGRATE_ADOBE_CLIENT_ID": "id",
            "PINMIGRATE_ADOBE_CLIENT_SECRET": "secret",
            "PINMIGRATE_STATE_DIR": "/nonexistent/pinmigrate-state",
        }
    )
    client = AdobeClient(settings)
    client.token = lambda: "token"  # type: ignore[method-assign]
    calls = (
        lambda: client.get("flows", bad, sandbox="prod"),
        lambda: client.flow_action(bad, "disable", sandbox="prod"),
        lambda: client.patch("connections", bad, [], etag='"1"', sandbox="prod"),
    )
    for call in calls:
        with pytest.raises(UnsafeIdError, match="nothing was sent"):
            call()
    assert len(responses.calls) == 0


@pytest.mark.parametrize("bad", ["..", "a/b", ""])
def test_the_reconnect_page_refuses_an_id_that_changes_the_path(bad: str) -> None:
    from pinmigrate.apply.reconnects import page_url
    from pinmigrate.settings import load_settings

    settings = load_settings(
        env={
            "PINMIGRATE_STATE_DIR": "/nonexistent/pinmigrate-state",
            "PINMIGRATE_ADOBE_UI_URL": "https://ui.example/{org_id}/{sandbox}/{account_id}",
        }
    )
    assert page_url(settings, "prod", "abc-123").endswith("abc-123")
    with pytest.raises(UnsafeIdError):
        page_url(settings, "prod", bad)
    with pytest.raises(UnsafeIdError):
        page_url(settings, bad, "abc-123")


def test_every_space_and_unprintable_character_is_refused_and_nothing_else() -> None:
    # The check scans the whole id at once; held to the rule per character over all of
    # Unicode, inside an otherwise plain id.
    import sys

    from pinmigrate.ids import PATH_SIGNIFICANT, id_problem

    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if char in PATH_SIGNIFICANT:
            continue
        refused = char.isspace() or not char.isprintable()
        problem = id_problem(f"5c984169-{char}-83a2")
        assert (problem == "it holds a space or a control character") is refused, hex(code)
        assert refused or problem is None, hex(code)


def test_path_characters_are_named_in_order() -> None:
    from pinmigrate.ids import id_problem

    assert id_problem("a;b/c?") == "it holds '/' ';' '?'"
    assert id_problem("5c984169-2287-54da-83a2-c04ef0e3e2e1") is None
