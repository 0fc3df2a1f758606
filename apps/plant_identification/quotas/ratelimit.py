"""Parsing the IETF ``RateLimit`` / ``RateLimit-Policy`` headers Pl@ntNet sends (and their older draft forms)."""

import re
from collections.abc import Mapping
from dataclasses import dataclass

_PARAM = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.*-]*)\s*=\s*(.*?)\s*$")


@dataclass(frozen=True)
class RateLimit:
    """What one response's headers say of a quota; None where they are silent."""

    policy: str | None = None  # the policy's name, e.g. "dailyQuota"
    remaining: int | None = None  # r: requests left in the window
    reset_s: float | None = None  # t: seconds until the window resets
    limit: int | None = None  # q: requests per window (RateLimit-Policy)
    window_s: float | None = None  # w: the window, seconds (RateLimit-Policy)

    @property
    def known(self) -> bool:
        """True when the headers said anything at all."""
        return any(value is not None for value in (self.remaining, self.reset_s, self.limit, self.window_s))


def _items(header: str) -> list[tuple[str | None, dict[str, str]]]:
    """``"name";k=v;k=v, "other";k=v`` as (name, params) pairs; a bare ``k=v`` list is one unnamed item."""
    items = []
    for raw in header.split(","):
        parts = [part for part in raw.split(";") if part.strip()]
        if not parts:
            continue
        name, params = None, {}
        first = parts[0].strip()
        if _PARAM.match(first) and not first.startswith('"'):
            params_parts = parts
        else:
            name, params_parts = first.strip('"') or None, parts[1:]
        for part in params_parts:
            match = _PARAM.match(part)
            if match:
                params[match.group(1).lower()] = match.group(2).strip('"')
        items.append((name, params))
    return items


def _int(value: str | None) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def _merge_old_draft(items: list[tuple[str | None, dict[str, str]]]) -> list[tuple[str | None, dict[str, str]]]:
    """Draft 03-07's ``limit=, remaining=, reset=`` dictionary, split by commas into one-key items, as one item."""
    if items and all(name is None for name, _ in items):
        merged: dict[str, str] = {}
        for _, params in items:
            merged.update(params)
        return [(None, merged)]
    return items


def ratelimit_parse(headers: Mapping[str, str]) -> RateLimit:
    """The quota the ``RateLimit`` and ``RateLimit-Policy`` headers describe (also ``RateLimit-Remaining`` /
    ``-Reset`` / ``-Limit``); with several policies, the one with the fewest requests left."""
    current = _merge_old_draft(_items(headers.get("RateLimit", "") or ""))
    policies = {name: params for name, params in _items(headers.get("RateLimit-Policy", "") or "")}
    chosen_name, chosen = None, {}
    for name, params in current:
        remaining = _int(params.get("r", params.get("remaining")))
        best = _int(chosen.get("r", chosen.get("remaining")))
        if not chosen or (remaining is not None and (best is None or remaining < best)):
            chosen_name, chosen = name, params
    policy = policies.get(chosen_name) or (next(iter(policies.values())) if len(policies) == 1 else {})
    remaining = _int(chosen.get("r", chosen.get("remaining", headers.get("RateLimit-Remaining"))))
    reset = _int(chosen.get("t", chosen.get("reset", headers.get("RateLimit-Reset"))))
    limit = _int(policy.get("q", chosen.get("limit", headers.get("RateLimit-Limit"))))
    window = _int(policy.get("w"))
    name = chosen_name or (next(iter(policies)) if len(policies) == 1 else None)
    return RateLimit(
        policy=name,
        remaining=remaining,
        reset_s=float(reset) if reset is not None else None,
        limit=limit,
        window_s=float(window) if window is not None else None,
    )
