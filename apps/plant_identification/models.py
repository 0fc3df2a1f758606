"""Persisted records: identifications, each provider's part in them, circuits and their history."""

import uuid

from django.conf import settings
from django.db import models
from django.utils.functional import cached_property

from apps.plant_identification.providers import Provider
from apps.plant_identification.types import ProviderStatus

PROVIDER_CHOICES = [(p.value, p.value) for p in Provider]


class Identification(models.Model):
    """One answered identification request and the merged answer we gave."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="plant_identifications",
    )
    image_count = models.PositiveSmallIntegerField()
    image_hashes = models.JSONField(default=list, help_text="sha256 of each image forwarded")
    organs = models.JSONField(default=list)
    include_diseases = models.BooleanField(default=True)
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    degraded = models.BooleanField(default=False, db_index=True)
    message = models.TextField(null=True, blank=True)  # noqa: DJ001 - null is the API's "no message"
    is_plant = models.JSONField(null=True, blank=True)
    suggestions = models.JSONField(default=list)
    health = models.JSONField(null=True, blank=True)
    top_scientific_name = models.CharField(max_length=255, blank=True, db_index=True)
    scientific_names = models.TextField(blank=True, help_text="every suggested name, for search")
    complete = models.BooleanField(
        default=True, db_index=True, help_text="every provider's part is final (none pending a late answer)"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.top_scientific_name or 'no match'} ({self.created_at:%Y-%m-%d %H:%M})"

    @cached_property
    def results(self) -> list["ProviderResult"]:
        """Each provider's part, read once (from a prefetch when there is one). The identify service sets it to
        the rows it has just written, so answering costs no query to read them back."""
        return list(self.provider_results.all())


class ProviderResult(models.Model):
    """How one provider took part in one identification, with its raw payload (never a secret)."""

    identification = models.ForeignKey(Identification, on_delete=models.CASCADE, related_name="provider_results")
    provider = models.CharField(max_length=32, choices=PROVIDER_CHOICES)
    status = models.CharField(max_length=32, choices=[(s.value, s.value) for s in ProviderStatus], db_index=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    cached = models.BooleanField(default=False)
    stale = models.BooleanField(
        default=False, help_text="answered from the cache past its TTL because the provider could not answer"
    )
    age_s = models.PositiveIntegerField(null=True, blank=True, help_text="age of a cached answer, in seconds")
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="requests sent to the provider (0: answered from the cache or turned away)"
    )
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_class = models.CharField(max_length=64, blank=True)
    error_detail = models.TextField(blank=True)
    raw_payload = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["provider"]
        constraints = [
            models.UniqueConstraint(fields=["identification", "provider"], name="one_result_per_provider"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}: {self.status}"


class Circuit(models.Model):
    """One provider's circuit; its live state is in the breaker storage, its history in events."""

    provider = models.CharField(max_length=32, choices=PROVIDER_CHOICES, primary_key=True)

    def __str__(self) -> str:
        return self.provider


class CircuitEvent(models.Model):
    """A circuit state transition, as seen by the worker that made it."""

    circuit = models.ForeignKey(Circuit, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(db_index=True)
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    fail_count = models.PositiveIntegerField(default=0)
    reason = models.CharField(
        max_length=16, blank=True, help_text="why it opened: failures, slow, quota, credentials, forced"
    )
    worker = models.CharField(max_length=128, blank=True, help_text="host:pid that made the transition")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.circuit_id}: {self.from_state or '?'} -> {self.to_state}"


class CircuitOverride(models.Model):
    """Audit record of a staff member forcing a circuit open or closed."""

    class Action(models.TextChoices):
        OPEN = "open", "force open"
        CLOSE = "close", "force close"

    circuit = models.ForeignKey(Circuit, on_delete=models.CASCADE, related_name="overrides")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=8, choices=Action.choices)
    reason = models.TextField()
    state_before = models.CharField(max_length=16)
    state_after = models.CharField(max_length=16)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="when the override lapses; empty: never")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.circuit_id}: {self.action} by {self.user or '?'}"


class IdempotencyKey(models.Model):
    """A caller's ``Idempotency-Key`` on identify: claimed by the first request, then the identification it made.

    A row without an identification is a claim in flight, held until ``lease_expires_at``; a failed request
    deletes its claim, so nothing stays recorded for the key.
    """

    scope = models.CharField(max_length=64, help_text="whose key: user:<id>, or anonymous (every anonymous caller)")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of the uploaded files' sha256s and the fields")
    identification = models.ForeignKey(
        Identification, null=True, blank=True, on_delete=models.CASCADE, related_name="idempotency_keys"
    )
    created_at = models.DateTimeField(db_index=True, help_text="first use; the key expires IDEMPOTENCY_KEY_TTL later")
    claim = models.UUIDField(help_text="the request holding the key while it identifies")
    lease_expires_at = models.DateTimeField(help_text="a claim in flight past this is taken over by a waiting request")

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="one_idempotency_key_per_scope")]

    def __str__(self) -> str:
        return f"{self.scope}: {self.key}"
