"""The [hours] config turned into the business's HoursRules, and its problems in config words.

Part of the composition root: services/hours.py knows nothing of the config, and config.py
nothing of the services (``Config.problems`` leaves the hours rules to ``config_problems``).
"""

from __future__ import annotations

from ivr.config import Config, HoursConfig
from ivr.services.hours import BusinessHours, HoursError, HoursRules


def hours_rules(cfg: HoursConfig) -> HoursRules:
    return HoursRules(timezone=cfg.timezone, weekly=dict(cfg.weekly),
                      holidays_country=cfg.holidays_country,
                      holidays_subdiv=cfg.holidays_subdiv, closures=tuple(cfg.closures))


def business_hours(cfg: HoursConfig) -> BusinessHours:
    """Raises HoursError (problems named as HoursRules fields) when the rules are wrong."""
    return BusinessHours(hours_rules(cfg))


def hours_problems(cfg: HoursConfig) -> list[str]:
    """Plain-words problems with the [hours] section, named by their config keys."""
    try:
        hours = business_hours(cfg)
    except HoursError as exc:
        return [f"hours.{p}" for p in exc.problems]
    if not hours.weekly_groups():
        return ["note: hours.weekly has no open hours; every caller hears the after-hours "
                "message"]
    return []


def config_problems(cfg: Config) -> list[str]:
    """Everything wrong with the whole configuration, the hours rules included."""
    return cfg.problems() + hours_problems(cfg.hours)


def config_errors(cfg: Config) -> list[str]:
    """The problems that stop the service (config_problems without its "note:" lines)."""
    return [p for p in config_problems(cfg) if not p.startswith("note:")]
