"""The single place where flags, environment and the config file become one settings object.

Precedence: flags > ``PINMIGRATE_<SECTION>_<KEY>`` environment > TOML file > defaults.
Every problem is a :class:`~pinmigrate.errors.ConfigError` (exit 64) whose one line names
the key and where its value came from.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from pinmigrate.errors import ConfigError
from pinmigrate.files import unsafe_dir_problem

ENV_PREFIX = "PINMIGRATE_"
SECTIONS = ("adobe", "pinterest", "migration", "http")
#: Environment names that are not config keys.
GLOBAL_ENV = {
    "PINMIGRATE_CONFIG",
    "PINMIGRATE_OUTPUT",
    "PINMIGRATE_STATE_DIR",
    "PINMIGRATE_PLAN_KEY",
}

DEFAULT_ADOBE_SCOPES = (
    "openid",
    "session",
    "AdobeID",
    "read_organizations",
    "additional_info.projectedProductContext",
)
DEFAULT_PINTEREST_SCOPES = ("ads:read", "ads:write", "user_accounts:read")
#: Experience Platform's destination accounts page, where a person presses Reconnect OAuth.
#: The UI's exact deep-link form is unconfirmed (docs/reconnect.md): set adobe.ui_url when
#: your organisation's address differs.
DEFAULT_UI_URL = "https://experience.adobe.com/#/sname:{sandbox}/platform/destination/accounts"
#: The fields an ``adobe.ui_url`` template may use.
UI_URL_FIELDS = ("org_id", "sandbox", "account_id")
#: ``migration.reconnect_timeout`` when unset: at a terminal a person is there to act.
RECONNECT_TIMEOUT_AT_TERMINAL = 900.0


def _check_ui_url(value: str) -> str:
    import string

    try:
        names = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid template: {exc}") from None
    unknown = sorted({n for n in names if n not in UI_URL_FIELDS})
    if unknown:
        raise ValueError(
            f"unknown field {{{unknown[0]}}} in {value!r}; a template may use "
            + ", ".join(f"{{{f}}}" for f in UI_URL_FIELDS)
        )
    parts = urlsplit(value.replace("{", "").replace("}", ""))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {value!r}")
    # A person signs in to Adobe on this page: never over plain http to another machine.
    _https_unless_loopback(value, parts.scheme, parts.hostname)
    return value


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {value!r}")
    # The client secret, IMS and Pinterest tokens travel to these: never in clear text.
    _https_unless_loopback(value, parts.scheme, parts.hostname)
    return value.rstrip("/") if not value.endswith("/oauth/") else value


def _https_unless_loopback(value: str, scheme: str, host: str | None) -> None:
    """Plain http only to this machine (the emulator); anything else must be https."""
    if scheme != "https" and not is_loopback_host(host):
        raise ValueError(
            f"{value!r} must be https; plain http is allowed only for a loopback host "
            "(localhost, 127.0.0.0/8, ::1), such as the emulator"
        )


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _secret_on_one_line(value: SecretStr | None) -> SecretStr | None:
    """A secret with a line break (or other whitespace) inside is a paste gone wrong; it would
    also break the header it travels in. The message never shows the value."""
    if value is not None and any(
        ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value.get_secret_value()
    ):
        raise ValueError(
            "holds a line break, a space or another control character inside (value not "
            "shown); set it again on one line"
        )
    return value


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, list):
        return tuple(value)
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class AdobeSettings(_Section):
    org_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scopes: tuple[str, ...] = DEFAULT_ADOBE_SCOPES
    sandboxes: tuple[str, ...] = ("prod",)
    ims_url: str = "https://ims-na1.adobelogin.com"
    platform_url: str = "https://platform.adobe.io"
    #: The page ``apply`` opens for a reconnect: a template with {org_id}, {sandbox}, {account_id}.
    ui_url: str = DEFAULT_UI_URL

    _lists = field_validator("scopes", "sandboxes", mode="before")(_split_list)
    _urls = field_validator("ims_url", "platform_url")(_check_url)
    _secrets = field_validator("client_secret")(_secret_on_one_line)
    _ui_url = field_validator("ui_url")(_check_ui_url)

    @field_validator("sandboxes")
    @classmethod
    def _sandboxes_not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one sandbox is needed")
        return tuple(name.lower() for name in value)

    @field_validator("org_id")
    @classmethod
    def _org_id_shape(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith("@AdobeOrg"):
            raise ValueError(f"expected an id ending in @AdobeOrg, got {value!r}")
        return value


#: The redirect URI Pinterest's quickstart registers on its app (pinterest/api-quickstart
#: python/src/api_config.py: "must be literally the same as configured" on the app).
DEFAULT_REDIRECT_URI = "http://localhost:8085/"


class PinterestSettings(_Section):
    app_id: str | None = None
    app_secret: SecretStr | None = None
    redirect_uri: str = DEFAULT_REDIRECT_URI
    scopes: tuple[str, ...] = DEFAULT_PINTEREST_SCOPES
    oauth_url: str = "https://www.pinterest.com/oauth/"
    api_url: str = "https://api.pinterest.com/v5"
    refresh_token: SecretStr | None = None
    access_token: SecretStr | None = None
    #: Send a PKCE S256 challenge with the authorize URL and its verifier with the code.
    #: Off by default: Pinterest documents no PKCE (docs/security.md).
    pkce: bool = False

    _lists = field_validator("scopes", mode="before")(_split_list)
    _urls = field_validator("oauth_url", "api_url")(_check_url)
    _secrets = field_validator("app_secret", "refresh_token", "access_token")(_secret_on_one_line)

    @field_validator("redirect_uri")
    @classmethod
    def _loopback_redirect(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                f"{value!r} must be an http:// loopback URL such as http://localhost:8085/ "
                "(pinmigrate listens there for the OAuth callback)"
            )
        if not is_loopback_host(parts.hostname):
            raise ValueError(
                f"{value!r} is not a loopback address; the OAuth callback must land on this "
                "machine (use localhost or 127.0.0.1 and register that URI on the Pinterest app)"
            )
        if parts.port is None:
            raise ValueError(f"{value!r} needs an explicit port, e.g. http://localhost:8085/")
        return value


class MigrationSettings(_Section):
    #: Card names; None tries the names of Adobe's notice (see :mod:`pinmigrate.cards`).
    legacy_destination: str | None = None
    new_destination: str | None = None
    legacy_spec_id: str | None = None
    new_spec_id: str | None = None
    disable_legacy: bool = True
    #: Switch a legacy flow off only after its twin's first run (after enabling) succeeded
    #: (``--wait-runs``); the planner writes the order into each ``disable_flow``.
    wait_runs: bool = False
    #: Under the 30 days a Pinterest grant lasts: a wider margin would ask for a reconnect of
    #: every account on every plan, a fresh one included.
    reconnect_margin_days: int = Field(default=7, ge=0)
    #: "adobe": a person presses Reconnect OAuth in Adobe's UI (documented); "api": pinmigrate
    #: writes credentials with PATCH /connections (undocumented, experimental).
    reconnect_via: Literal["adobe", "api"] = "adobe"
    #: Seconds apply waits for a reconnect in Adobe; None: 900 at a terminal, else 0.
    reconnect_timeout: float | None = Field(default=None, ge=0, le=7 * 24 * 3600)
    #: Writes in flight at once when apply (or rollback) starts.
    concurrency: int = Field(default=8, ge=1, le=64)
    #: The most writes in flight at once that apply grows to while answers stay fast and
    #: nothing is refused (:mod:`pinmigrate.throttle`); never below ``concurrency``.
    max_concurrency: int = Field(default=16, ge=1, le=64)

    @property
    def most_concurrency(self) -> int:
        """The ceiling apply grows to: ``max_concurrency``, never below ``concurrency``. A
        ``concurrency`` set (flag, env or file) without ``max_concurrency`` is also the
        ceiling: ``--concurrency 2`` asks for at most two writes at once."""
        if (
            "concurrency" in self.model_fields_set
            and "max_concurrency" not in self.model_fields_set
        ):
            return self.concurrency
        return max(self.concurrency, self.max_concurrency)

    @field_validator("reconnect_margin_days")
    @classmethod
    def _margin_under_a_grant(cls, value: int) -> int:
        if value >= 30:
            raise ValueError(
                f"{value} days is not less than the 30 days a Pinterest grant lasts: every "
                "account, even one just reconnected, would need a reconnect (use 0 to 29)"
            )
        return value


#: The documented retry cap (``RetryPolicy.total_cap``): no request, retries included, lasts
#: longer, so no one attempt may be allowed more.
REQUEST_DEADLINE_CAP = 120.0


class HttpSettings(_Section):
    """Limits on every answer read from Adobe or Pinterest (docs/security.md)."""

    #: The largest answer read, in MiB. A page of 100 flows from the emulator at scale is
    #: about 250 KiB (docs/security.md): 8 MiB leaves room for flows with many audiences and
    #: still bounds memory when a server (or something posing as one) never stops sending.
    max_response_mib: float = Field(default=8.0, gt=0, le=1024)
    #: Seconds one attempt may take, from sending to the last byte of the answer, however
    #: slowly the bytes come (the read timeout only bounds the gap between two bytes).
    request_deadline: float = Field(default=60.0, gt=0, le=REQUEST_DEADLINE_CAP)

    @property
    def max_response_bytes(self) -> int:
        return int(self.max_response_mib * 1024 * 1024)


class Settings(_Section):
    """Validated, frozen settings. Secrets are ``SecretStr``: printing shows ``**********``."""

    adobe: AdobeSettings = AdobeSettings()
    pinterest: PinterestSettings = PinterestSettings()
    migration: MigrationSettings = MigrationSettings()
    http: HttpSettings = HttpSettings()
    state_dir: Path = Field(default_factory=lambda: default_state_dir())
    config_path: Path | None = None
    sources: dict[str, str] = Field(default_factory=dict, repr=False)

    def source_of(self, dotted: str) -> str:
        """Where a key's value came from: a flag, an environment name, the file, or default."""
        return self.sources.get(dotted, "default")

    def require(self, *dotted: str) -> None:
        """Raise ConfigError naming the first of these keys that has no value (and, when no
        config file was found, where one was looked for, suggesting ``pinmigrate init``)."""
        for key in dotted:
            section, name = key.split(".", 1)
            if self.value_of(key) is None:
                if self.config_path is None:
                    raise ConfigError(
                        f"missing required setting {key}: {no_config_file()}",
                        hint=f"run `pinmigrate init` to write one, or set {env_name(key)}",
                    )
                raise ConfigError(
                    f"missing required setting {key}",
                    hint=f"set {env_name(key)} or add {name} to [{section}] in the config file",
                )

    def placeholders(self) -> list[str]:
        """The keys that still hold the placeholder values of ``pinmigrate init``'s template."""
        return [key for key, value in INIT_PLACEHOLDERS.items() if self.value_of(key) == value]

    def value_of(self, dotted: str) -> Any:
        """A key's value by its dotted name (``adobe.org_id``)."""
        section, name = dotted.split(".", 1)
        return getattr(getattr(self, section), name)

    def require_adobe(self) -> None:
        self.require("adobe.org_id", "adobe.client_id", "adobe.client_secret")

    def require_pinterest_app(self) -> None:
        self.require("pinterest.app_id", "pinterest.app_secret")

    def secret_values(self) -> list[str]:
        """Every secret value held, for log redaction."""
        values = [
            self.adobe.client_secret,
            self.pinterest.app_secret,
            self.pinterest.refresh_token,
            self.pinterest.access_token,
        ]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


