"""The docs cannot drift: every command, key and exit code is documented where users look."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pinmigrate.cli import COMMANDS
from pinmigrate.errors import ExitCode
from pinmigrate.settings import (
    AdobeSettings,
    HttpSettings,
    MigrationSettings,
    PinterestSettings,
)

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = (ROOT / "config.example.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_in_the_readme(name: str) -> None:
    assert f"`pinmigrate {name}" in README


def test_readme_exit_codes_match_the_code() -> None:
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", README, re.M)}
    defined = {v for k, v in vars(ExitCode).items() if k.isupper()}
    assert documented == defined


@pytest.mark.parametrize(
    ("section", "model"),
    [
        ("adobe", AdobeSettings),
        ("pinterest", PinterestSettings),
        ("migration", MigrationSettings),
        ("http", HttpSettings),
    ],
)
def test_example_config_documents_every_key(section: str, model: type) -> None:
    body = EXAMPLE.split(f"[{section}]", 1)[1].split("\n[", 1)[0]
    for key in model.model_fields:
        assert re.search(rf"^#? ?{key} =|PINMIGRATE_{section.upper()}_{key.upper()}", body, re.M), (
            f"{section}.{key} is not documented in config.example.toml"
        )


def test_packaged_example_is_the_top_level_one() -> None:
    packaged = ROOT / "pinmigrate" / "data" / "config.example.toml"
    assert packaged.read_text(encoding="utf-8") == EXAMPLE


def test_readme_has_the_two_setup_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    assert any("pinmigrate demo" in b and "pip install ." in b for b in blocks)
    assert any("pip install -e '.[test]'" in b and "pytest" in b for b in blocks)


def test_the_ci_recipe_keeps_the_state_dir_between_jobs() -> None:
    recipe = README[README.index("In CI, no Pinterest secret is needed") :]
    recipe = " ".join(recipe[: recipe.index("### Commands")].split())
    assert "export PINMIGRATE_STATE_DIR=" in recipe
    assert "Keep the state dir between jobs." in recipe
    assert "the new one is saved in the state dir (`logins.json`, 0600)" in recipe
    assert "leave the Pinterest settings unset" in recipe and "`not_checked`" in recipe
