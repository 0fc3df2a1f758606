"""Each provider's quota as /health/, the admin and /metrics show it: what it said is left, and our budget."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from apps.plant_identification.providers import Provider
from apps.plant_identification.quotas.credits import BudgetState, budget_state
from apps.plant_identification.quotas.observed import quota_observed


@dataclass(frozen=True)
class QuotaReport:
    """One provider's quota: the provider's last word on it (None where it said nothing) and, for Plant.id,
    today's credit budget."""

    provider: Provider
    remaining: int | None = None
    limit: int | None = None
    reset_at: float | None = None  # epoch seconds
    observed_at: float | None = None
    source: str | None = None  # "response" (Pl@ntNet body and headers) or "usage_info" (Plant.id's poll)
    credits: dict | None = None  # Plant.id's usage_info: limits, used, remaining per period, can_use, reason
    budget: BudgetState | None = None

    @property
    def exhausted(self) -> bool:
        """True when the provider said nothing is left and the reset has not come yet, or the budget is spent."""
        now = time.time()
        said_none = self.remaining == 0 and (self.reset_at is None or self.reset_at > now)
        return said_none or bool(self.budget and self.budget.exhausted)


def iso(moment: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC, None for None."""
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def quota_report(provider: Provider, now: float | None = None) -> QuotaReport:
    """What is known of ``provider``'s quota now (reads the shared cache; calls no provider)."""
    now = time.time() if now is None else now
    seen = quota_observed(provider) or {}
    return QuotaReport(
        provider=provider,
        remaining=seen.get("remaining"),
        limit=seen.get("limit"),
        reset_at=seen.get("reset_at"),
        observed_at=seen.get("observed_at"),
        source=seen.get("source"),
        credits=seen.get("credits"),
        budget=budget_state(now) if provider == Provider.PLANT_ID else None,
    )


def quota_reports(now: float | None = None) -> dict[Provider, QuotaReport]:
    """Every provider's quota report."""
    return {provider: quota_report(provider, now) for provider in Provider}