#: The example values ``pinmigrate init`` writes (data/config.example.toml), never real ones.
INIT_PLACEHOLDERS = {
    "adobe.org_id": "1234ABCD5678EF90@AdobeOrg",
    "adobe.client_id": "your-client-id",
}


def no_config_file() -> str:
    """Says that no config file was found, and where one was looked for."""
    looked = " and ".join(str(path.absolute()) for path in default_config_paths())
    return f"no config file found (looked for {looked})"


def env_name(dotted: str) -> str:
    return ENV_PREFIX + dotted.replace(".", "_").upper()


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pinmigrate"


def default_config_paths() -> list[Path]:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [Path("pinmigrate.toml"), Path(base) / "pinmigrate" / "config.toml"]


def _keys_of(section: str) -> set[str]:
    return set(_SECTION_MODELS[section].model_fields)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return data


def _from_file(path: Path, layers: dict[str, dict[str, Any]], sources: dict[str, str]) -> None:
    data = _read_toml(path)
    for section, table in data.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"unknown section [{section}] in {path}",
                hint=f"known sections are {', '.join(SECTIONS)}",
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{section} in {path} must be a table ([{section}])")
        known = _keys_of(section)
        for key, value in table.items():
            if key not in known:
                raise ConfigError(
                    f"unknown key {section}.{key} in {path}",
                    hint=f"known keys of [{section}]: {', '.join(sorted(known))}",
                )
            layers[section][key] = value
            sources[f"{section}.{key}"] = f"{path}"


