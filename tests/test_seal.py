"""Plans are sealed with the state dir's plan key (HMAC-SHA256), issue 12 item 1.

A plain sha256 fingerprint can be recomputed by whoever edits a plan; a plan sealed with
the key of this state dir can only come from it. Plans made elsewhere (another state dir,
or before plans were sealed) are refused by ``apply`` until a person reviews and accepts
them with ``show --accept``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from pinmigrate.errors import ConfigError, PlanFileError
from pinmigrate.plan import load_plan
from pinmigrate.plankey import KEY_FILE, load_key
from pinmigrate.report import is_progress_line

SEALED = re.compile(r"hmac-sha256:([0-9a-f]{16}):[0-9a-f]{64}")


def make_plan(cli: Any, env: dict[str, str], path: Path) -> dict[str, Any]:
    made = cli(["plan", "--out", str(path)], env)
    assert made.exit_code == 0, made.stderr
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def other_state(env: dict[str, str], tmp_path: Path, name: str = "elsewhere") -> dict[str, str]:
    """The same settings with another state dir (another machine, another operator)."""
    return {**env, "PINMIGRATE_STATE_DIR": str(tmp_path / name)}


def one_error_line(result: Any) -> str:
    assert "Traceback" not in result.stdout + result.stderr
    lines = [
        line for line in result.stderr.splitlines() if line.strip() and not is_progress_line(line)
    ]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_plan_is_sealed_with_a_key_made_once_0600_and_never_printed(
    cli: Any, emu_env: dict[str, str], tmp_path: Path
) -> None:
    first = make_plan(cli, emu_env, tmp_path / "one.json")
    key_file = Path(emu_env["PINMIGRATE_STATE_DIR"]) / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret = key_file.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    match = SEALED.fullmatch(first["fingerprint"])
    assert match, first["fingerprint"]

    printed = cli(["plan", "--output", "json", "-v"], emu_env)
    assert printed.exit_code == 0
    assert secret not in printed.stdout + printed.stderr
    # The same key seals every plan of this state dir: it is made once.
    again = SEALED.fullmatch(printed.json()["fingerprint"])
    assert again and again.group(1) == match.group(1)
    assert key_file.read_text().strip() == secret


def test_a_plan_made_with_another_state_dir_is_refused_until_accepted_after_review(
    cli: Any, emu_env: dict[str, str], emulator: Any, tmp_path: Path
) -> None:
    path = tmp_path / "plan.json"
    make_plan(cli, emu_env, path)
    here = other_state(emu_env, tmp_path)
    emulator.clear_requests()

    refused = cli(["apply", str(path)], here)

    assert refused.exit_code == 64
    line = one_error_line(refused)
    assert "was made elsewhere" in line and f"pinmigrate show {path} --accept" in line
    assert refused.stdout == ""
    assert emulator.requests()["total"] == 0  # refused before anything is sent

    shown = cli(["show", str(path)], here)
    assert shown.exit_code == 0, shown.stderr
    assert "Will switch off 4 legacy flows:" in shown.stdout
    assert "was made elsewhere" in one_error_line(shown)

    before = path.read_bytes()
    unconfirmed = cli(["show", str(path), "--accept", "--no-input"], here)
    assert unconfirmed.exit_code == 5
    assert path.read_bytes() == before

    as_json = cli(["show", str(path), "--accept", "--output", "json"], here)
    assert as_json.exit_code == 5 and as_json.stdout == ""
    assert "needs --yes" in one_error_line(as_json)
    assert path.read_bytes() == before

    accepted = cli(["show", str(path), "--accept", "--yes"], here)
    assert accepted.exit_code == 0, accepted.stderr
    key = load_key(Path(here["PINMIGRATE_STATE_DIR"]))
    assert key is not None
    assert load_plan(path, key=key).fingerprint.startswith(f"hmac-sha256:{key.id}:")

    applied = cli(["apply", str(path)], here)
    # Carried out now (the reconnects wait for a person in Adobe: exit 4, the rest done).
    assert applied.exit_code == 4, applied.stderr
    assert emulator.requests()["writes"] > 0


def test_a_plan_with_a_plain_checksum_is_refused_and_can_be_accepted_after_review(
    cli: Any, emu_env: dict[str, str], emulator: Any, tmp_path: Path
) -> None:
    # What a plan saved before plans were sealed carries, and what anyone can compute.
    path = tmp_path / "plan.json"
    data = make_plan(cli, emu_env, path)
    body = {key: value for key, value in data.items() if key != "fingerprint"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    data["fingerprint"] = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    path.write_text(json.dumps(data, indent=2))
    emulator.clear_requests()

    refused = cli(["apply", str(path)], emu_env)

    assert refused.exit_code == 64
    line = one_error_line(refused)
    assert "plain sha256 checksum" in line and "--accept" in line
    assert emulator.requests()["write_attempts"] == 0

    accepted = cli(["show", str(path), "--accept", "--yes"], emu_env)
    assert accepted.exit_code == 0, accepted.stderr
    assert SEALED.fullmatch(json.loads(path.read_text())["fingerprint"])


def test_a_plan_edited_after_it_was_sealed_is_refused_and_cannot_be_accepted(
    cli: Any, emu_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "plan.json"
    data = make_plan(cli, emu_env, path)
    data["actions"].pop()
    path.write_text(json.dumps(data, indent=2))
    before = path.read_bytes()

    for args in (["apply", str(path)], ["show", str(path), "--accept", "--yes"]):
        result = cli(args, emu_env)
        assert result.exit_code == 64
        assert "does not match its fingerprint" in one_error_line(result)
        assert result.stdout == ""
    assert path.read_bytes() == before


def test_a_plan_sealed_here_needs_no_accepting(
    cli: Any, emu_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "plan.json"
    make_plan(cli, emu_env, path)
    before = path.read_bytes()
    result = cli(["show", str(path), "--accept", "--yes"], emu_env)
    assert result.exit_code == 0
    assert "already sealed by this state dir" in result.stderr
    assert path.read_bytes() == before


def test_an_unknown_seal_scheme_is_refused(
    cli: Any, emu_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "plan.json"
    data = make_plan(cli, emu_env, path)
    data["fingerprint"] = "md5:" + "0" * 32
    path.write_text(json.dumps(data))
    result = cli(["apply", str(path)], emu_env)
    assert result.exit_code == 64
    assert "fingerprint pinmigrate does not know" in one_error_line(result)


# --- the key file ---------------------------------------------------------------------------


def test_the_key_is_made_atomically_once_when_many_ask_at_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ids: list[str] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        key = load_key(state, create=True)
        assert key is not None
        ids.append(key.id)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert [p.name for p in state.iterdir()] == [KEY_FILE]  # no temp file left
    assert stat.S_IMODE((state / KEY_FILE).stat().st_mode) == 0o600


def test_no_key_is_made_by_reading(tmp_path: Path) -> None:
    assert load_key(tmp_path / "state") is None
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("spoil", "says"),
    [
        (lambda p: p.write_text("not hex at all\n"), "is damaged"),
        (lambda p: p.write_text("ab" * 16 + "\n"), "is damaged"),
        (lambda p: os.chmod(p, 0o644), "can be read by others"),
    ],
    ids=["not-hex", "too-short", "world-readable"],
)
def test_a_bad_key_file_is_a_clear_error(tmp_path: Path, spoil: Any, says: str) -> None:
    state = tmp_path / "state"
    key = load_key(state, create=True)
    assert key is not None
    spoil(state / KEY_FILE)
    with pytest.raises(ConfigError, match=says) as err:
        load_key(state)
    assert "ab" * 16 not in err.value.line()


def test_a_key_file_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "attacker-key"
    elsewhere.write_text("00" * 32 + "\n")
    os.chmod(elsewhere, 0o600)
    state = tmp_path / "state"
    state.mkdir()
    (state / KEY_FILE).symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="symbolic link"):
        load_key(state)


def test_a_bad_key_file_fails_apply_with_one_line_and_no_write(
    cli: Any, emu_env: dict[str, str], emulator: Any, tmp_path: Path
) -> None:
    path = tmp_path / "plan.json"
    make_plan(cli, emu_env, path)
    key_file = Path(emu_env["PINMIGRATE_STATE_DIR"]) / KEY_FILE
    secret = key_file.read_text().strip()
    key_file.write_text("damaged\n")
    emulator.clear_requests()
    result = cli(["apply", str(path)], emu_env)
    assert result.exit_code == 64
    assert "plan key" in one_error_line(result) and "is damaged" in result.stderr
    assert secret not in result.stderr
    assert emulator.requests()["write_attempts"] == 0


def test_load_plan_without_review_refuses_what_it_cannot_verify(
    cli: Any, emu_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "plan.json"
    make_plan(cli, emu_env, path)
    with pytest.raises(PlanFileError, match="made elsewhere"):
        load_plan(path, key=None)
    assert load_plan(path, key=None, review=True).actions


def test_ci_jobs_with_different_state_dirs_share_a_key_through_the_environment(
    cli: Any, emu_env: dict[str, str], emulator: Any, tmp_path: Path
) -> None:
    secret = "5e" * 32
    shared = {**emu_env, "PINMIGRATE_PLAN_KEY": secret}
    path = tmp_path / "plan.json"
    made = cli(["plan", "--out", str(path), "-v"], shared)
    assert made.exit_code == 0, made.stderr
    assert secret not in made.stdout + made.stderr
    assert not (Path(emu_env["PINMIGRATE_STATE_DIR"]) / KEY_FILE).exists()  # never on disk

    job2 = other_state(shared, tmp_path, "job-2")
    applied = cli(["apply", str(path)], job2)
    assert applied.exit_code == 4, applied.stderr  # carried out; reconnects wait for a person

    without = other_state(emu_env, tmp_path, "job-3")
    assert cli(["apply", str(path)], without).exit_code == 64


def test_a_malformed_key_in_the_environment_is_one_line_that_does_not_echo_it(
    cli: Any, emu_env: dict[str, str], tmp_path: Path
) -> None:
    result = cli(
        ["plan", "--out", str(tmp_path / "p.json")],
        {**emu_env, "PINMIGRATE_PLAN_KEY": "s3cr3t-but-short"},
    )
    assert result.exit_code == 64
    line = one_error_line(result)
    assert "PINMIGRATE_PLAN_KEY" in line and "s3cr3t-but-short" not in result.stdout + result.stderr
    assert not (tmp_path / "p.json").exists()
