"""Command-line fault options for the sandbox: ``--latency plant_id=500`` and ``--fault plantnet:502=0.1``."""


def latency_option(text: str) -> dict:
    """``plant_id=500``, ``plantnet=uniform:200:400`` or ``plant_id=normal:600:100`` (milliseconds)."""
    provider, _, spec = text.partition("=")
    kind, *values = spec.split(":") if ":" in spec else ("fixed", spec)
    numbers = [float(value) for value in values]
    latency = {"fixed": numbers[0]} if kind == "fixed" else {kind: numbers}
    return {provider: {"latency": latency}}


def fault_option(text: str) -> dict:
    """``plantnet:502=0.1``: one in ten Pl@ntNet calls answers 502."""
    target, _, rate = text.partition("=")
    provider, _, kind = target.partition(":")
    return {provider: {"rates": {kind: float(rate)}}}


def merge_options(*groups: list[dict]) -> dict:
    """Fold parsed options into one fault-plan update."""
    merged: dict = {}
    for group in groups:
        for option in group:
            for provider, fields in option.items():
                target = merged.setdefault(provider, {})
                for name, value in fields.items():
                    target[name] = {**target.get(name, {}), **value} if name == "rates" else value
    return merged