def _from_env(
    env: Mapping[str, str], layers: dict[str, dict[str, Any]], sources: dict[str, str]
) -> None:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in GLOBAL_ENV:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in SECTIONS:
            continue
        if key not in _keys_of(section):
            raise ConfigError(
                f"unknown setting {name} in the environment",
                hint=f"known keys of [{section}]: {', '.join(sorted(_keys_of(section)))}",
            )
        layers[section][key] = value
        sources[f"{section}.{key}"] = f"environment {name}"


def _explain(exc: ValidationError, section: str, sources: Mapping[str, str]) -> ConfigError:
    err = exc.errors()[0]
    parts = [str(part) for part in err["loc"] if not isinstance(part, int)]
    dotted = ".".join([section, *parts[:1]])
    where = sources.get(dotted, "default")
    message = err["msg"].removeprefix("Value error, ")
    return ConfigError(f"invalid setting {dotted} (from {where}): {message}")


def _check_state_dir(path: Path, where: str) -> None:
    """A state dir that can never be a directory is a config error now, not a crash mid-apply.

    So is one that another user owns or others may write to: it holds the Pinterest tokens
    and the journal rollback trusts, so it is refused (exit 64) rather than warned about;
    the fix is one chmod or another directory, and nothing has been read or written yet.
    """
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise ConfigError(
                    f"invalid state dir {path} (from {where}): {candidate} is not a directory",
                    hint="set PINMIGRATE_STATE_DIR to a directory (it is created if missing)",
                )
            break
    problem = unsafe_dir_problem(path)
    if problem:
        raise ConfigError(
            f"unsafe state dir {path} (from {where}): {problem}",
            hint=f"run `chmod 700 {path}` as its owner, or set PINMIGRATE_STATE_DIR to a "
            "directory of your own",
        )


