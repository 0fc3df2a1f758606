"""UTC period boundaries (quotas and credits reset on them): seconds to the end of the day, week or month."""

from datetime import UTC, datetime, timedelta


def seconds_until_period_end(period: str, now: datetime | None = None) -> float:
    """Seconds from ``now`` to the end of the current UTC ``day``, ``week`` (Monday 00:00) or ``month``."""
    now = now or datetime.now(UTC)
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        end = start_of_day + timedelta(days=1)
    elif period == "week":
        end = start_of_day + timedelta(days=7 - now.weekday())
    elif period == "month":
        end = (start_of_day.replace(day=1) + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(period)
    return (end - now).total_seconds()


def seconds_to_utc_midnight(now: float) -> float:
    """Seconds from ``now`` (epoch seconds) to the next 00:00 UTC."""
    return seconds_until_period_end("day", datetime.fromtimestamp(now, UTC))
