"""A local stand-in for Plant.id v3 and Pl@ntNet v2 (development and tests only): real wire formats,
deterministic answers from a small catalogue, and fault injection changed at run time."""

SANDBOX_PATH = "/sandbox/"  # every sandbox URL contains it; production settings refuse such URLs
SANDBOX_KEY = "sandbox-key"
