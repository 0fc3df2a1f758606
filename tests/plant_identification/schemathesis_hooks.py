"""Schemathesis hooks for test_api_fuzz.py: identify's images (encoded as ``image/jpeg`` and the like in the
schema) are generated as a real photo, so identify can answer 200 and the stateful phase follows its link to
the identification read (random bytes are never a photo; negative cases still get anything)."""

import schemathesis
from hypothesis import strategies as st

from bench.load import photo

# The photo test_api_fuzz.py identifies first: its answers are cached, so it is answered even after the fuzzing
# of circuit overrides has forced both circuits open.
PHOTO = photo(1)

# Drawn for the whole ``images`` array (one file part per item), as the encoding is declared on that property.
schemathesis.openapi.media_type("image/jpeg", st.just([PHOTO]))
