"""Provider quotas and the Plant.id credit budget: what providers say is left, what we spend, fleet-wide."""
