"""What the Plant.id stand-in remembers: identifications (for retrieval, deletion and feedback) and credits per key."""

import secrets
import string
import threading
from collections import Counter, OrderedDict

from apps.plant_identification.sandbox.plant_id_answers import PROCESSING_SECONDS, StoredIdentification

OUT_OF_CREDITS = "The specified api key does not have sufficient number of available credits."
UNKNOWN_KEY = "The specified api key not found."
INACTIVE_KEY = "The specified api key is not active."
# With no key list every key is known, except these test triggers (Plant.id's 401 sentences on every route).
UNKNOWN_KEY_PREFIX = "unknown-"
INACTIVE_KEY_PREFIX = "inactive-"
TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 15
CAPACITY = 10_000  # the oldest identifications are forgotten first, so a long load run stays bounded


def new_access_token() -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


class PlantIdStore:
    """Identifications by access token (and custom_id), and the credits each API key has used; thread-safe."""

    def __init__(self, credits: int, capacity: int = CAPACITY, keys: frozenset[str] | None = None) -> None:
        self.credits = credits
        self.capacity = capacity
        self.keys = keys  # the known API keys; None: every key but the UNKNOWN_/INACTIVE_KEY_PREFIX triggers
        self._lock = threading.Lock()
        self._identifications: OrderedDict[str, StoredIdentification] = OrderedDict()
        self._by_custom_id: dict[int, str] = {}
        self._used: Counter = Counter()

    def key_refusal(self, api_key: str) -> str | None:
        """Plant.id's 401 sentence for a key it does not accept, None for a known, active key."""
        if api_key.startswith(INACTIVE_KEY_PREFIX):
            return INACTIVE_KEY
        if self.keys is None:
            return UNKNOWN_KEY if api_key.startswith(UNKNOWN_KEY_PREFIX) else None
        return None if api_key in self.keys else UNKNOWN_KEY

    def add(self, record: StoredIdentification) -> None:
        with self._lock:
            self._identifications[record.access_token] = record
            if record.request.custom_id is not None:
                self._by_custom_id[record.request.custom_id] = record.access_token  # the latest one wins
            while len(self._identifications) > self.capacity:
                _, oldest = self._identifications.popitem(last=False)
                self._forget_custom_id(oldest)

    def retrieve(self, key: str, now: float) -> StoredIdentification | None:
        """The identification with this access token or custom_id; one asked for asynchronously has finished
        by the time it is retrieved."""
        with self._lock:
            record = self._find(key)
            if record is not None and record.completed is None:
                record.completed = max(now, record.created + PROCESSING_SECONDS)
            return record

    def add_feedback(self, key: str, feedback: dict) -> bool:
        with self._lock:
            record = self._find(key)
            if record is not None:
                record.feedback = {**(record.feedback or {}), **feedback}
            return record is not None

    def delete(self, key: str) -> bool:
        with self._lock:
            record = self._find(key)
            if record is None:
                return False
            del self._identifications[record.access_token]
            self._forget_custom_id(record)
            return True

    def charge(self, api_key: str, cost: int) -> bool:
        """Take ``cost`` credits from the key; False (nothing taken) when it has fewer left."""
        with self._lock:
            if self._used[api_key] + cost > self.credits:
                return False
            self._used[api_key] += cost
            return True

    def usage(self, api_key: str) -> dict:
        """The ``usage_info`` body for the key (the sandbox sets only a total limit)."""
        with self._lock:
            used = self._used[api_key]
        remaining = max(self.credits - used, 0)
        periods = ("day", "week", "month")
        return {
            "active": True,
            "credit_limits": {**dict.fromkeys(periods), "total": self.credits},
            "used": {**dict.fromkeys(periods, used), "total": used},
            "can_use_credits": {"value": remaining > 0, "reason": None if remaining > 0 else OUT_OF_CREDITS},
            "remaining": {**dict.fromkeys(periods), "total": remaining},
        }

    def reset_credits(self) -> None:
        with self._lock:
            self._used.clear()

    def _find(self, key: str) -> StoredIdentification | None:
        record = self._identifications.get(key)
        if record is None and key.isdigit():
            token = self._by_custom_id.get(int(key))
            record = self._identifications.get(token) if token else None
        return record

    def _forget_custom_id(self, record: StoredIdentification) -> None:
        custom_id = record.request.custom_id
        if custom_id is not None and self._by_custom_id.get(custom_id) == record.access_token:
            del self._by_custom_id[custom_id]
