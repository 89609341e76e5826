"""Loading the operations teams' files named by the settings (or the
defaults shipped beside this module): the SLA policy and the
dangerous-customer rules, the staff assessment rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from infra.settings import Settings
from ticketing.assessment import AssessmentRules
from ticketing.config import ConfigError
from ticketing.danger import Rules
from ticketing.sla.policy import SlaPolicy

DEFAULT_POLICY = Path(__file__).with_name("sla_policy.toml")
DEFAULT_DANGER_RULES = Path(__file__).with_name("danger_rules.toml")
DEFAULT_ASSESSMENT_RULES = Path(__file__).with_name("assessment_rules.toml")

Parsed = TypeVar("Parsed")


class BadPolicy(RuntimeError):
    """A file that cannot be used, with its path, line and reason."""


def _load(path: Path, parse: Callable[[str], Parsed], what: str) -> Parsed:
    try:
        return parse(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise BadPolicy(f"{what} {path}: {error.strerror or error}") from None
    except ConfigError as error:
        raise BadPolicy(f"{what} {path}, {error}") from None


def load_sla_policy(settings: Settings) -> SlaPolicy:
    """The SLA policy, or BadPolicy naming the file, the line and the reason."""
    return _load(settings.sla_policy or DEFAULT_POLICY, SlaPolicy.parse, "SLA policy")


def load_danger_rules(settings: Settings) -> Rules:
    """The dangerous-customer rules, or BadPolicy naming the file, the line and the reason."""
    return _load(settings.danger_rules or DEFAULT_DANGER_RULES, Rules.parse, "dangerous-customer rules")


def load_assessment_rules(settings: Settings) -> AssessmentRules:
    """The staff assessment rules, or BadPolicy naming the file, the line and the reason."""
    return _load(settings.assessment_rules or DEFAULT_ASSESSMENT_RULES, AssessmentRules.parse,
                 "staff assessment rules")
