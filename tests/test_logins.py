"""The login store: 0600 from creation, atomic, locked, keyed by user, never overwrites garbage."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from pinmigrate import redact
from pinmigrate.errors import ExitCode
from pinmigrate.logins import AdAccountAccess, Login, LoginStore, LoginStoreError


def make_login(user_id: str = "1000000001", username: str = "emu_marketer", **kw: object) -> Login:
    values: dict[str, object] = {
        "user_id": user_id,
        "username": username,
        "ad_accounts": [AdAccountAccess(id="549755885175", name="Main", permissions=["ADMIN"])],
        "scopes": ["ads:read", "ads:write", "user_accounts:read"],
        "access_token": SecretStr(f"pina_access_{user_id}"),
        "refresh_token": SecretStr(f"pinr_refresh_{user_id}"),
        "access_expires_at": datetime(2030, 1, 1, tzinfo=UTC),
        "refresh_expires_at": datetime(2030, 3, 1, tzinfo=UTC),
    }
    values.update(kw)
    return Login.model_validate(values)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_absent_store_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    store = LoginStore(tmp_path / "state")
    assert store.load() == []
    assert store.get("1") is None
    assert not (tmp_path / "state").exists()


def test_put_writes_version_1_with_tokens_in_clear(tmp_path: Path) -> None:
    store = LoginStore(tmp_path / "state")
    store.put(make_login())
    data = json.loads(store.path.read_text())
    assert data["version"] == 1
    [record] = data["logins"]
    assert record["user_id"] == "1000000001"
    assert record["access_token"] == "pina_access_1000000001"
    assert record["refresh_token"] == "pinr_refresh_1000000001"
    assert record["ad_accounts"] == [
        {"id": "549755885175", "name": "Main", "permissions": ["ADMIN"]}
    ]
    again = store.get("1000000001")
    assert again is not None
    assert again.access_token.get_secret_value() == "pina_access_1000000001"
    assert again.refresh_expires_at == datetime(2030, 3, 1, tzinfo=UTC)


def test_file_is_0600_and_new_state_dir_0700_even_with_a_permissive_umask(
    tmp_path: Path,
) -> None:
    old = os.umask(0)
    try:
        store = LoginStore(tmp_path / "state")
        store.put(make_login())
    finally:
        os.umask(old)
    assert mode_of(store.path) == 0o600
    assert mode_of(tmp_path / "state") == 0o700
    assert mode_of(store.lock_path) == 0o600


def test_the_temp_file_is_0600_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_replace = os.replace

    def spy(src: str | Path, dst: str | Path) -> None:
        seen.append(mode_of(Path(src)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    old = os.umask(0)
    try:
        LoginStore(tmp_path).put(make_login())
    finally:
        os.umask(old)
    assert seen == [0o600]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LoginStore(tmp_path)
    store.put(make_login())
    before = store.path.read_bytes()

    def boom(src: str | Path, dst: str | Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(LoginStoreError, match="cannot write the login store"):
        store.put(make_login("2", "other"))
    assert store.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logins.json", "logins.lock"]


def test_logging_in_again_replaces_that_user_only(tmp_path: Path) -> None:
    store = LoginStore(tmp_path)
    store.put(make_login("1", "a"))
    store.put(make_login("2", "b"))
    store.put(make_login("1", "a", access_token=SecretStr("pina_new")))
    logins = store.load()
    assert [lg.user_id for lg in logins] == ["1", "2"]
    assert logins[0].access_token.get_secret_value() == "pina_new"


def test_remove_by_user_id_or_username(tmp_path: Path) -> None:
    store = LoginStore(tmp_path)
    store.put(make_login("1", "alice"))
    store.put(make_login("2", "bob"))
    assert store.remove("BOB") is True
    assert [lg.user_id for lg in store.load()] == ["1"]
    assert store.remove("1") is True
    assert store.load() == []
    assert store.remove("nobody") is False


def test_update_semantics(tmp_path: Path) -> None:
    store = LoginStore(tmp_path)
    assert store.update("1", lambda current: current) is None
    assert not store.path.exists()  # returning what it was given writes nothing
    stored = store.update("1", lambda current: make_login("1", "a"))
    assert stored is not None and store.get("1") == stored
    with pytest.raises(ValueError, match="returned user"):
        store.update("1", lambda current: make_login("2", "b"))

    def fail(current: Login | None) -> Login:
        raise RuntimeError("refresh failed")

    before = store.path.read_bytes()
    with pytest.raises(RuntimeError):
        store.update("1", fail)
    assert store.path.read_bytes() == before
    assert store.update("1", lambda current: None) is None
    assert store.load() == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[]", "not a pinmigrate login store"),
        (b'{"version": 2, "logins": []}', "has version 2"),
        (b'{"version": 1, "logins": [{"username": "x"}]}', r"bad entry \(logins\[0\]"),
    ],
)
def test_a_corrupt_store_is_a_clear_error_and_never_overwritten(
    tmp_path: Path, content: bytes, message: str
) -> None:
    store = LoginStore(tmp_path)
    store.path.write_bytes(content)
    with pytest.raises(LoginStoreError, match=message) as info:
        store.load()
    assert str(store.path) in info.value.line()
    assert info.value.exit_code == ExitCode.FAILED
    with pytest.raises(LoginStoreError):
        store.put(make_login())
    assert store.path.read_bytes() == content


def test_naive_times_in_a_hand_edited_file_are_read_as_utc(tmp_path: Path) -> None:
    store = LoginStore(tmp_path)
    record = {
        "user_id": "1",
        "access_token": "pina_x",
        "access_expires_at": "2030-01-01T00:00:00",
    }
    store.path.write_text(json.dumps({"version": 1, "logins": [record]}))
    [login] = store.load()
    assert login.access_expires_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_loaded_tokens_are_registered_for_redaction(tmp_path: Path) -> None:
    store = LoginStore(tmp_path)
    secret = "pina_registered_on_load_9d8f7"
    record = {"user_id": "1", "access_token": secret}
    store.path.write_text(json.dumps({"version": 1, "logins": [record]}))
    store.load()
    assert secret not in redact.redact(f"token is {secret}!")
    assert secret not in repr(store.load()[0])


def test_a_store_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LoginStore(tmp_path)
    store.put(make_login())
    store.path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="pinmigrate.logins"):
        store.load()
    assert "readable by other users" in caplog.text


def _bump(store: LoginStore, user_id: str = "1") -> None:
    """Read-modify-write: append one mark to the username (a lost update loses a mark)."""

    def add(current: Login | None) -> Login:
        base = current or make_login(user_id, "")
        return base.model_copy(update={"username": base.username + "x"})

    store.update(user_id, add)


def test_threads_never_lose_an_update(tmp_path: Path) -> None:
    # Separate store objects, as separate commands would have: only the file lock protects.
    stores = [LoginStore(tmp_path) for _ in range(4)]

    def work(store: LoginStore) -> None:
        for _ in range(25):
            _bump(store)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    login = stores[0].get("1")
    assert login is not None and login.username == "x" * 100


def test_processes_never_lose_an_update(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from test_logins import _bump\n"
        "from pinmigrate.logins import LoginStore\n"
        "store = LoginStore(Path(sys.argv[1]))\n"
        "for _ in range(30):\n"
        "    _bump(store)\n"
    )
    here = str(Path(__file__).parent)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), here]) for _ in range(3)
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    login = LoginStore(tmp_path).get("1")
    assert login is not None and login.username == "x" * 90


def test_nested_locking_in_one_thread_does_not_deadlock(tmp_path: Path) -> None:
    store = LoginStore(tmp_path)
    with store.locked(), store.locked():
        store.put(make_login())
    assert store.get("1000000001") is not None