_SECTION_MODELS: dict[str, type[_Section]] = {
    "adobe": AdobeSettings,
    "pinterest": PinterestSettings,
    "migration": MigrationSettings,
    "http": HttpSettings,
}


def _sections(layers: Mapping[str, dict[str, Any]], sources: Mapping[str, str]) -> dict[str, Any]:
    """Each section's model from its layered values; ConfigError names the key and source."""
    built: dict[str, Any] = {}
    for section, model in _SECTION_MODELS.items():
        try:
            built[section] = model(**layers[section])
        except ValidationError as exc:
            raise _explain(exc, section, sources) from None
    return built


def load_settings(
    *,
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from every source; ``overrides`` are flags ({"section.key": value}),
    and ``flags`` names the flag that set each (``{"migration.concurrency": "--concurrency"}``).
    """
    env = os.environ if env is None else env
    layers: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    sources: dict[str, str] = {}

    explicit = config_path or env.get("PINMIGRATE_CONFIG")
    path: Path | None = None
    if explicit:
        path = Path(explicit)
        _from_file(path, layers, sources)
    else:
        for candidate in default_config_paths():
            if candidate.is_file():
                path = candidate
                _from_file(path, layers, sources)
                break

    _from_env(env, layers, sources)
    if any(value is not None for value in (overrides or {}).values()):
        # A flag must not hide a bad value in the file or the environment: check them first.
        _sections(layers, sources)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        layers[section][key] = value
        flag = (flags or {}).get(dotted)
        sources[dotted] = f"flag {flag}" if flag else "command-line flag"

    built = _sections(layers, sources)
    state_dir = env.get("PINMIGRATE_STATE_DIR")
    state_path = Path(state_dir) if state_dir else default_state_dir()
    _check_state_dir(state_path, "environment PINMIGRATE_STATE_DIR" if state_dir else "default")
    return Settings(
        **built,
        state_dir=state_path,
        config_path=path,
        sources=sources,
    )
