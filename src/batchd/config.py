"""Server settings: defaults, overridden by a TOML file, then BATCHD_* variables, then flags."""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

DEFAULT_PORT = 8780
DEV_ACCOUNT = "123456789012"
LOG_LEVELS = ("debug", "info", "warning", "error")
_POSITIVE = ("max_connections", "connection_idle_timeout_seconds", "request_header_timeout_seconds",
             "request_body_timeout_seconds", "max_header_bytes", "body_buffer_budget_bytes")


class ConfigError(Exception):
    """A setting is missing, malformed or unsafe; the message says which."""


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_access_key: str
    account_id: str

    def __repr__(self) -> str:  # never print the secret
        return f"Credential(access_key_id={self.access_key_id!r}, account_id={self.account_id!r})"


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = Path(".batchd")
    # SQLAlchemy URL; None means SQLite in data_dir.
    db: str | None = None
    credentials: list[Credential] = field(default_factory=list)
    # Seconds between SIGTERM and SIGKILL for TerminateJob and timeouts (AWS: 30).
    terminate_grace_seconds: float = 30.0
    # Smallest timeout.attemptDurationSeconds accepted (AWS: 60). Tests lower it.
    min_attempt_duration_seconds: int = 60
    # Smallest jobStateTimeLimitActions.maxTimeSeconds accepted (AWS: 600). Tests lower it.
    min_state_time_limit_seconds: int = 600
    # Memory (MiB) a compute environment offers per vCPU of its capacity, for placement.
    memory_mib_per_vcpu: int = 8192
    # GPUs a compute environment offers (AWS derives it from instance types; we cannot).
    gpus_per_compute_environment: int = 0
    # Seconds a new compute environment / job queue stays CREATING before VALID.
    resource_create_delay: float = 0.05
    # This server's id among several sharing one PostgreSQL database (default: kept in the data dir).
    server_id: str | None = None
    # Compute environments (names) whose jobs this server runs on its local executor; "*" = all.
    compute_environments: list[str] = field(default_factory=lambda: ["*"])
    # Open client connections at most (also bounded by half the open-file limit); when full, a new
    # connection closes the one idle the longest (api/connections.py).
    max_connections: int = 4096
    # Seconds a connection may stay open with no request in progress: before its first byte, and between
    # requests (keep-alive).
    connection_idle_timeout_seconds: float = 5.0
    # Seconds from a request's first byte until its headers are complete.
    request_header_timeout_seconds: float = 10.0
    # Seconds from the end of a request's headers until its body is complete (also: the most a response may
    # wait for a client that does not read it).
    request_body_timeout_seconds: float = 30.0
    # Bytes of request line and headers accepted (431 beyond).
    max_header_bytes: int = 16384
    # Bytes of request bodies received at once before their signature is checked (each counts its
    # Content-Length, at least 64 KiB); a request beyond gets 429 TooManyRequestsException.
    body_buffer_budget_bytes: int = 64 * 1024 * 1024
    # Log level of the server's terminal: debug, info (job state changes and refused requests), warning, error.
    log_level: str = "info"
    # Jobs' working directories (default: `<data_dir>-jobs`, beside the data dir, never inside it).
    jobs_dir: str | None = None
    # Several accounts' jobs run as host processes of one user: they can read each other's files. Say yes.
    allow_shared_host_accounts: bool = False
    # Run jobs as this user (needs batchd to run as root), so they cannot read the server's state.
    run_as_user: str | None = None

    @property
    def dev_mode(self) -> bool:
        return not self.credentials

    @property
    def db_url(self) -> str:
        if self.db:
            return self.db
        return f"sqlite:///{(Path(self.data_dir) / 'batchd.sqlite3').resolve()}"

    def check(self) -> None:
        """Refuse unsafe or impossible combinations before anything starts."""
        if not (0 <= self.port <= 65535):
            raise ConfigError(f"port {self.port} is out of range 0-65535")
        if self.dev_mode and not _is_loopback(self.host):
            raise ConfigError(
                f"refusing to listen on {self.host}: no [[credentials]] are configured, so requests are not "
                "authenticated (dev mode). Add credentials to the config file or bind to 127.0.0.1."
            )
        if self.terminate_grace_seconds < 0:
            raise ConfigError("terminate_grace_seconds must be >= 0")
        for name in _POSITIVE:
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a number > 0, not {value!r}")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"log_level {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        accounts = {c.account_id for c in self.credentials}
        if len(accounts) > 1 and not self.allow_shared_host_accounts:
            raise ConfigError(
                f"refusing to start: [[credentials]] name {len(accounts)} accounts, but the local executor runs "
                "every account's jobs as processes of one host user, which can read each other's files "
                "(docs/authentication.md); set allow_shared_host_accounts = true to accept that"
            )
        if self.run_as_user is not None:
            import pwd

            try:
                pwd.getpwnam(self.run_as_user)
            except KeyError:
                raise ConfigError(f"run_as_user: there is no user {self.run_as_user!r} on this host") from None
            if os.geteuid() != 0:
                raise ConfigError("run_as_user needs batchd to run as root (it starts each job as that user)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_SCALARS = {f.name: f for f in fields(Settings) if f.name != "credentials"}
_CREDENTIAL_KEYS = {"access_key_id", "secret_access_key", "account_id"}
_LISTS = {"compute_environments"}


def _coerce(name: str, value: object) -> object:
    kind = _SCALARS[name].type
    if name in _LISTS:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
            raise ConfigError(f"setting {name}: {value!r} is not a list of names")
        return [i.strip() for i in items]
    try:
        if name == "data_dir":
            return Path(str(value))
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return str(value).lower() in ("true", "1")
        if kind == "int":
            return int(value)  # type: ignore[arg-type]
        if kind == "float":
            return float(value)  # type: ignore[arg-type]
        return None if value is None else str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: {value!r} is not a valid {kind}") from exc


def load_settings(flags: dict[str, object] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Build Settings from the config file, the environment and flags (in rising precedence)."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    config_path = flags.pop("config", None) or env.get("BATCHD_CONFIG")
    credentials: list[Credential] = []
    if config_path:
        values, credentials = _read_toml(Path(str(config_path)))
    for name in _SCALARS:
        key = "BATCHD_" + name.upper()
        if key in env:
            values[name] = env[key]
    values.update(flags)
    unknown = set(values) - set(_SCALARS)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    settings = Settings(**{k: _coerce(k, v) for k, v in values.items()}, credentials=credentials)
    settings.check()
    return settings


def _read_toml(path: Path) -> tuple[dict[str, object], list[Credential]]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    raw_creds = data.pop("credentials", [])
    if not isinstance(raw_creds, list):
        raise ConfigError("config: [[credentials]] must be an array of tables")
    creds = []
    for i, entry in enumerate(raw_creds):
        unknown = sorted(set(entry) - _CREDENTIAL_KEYS) if isinstance(entry, dict) else []
        if unknown:  # most often a setting written after a [[credentials]] table, which TOML puts inside it
            raise ConfigError(
                f"config: credentials entry {i + 1} has unknown key(s) {', '.join(unknown)}; settings go before "
                "the first [[credentials]] table (or under [server])"
            )
        try:
            creds.append(
                Credential(
                    access_key_id=str(entry["access_key_id"]),
                    secret_access_key=str(entry["secret_access_key"]),
                    account_id=str(entry["account_id"]),
                )
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(
                f"config: credentials entry {i + 1} needs access_key_id, secret_access_key and account_id"
            ) from exc
        if not (creds[-1].account_id.isdigit() and len(creds[-1].account_id) == 12):
            raise ConfigError(f"config: credentials entry {i + 1}: account_id must be 12 digits")
    server = data.pop("server", {})
    if not isinstance(server, dict):
        raise ConfigError("config: [server] must be a table")
    merged = {**data, **server}
    return merged, creds
