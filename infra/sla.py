"""Loading the SLA policy named by the settings (or the default shipped
beside this module)."""

from __future__ import annotations

from pathlib import Path

from infra.settings import Settings
from ticketing.sla.policy import PolicyError, SlaPolicy

DEFAULT_POLICY = Path(__file__).with_name("sla_policy.toml")


class BadPolicy(RuntimeError):
    pass


def load_sla_policy(settings: Settings) -> SlaPolicy:
    """The policy, or BadPolicy naming the file, the line and the reason."""
    path = settings.sla_policy or DEFAULT_POLICY
    try:
        return SlaPolicy.parse(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise BadPolicy(f"SLA policy {path}: {error.strerror or error}") from None
    except PolicyError as error:
        raise BadPolicy(f"SLA policy {path}, {error}") from None
