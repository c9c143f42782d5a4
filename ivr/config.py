"""One typed config object, loaded from a TOML file and overridden by the environment.

Precedence (last wins): built-in defaults, the TOML file, then environment variables named
``STARPAY_<SECTION>_<KEY>`` (e.g. ``STARPAY_AGI_PORT=4600``). The defaults run the product
embedded: SQLite, the sandbox gateway, everything on loopback. Only the composition root
(ivr/app.py) turns these values into objects.

A file that was named (``-c`` or ``STARPAY_CONFIG``) but is missing, an unknown section or
key, and a ``STARPAY_*`` variable that is no setting (a typo) are errors, all reported at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "STARPAY_"
DEFAULT_FILE = "starpay.toml"


class ConfigError(ValueError):
    """The configuration cannot be used; the message says what to change.

    ``errors`` lists every problem found; ``config`` is the configuration as far as it
    could be built despite them (None when the error came from a single check)."""

    def __init__(self, errors: str | list[str], config: Config | None = None) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.config = config
        if len(self.errors) == 1:
            text = self.errors[0]
        else:
            text = f"{len(self.errors)} problems:\n" + "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(text)


@dataclass
class AgiConfig:
    host: str = "127.0.0.1"
    port: int = 4573
    max_sessions: int = 4000
    header_timeout: float = 5.0  # seconds to receive the whole agi_* header block
    command_timeout: float = 300.0  # longest a single AGI reply may take (recordings, waits)
    shutdown_grace: float = 30.0  # live calls get this long to finish on shutdown


@dataclass
class AmiConfig:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "starpay"
    # Empty means: use the secret generated for the local Asterisk instance (never a default).
    secret: str = ""
    reconnect_max_delay: float = 30.0


@dataclass
class AsteriskConfig:
    # Root of a Debian sid tree holding Asterisk; empty picks `asterisk` on PATH or the cache.
    root: str = ""
    # Name of the local instance (its rendered config, logs, spool and control socket).
    instance: str = "default"
    sip_port: int = 5060


@dataclass
class DatabaseConfig:
    url: str = "sqlite+aiosqlite:///var/starpay.db"
    echo: bool = False


@dataclass
class PaymentsConfig:
    gateway: str = "sandbox"  # sandbox | stripe
    currency: str = "USD"
    allow_overpay: bool = False
    daily_limit_minor: int = 500_000  # per account per day, minor units
    reconcile_interval: float = 60.0
    # A `pending` payment younger than this may still be in a live gateway call: leave it.
    # Must exceed the longest gateway call (the Stripe client's timeout and retries).
    reconcile_min_age: float = 300.0
    stripe_api_key: str = ""
    stripe_api_base: str = ""  # empty: Stripe's own API
    # The sandbox processor's own ledger (kept apart from our database, like a real one).
    sandbox_path: str = "var/sandbox-gateway.db"


@dataclass
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    secret: str = ""  # empty: a random one per start (sessions don't survive restarts)


@dataclass
class CallConfig:
    verify: str = "attested"  # always | attested | never
    # What an untrusted caller proves: zip | pin | zip_or_pin (ivr/flows/verify.py).
    verify_with: str = "zip"
    max_tries: int = 3
    lockout_failures: int = 5
    lockout_minutes: int = 30
    default_language: str = "en"
    languages: list[str] = field(default_factory=lambda: ["en", "es"])
    default_region: str = "US"


def _default_weekly() -> dict[str, str]:
    week = {day: "08:00-20:00" for day in ("mon", "tue", "wed", "thu", "fri")}
    return week | {"sat": "09:00-17:00", "sun": ""}


@dataclass
class HoursConfig:
    """When the billing center has agents; checked by ivr/services/hours.py."""

    timezone: str = "America/New_York"
    # Day -> "HH:MM-HH:MM[,HH:MM-HH:MM...]" in local wall-clock time; "" or a missing day is
    # closed; "24:00" ends at midnight. Replaces the whole default table when set.
    weekly: dict[str, str] = field(default_factory=_default_weekly)
    holidays_country: str = "US"  # "" for no public holidays
    holidays_subdiv: str = ""  # state/province code, e.g. "CA"
    # One-off closures, local time: a whole day "2026-12-24" or a span
    # "2026-12-31T14:00/2026-12-31T23:59".
    closures: list[str] = field(default_factory=list)


@dataclass
class SmsConfig:
    """Texts: receipts, bill notices, PAY/STOP/HELP replies (ivr/messaging/, ivr/texts/)."""

    transport: str = "outbox"  # outbox (nothing leaves the box) | http | asterisk
    sender: str = "+15555550100"  # the From number (E.164) or short code
    rate_per_second: float = 1.0  # segments per second per sender; a long code ~1
    brand: str = "StarPay"  # first word of every text, and the HELP reply's program name
    help_contact: str = "1-555-555-0100"  # what HELP tells people to call or write
    confirm: bool = False  # true: a PAY reply asks YES before any charge
    notice_window_days: int = 14  # PAY answers a notice sent within this many days
    quiet_start: str = "21:00"  # no notices from this time...
    quiet_end: str = "08:00"  # ...until this one, in the recipient's time zone


@dataclass
class LogConfig:
    level: str = "INFO"


@dataclass
class Config:
    agi: AgiConfig = field(default_factory=AgiConfig)
    ami: AmiConfig = field(default_factory=AmiConfig)
    asterisk: AsteriskConfig = field(default_factory=AsteriskConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    call: CallConfig = field(default_factory=CallConfig)
    hours: HoursConfig = field(default_factory=HoursConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    source: str = "defaults"

    def problems(self) -> list[str]:
        """Everything wrong with this configuration, in plain words (empty when fine)."""
        out: list[str] = []
        for name, port in (("agi.port", self.agi.port), ("ami.port", self.ami.port),
                           ("web.port", self.web.port), ("asterisk.sip_port",
                                                         self.asterisk.sip_port)):
            if not 0 < port < 65536:
                out.append(f"{name} is {port}; a TCP port is between 1 and 65535")
        for name, host in (("agi.host", self.agi.host), ("ami.host", self.ami.host),
                           ("web.host", self.web.host)):
            if not _is_loopback(host):
                out.append(f"note: {name} = {host} is not loopback; make sure a firewall "
                           "keeps it off the public network")
        if self.agi.max_sessions < 1:
            out.append("agi.max_sessions must be at least 1")
        if self.call.verify not in ("always", "attested", "never"):
            out.append(f"call.verify is {self.call.verify!r}; use always, attested or never")
        if self.call.verify_with not in ("zip", "pin", "zip_or_pin"):
            out.append(f"call.verify_with is {self.call.verify_with!r}; use zip, pin or "
                       "zip_or_pin")
        if self.payments.gateway not in ("sandbox", "stripe"):
            out.append(f"payments.gateway is {self.payments.gateway!r}; use sandbox or stripe")
        if self.payments.gateway == "stripe" and not self.payments.stripe_api_key:
            out.append("payments.gateway is stripe but payments.stripe_api_key is empty; "
                       "set STARPAY_PAYMENTS_STRIPE_API_KEY")
        if self.payments.reconcile_min_age < 60:
            out.append("payments.reconcile_min_age must be at least 60 seconds (longer than "
                       "any gateway call), or the reconciler could race a live charge")
        if self.payments.daily_limit_minor <= 0:
            out.append("payments.daily_limit_minor must be positive (minor units, e.g. cents)")
        if self.payments.gateway == "sandbox" and not self.payments.sandbox_path:
            out.append("payments.sandbox_path is empty; set a file path for the sandbox ledger")
        if len(self.payments.currency) != 3 or not self.payments.currency.isalpha():
            out.append(f"payments.currency is {self.payments.currency!r}; use an ISO 4217 code")
        if not self.database.url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            out.append("database.url must start with sqlite+aiosqlite:// or "
                       "postgresql+asyncpg://")
        if not _is_loopback(self.ami.host) and not self.ami.secret:
            out.append("ami.secret is empty for a remote Asterisk; set STARPAY_AMI_SECRET")
        if self.call.default_language not in self.call.languages:
            out.append(f"call.default_language {self.call.default_language!r} is not in "
                       f"call.languages {self.call.languages}")
        out += _sms_problems(self.sms)
        # The [hours] rules are checked by the business that reads them: see
        # ivr.app_hours.config_problems, which whole-config checks call instead.
        return out

    def errors(self) -> list[str]:
        return [p for p in self.problems() if not p.startswith("note:")]


def _sms_problems(sms: SmsConfig) -> list[str]:
    out = []
    if sms.transport not in ("outbox", "http", "asterisk"):
        out.append(f"sms.transport is {sms.transport!r}; use outbox, http or asterisk")
    if not re.fullmatch(r"\+[1-9]\d{6,14}|\d{5,6}", sms.sender):
        out.append(f"sms.sender is {sms.sender!r}; use an E.164 number (+15551234567) or "
                   "a 5-6 digit short code")
    if sms.rate_per_second <= 0:
        out.append("sms.rate_per_second must be positive (segments per second per sender)")
    if not sms.brand.strip():
        out.append("sms.brand is empty; texts start with it")
    if sms.notice_window_days < 1:
        out.append("sms.notice_window_days must be at least 1")
    for name in ("quiet_start", "quiet_end"):
        value = getattr(sms, name)
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            out.append(f"sms.{name} is {value!r}; use HH:MM (24-hour)")
    return out


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _coerce(value: str, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if kind is bool:
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: {value!r} is not true/false")
    if kind is int:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a whole number") from None
    if kind is float:
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a number") from None
    if origin is list:
        return [v.strip() for v in value.split(",") if v.strip()]
    if origin is dict:  # "mon=08:00-12:00,13:00-17:00;sun=": ";" because values hold commas
        out = {}
        for part in filter(None, (p.strip() for p in value.split(";"))):
            key, eq, val = part.partition("=")
            if not eq:
                raise ConfigError(f"{where}: {part!r} is not key=value (separate with ;)")
            out[key.strip()] = val.strip()
        return out
    return value


def _check_type(value: Any, kind: Any, where: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    origin = typing.get_origin(kind) or kind
    if isinstance(origin, types.UnionType):
        return value
    if not isinstance(value, origin) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {getattr(kind, '__name__', kind)}, "
                          f"got {value!r}")
    args = typing.get_args(kind)
    if origin is dict and args:
        for key, val in value.items():
            _check_type(key, args[0], f"{where} key")
            _check_type(val, args[1], f"{where}.{key}")
    elif origin is list and args:
        for item in value:
            _check_type(item, args[0], f"{where} item")
    return value


# STARPAY_* variables that are not settings but are read by the project's scripts and
# tests; anything else under the prefix that is not a setting is a typo and an error.
NON_CONFIG_VARIABLES = frozenset({
    ENV_PREFIX + "CONFIG",  # which TOML file to load (like -c)
    ENV_PREFIX + "REQUIRE_REAL",  # tests: fail instead of skip when Asterisk is missing
    ENV_PREFIX + "DEBIAN_MIRROR",  # scripts/asterisk-root.sh: where to fetch Asterisk
    ENV_PREFIX + "TEST_PAUSE_AFTER_GATEWAY",  # tests/fixtures/paused_gateway.py
})


def load(path: str | os.PathLike[str] | None = None,
         environ: typing.Mapping[str, str] | None = None) -> Config:
    """Build the config: defaults, then the TOML file (if any), then the environment.

    Every problem is collected first and raised together in one ConfigError, which also
    carries the config as far as it could be built (for `ivr config show`)."""
    env = os.environ if environ is None else environ
    cfg = Config()
    errors: list[str] = []
    named = path or env.get(ENV_PREFIX + "CONFIG")
    file = Path(named) if named else Path(DEFAULT_FILE)
    if named or file.exists():
        cfg.source = str(file)
        data = _read_file(file, errors)
        if data is not None:
            _apply_file(cfg, data, str(file), errors)
    _apply_env(cfg, env, errors)
    if errors:
        raise ConfigError(errors, cfg)
    return cfg


def _read_file(file: Path, errors: list[str]) -> dict[str, Any] | None:
    try:
        return tomllib.loads(file.read_text())
    except FileNotFoundError:
        errors.append(f"config file {file} does not exist")
    except IsADirectoryError:
        errors.append(f"config file {file} is a directory")
    except UnicodeDecodeError as exc:
        errors.append(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    except tomllib.TOMLDecodeError as exc:
        errors.append(f"{file}: not valid TOML: {exc}")
    return None


def _sections(cfg: Config) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "source"}


def _did_you_mean(word: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _apply_file(cfg: Config, data: dict[str, Any], where: str, errors: list[str]) -> None:
    sections = _sections(cfg)
    for name, table in data.items():
        if name not in sections:
            errors.append(f"{where}: unknown section [{name}]"
                          + (_did_you_mean(f"[{name}]", (f"[{s}]" for s in sections))
                             or f"; known: {', '.join(sections)}"))
            continue
        if not isinstance(table, dict):
            errors.append(f"{where}: [{name}] must be a table")
            continue
        section = sections[name]
        hints = typing.get_type_hints(type(section))
        for key, value in table.items():
            if key not in hints:
                errors.append(f"{where}: unknown key {name}.{key}"
                              + (_did_you_mean(f"{name}.{key}", (f"{name}.{k}" for k in hints))
                                 or f"; known: {', '.join(hints)}"))
                continue
            try:
                setattr(section, key, _check_type(value, hints[key], f"{where}: {name}.{key}"))
            except ConfigError as exc:
                errors.extend(exc.errors)


def env_names(cfg: Config | None = None) -> dict[str, tuple[str, str]]:
    """Every settings variable: STARPAY_<SECTION>_<KEY> -> (section, key)."""
    sections = _sections(cfg or Config())
    return {f"{ENV_PREFIX}{name}_{key}".upper(): (name, key)
            for name, section in sections.items()
            for key in typing.get_type_hints(type(section))}


def _apply_env(cfg: Config, env: typing.Mapping[str, str], errors: list[str]) -> None:
    sections = _sections(cfg)
    names = env_names(cfg)
    for var, value in sorted(env.items()):
        if not var.upper().startswith(ENV_PREFIX) or var.upper() in NON_CONFIG_VARIABLES:
            continue
        if var.upper() not in names:
            errors.append(f"{var} is not a StarPay setting"
                          + _did_you_mean(var.upper(), [*names, *NON_CONFIG_VARIABLES])
                          + " (settings are STARPAY_<SECTION>_<KEY>; see `ivr config show`)")
            continue
        name, key = names[var.upper()]
        section = sections[name]
        try:
            setattr(section, key, _coerce(value, typing.get_type_hints(type(section))[key], var))
        except ConfigError as exc:
            errors.extend(exc.errors)


def as_dict(cfg: Config, hide_secrets: bool = True) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    if hide_secrets:
        for table in out.values():
            if isinstance(table, dict):
                for key in table:
                    if ("secret" in key or key.endswith("api_key")) and table[key]:
                        table[key] = "********"
    return out
