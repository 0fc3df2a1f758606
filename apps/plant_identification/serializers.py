"""Request validation, and every response body: identifications, the 503, circuits, overrides and health."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import APIException

from apps.plant_identification.circuits.latency import FLEET, WORKER
from apps.plant_identification.circuits.overrides import OVERRIDE_MAX_SECONDS
from apps.plant_identification.circuits.snapshots import CircuitSnapshot
from apps.plant_identification.circuits.states import CircuitState, OpenReason
from apps.plant_identification.images import ImageRejectedError, image_load
from apps.plant_identification.models import CircuitOverride, Identification
from apps.plant_identification.providers import Provider
from apps.plant_identification.quotas.report import QuotaReport, iso
from apps.plant_identification.selectors import FAIL, NOT_CONFIGURED, PASS, HealthReport, Readiness
from apps.plant_identification.types import IdentifyRequest, Organ, ProviderStatus

# Choice lists named once in the schema (SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]).
PROVIDER_CHOICES = [p.value for p in Provider]
CIRCUIT_STATE_CHOICES = [s.value for s in CircuitState]

# Pl@ntNet accepts these only alongside a primary organ (it answers 400 to habit or other alone).
SECONDARY_ORGANS = {Organ.HABIT.value, Organ.OTHER.value}


class PayloadTooLargeError(APIException):
    """An upload over a configured size limit (413); not a ValidationError, so it is never folded into a 400."""

    status_code = 413
    default_detail = "The upload is too large."
    default_code = "payload_too_large"


class ErrorOutputSerializer(serializers.Serializer):
    """The body of every 4xx (schema only): a human-readable ``detail``; a 400 adds the field errors."""

    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        help_text="400 only: the messages by field (a list of strings, or nested by field for list items)",
    )


class IdentifyInputSerializer(serializers.Serializer):
    """Validates a multipart identify request into an ``IdentifyRequest``; no provider is called here."""

    images = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),
        allow_empty=False,
        help_text="1 to 5 photos of the same plant: JPEG, PNG, WebP or HEIC/HEIF (``image`` is an alias)",
    )
    organs = serializers.ListField(child=serializers.ChoiceField(choices=[o.value for o in Organ]), required=False)
    include_diseases = serializers.BooleanField(required=False, default=True)
    # Not nullable: a multipart form cannot send a null, and ``from_request`` drops empty values.
    latitude = serializers.FloatField(required=False, min_value=-90, max_value=90, default=None)
    longitude = serializers.FloatField(required=False, min_value=-180, max_value=180, default=None)

    @classmethod
    def from_request(cls, request) -> "IdentifyInputSerializer":
        """Read ``images`` (or its alias ``image``) and repeated or comma-separated ``organs``."""
        data = {
            key: request.data.get(key)
            for key in ("include_diseases", "latitude", "longitude")
            if request.data.get(key) not in (None, "")
        }
        data["images"] = request.FILES.getlist("images") or request.FILES.getlist("image")  # "image": alias
        raw_organs = request.data.getlist("organs") if hasattr(request.data, "getlist") else []
        organs = [part.strip() for value in raw_organs for part in str(value).split(",")]
        if any(organs):
            data["organs"] = organs
        return cls(data=data)

    def validate_images(self, uploads):
        limit = settings.IDENTIFY_MAX_IMAGES
        if len(uploads) > limit:
            raise serializers.ValidationError(f"Send at most {limit} images of the same plant.")
        total = sum(upload.size or 0 for upload in uploads)
        if total > settings.IDENTIFY_MAX_REQUEST_BYTES:
            raise PayloadTooLargeError(f"The upload is larger than {settings.IDENTIFY_MAX_REQUEST_BYTES} bytes.")
        loaded = []
        for upload in uploads:
            try:
                loaded.append(image_load(upload))
            except ImageRejectedError as exc:
                if exc.too_large:
                    raise PayloadTooLargeError(str(exc)) from exc
                raise serializers.ValidationError(str(exc)) from exc
        return loaded

    def validate(self, attrs):
        organs = attrs.get("organs") or [Organ.AUTO.value] * len(attrs["images"])
        if len(organs) != len(attrs["images"]):
            raise serializers.ValidationError({"organs": "Give one organ per image, in the same order."})
        if set(organs) <= SECONDARY_ORGANS:
            raise serializers.ValidationError(
                {"organs": "habit and other need at least one leaf, flower, fruit, bark or auto image."}
            )
        if (attrs.get("latitude") is None) != (attrs.get("longitude") is None):
            raise serializers.ValidationError({"latitude": "Send latitude and longitude together."})
        attrs["organs"] = organs
        return attrs

    def to_identify_request(self) -> IdentifyRequest:
        """The validated request, ready for the providers."""
        data = self.validated_data
        return IdentifyRequest(
            images=tuple(data["images"]),
            organs=tuple(Organ(o) for o in data["organs"]),
            include_diseases=data["include_diseases"],
            latitude=data.get("latitude"),
            longitude=data.get("longitude"),
        )


class ProviderEntrySerializer(serializers.Serializer):
    """How one provider took part: its status, how long it took, whether its answer came from the cache (the
    schema of a ``providers`` entry; ``ProvidersField`` writes the same keys)."""

    status = serializers.ChoiceField(choices=[s.value for s in ProviderStatus])
    latency_ms = serializers.IntegerField(allow_null=True)
    cached = serializers.BooleanField()
    stale = serializers.BooleanField(
        required=False,
        help_text="present (true) when its answer came from the cache past the TTL because the provider could not "
        "answer (status says why)",
    )
    age_s = serializers.IntegerField(
        required=False, min_value=0, help_text="present with ``stale``: the age of that answer, in seconds"
    )


class ProvidersSerializer(serializers.Serializer):
    """Schema of the ``providers`` block: one entry for every provider, configured or not."""

    def get_fields(self):
        return {provider.value: ProviderEntrySerializer() for provider in Provider}


@extend_schema_field(ProvidersSerializer())
class ProvidersField(serializers.Field):
    """The ``providers`` block: one entry per provider, from provider outcomes or stored provider results."""

    def __init__(self, **kwargs) -> None:
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, parts) -> dict[str, dict]:
        # Plain dicts, not a serializer per entry: this runs on every answer, and the entries are a few scalars.
        by_provider = {str(part.provider): part for part in parts}
        body = {}
        for provider in Provider:
            part = by_provider.get(provider.value)
            entry = body[provider.value] = {
                "status": str(part.status) if part else ProviderStatus.NOT_CONFIGURED.value,
                "latency_ms": part.latency_ms if part else None,
                "cached": bool(part.cached) if part else False,
            }
            if part and part.stale:
                entry["stale"] = True
                entry["age_s"] = part.age_s or 0
        return body


class ProbabilitySerializer(serializers.Serializer):
    """A Plant.id yes/no answer with its probability (``is_plant``, ``is_healthy``)."""

    probability = serializers.FloatField(allow_null=True)
    binary = serializers.BooleanField(allow_null=True)


class SuggestionSerializer(serializers.Serializer):
    """Schema of one merged suggestion (``MergedSuggestion.as_dict``)."""

    scientific_name = serializers.CharField()
    common_names = serializers.ListField(child=serializers.CharField())
    family = serializers.CharField(allow_null=True)
    genus = serializers.CharField(allow_null=True)
    confidence = serializers.FloatField(min_value=0, max_value=1)
    sources = serializers.ListField(child=serializers.ChoiceField(choices=PROVIDER_CHOICES))
    scores = serializers.DictField(child=serializers.FloatField(), help_text="each provider's own score")
    details = serializers.DictField(child=serializers.JSONField(), help_text="provider details (free-form)")


class DiseaseSerializer(serializers.Serializer):
    """Schema of one Plant.id disease suggestion (documented keys; Plant.id's detail keys may follow)."""

    id = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    probability = serializers.FloatField()


class HealthAssessmentSerializer(serializers.Serializer):
    """Schema of the Plant.id health assessment."""

    is_healthy = ProbabilitySerializer(allow_null=True)
    diseases = DiseaseSerializer(many=True)
    question = serializers.DictField(child=serializers.JSONField(), allow_null=True)


@extend_schema_field(ProbabilitySerializer(allow_null=True))
class IsPlantField(serializers.JSONField):
    """``is_plant`` as stored."""


@extend_schema_field(SuggestionSerializer(many=True))
class SuggestionsField(serializers.JSONField):
    """``suggestions`` as stored."""


@extend_schema_field(HealthAssessmentSerializer(allow_null=True))
class HealthAssessmentField(serializers.JSONField):
    """``health`` as stored."""


class IdentificationOutputSerializer(serializers.ModelSerializer):
    """The identify response body, the same when the identification is read back later."""

    is_plant = IsPlantField(read_only=True)
    suggestions = SuggestionsField(read_only=True)
    health = HealthAssessmentField(read_only=True)
    providers = ProvidersField(source="results")
    complete = serializers.BooleanField(
        read_only=True, help_text="false while a provider's late answer is still to be merged in (see pending)"
    )
    pending = serializers.SerializerMethodField(help_text="the providers still answering; read again for them")

    class Meta:
        model = Identification
        fields = [
            "id",
            "created_at",
            "complete",
            "pending",
            "degraded",
            "message",
            "is_plant",
            "suggestions",
            "health",
            "providers",
        ]

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=PROVIDER_CHOICES)))
    def get_pending(self, identification) -> list[str]:
        return [r.provider for r in identification.results if r.status == ProviderStatus.PENDING]


class UnavailableOutputSerializer(serializers.Serializer):
    """The 503 body when no provider could answer: why, and each provider's outcome."""

    detail = serializers.CharField(source="message")
    providers = ProvidersField(source="outcomes")


class RecentLatencySerializer(serializers.Serializer):
    """The durations of a provider's latest successful calls (the latest 100 at most)."""

    p50_ms = serializers.IntegerField(allow_null=True, help_text="median, whole milliseconds; null without samples")
    p95_ms = serializers.IntegerField(allow_null=True, help_text="95th percentile, whole milliseconds")
    samples = serializers.IntegerField(help_text="successful calls measured")
    scope = serializers.ChoiceField(
        choices=[FLEET, WORKER],
        help_text="fleet: every worker's calls (Redis); worker: this process's own (Redis unset or unreachable)",
    )


class CircuitSerializer(serializers.Serializer):
    """One circuit breaker as it stands now."""

    state = serializers.ChoiceField(choices=CIRCUIT_STATE_CHOICES)
    fail_count = serializers.IntegerField()
    fail_max = serializers.IntegerField()
    reset_timeout = serializers.SerializerMethodField(help_text="seconds an open circuit waits before a trial call")
    retry_after = serializers.IntegerField(allow_null=True, help_text="seconds until a trial call is allowed")
    reason = serializers.SerializerMethodField(help_text="why an open circuit opened; null otherwise")
    latency = RecentLatencySerializer(help_text="successful upstream calls only: no cache hits, no rejected calls")

    @extend_schema_field(OpenApiTypes.NUMBER)
    def get_reset_timeout(self, snapshot: CircuitSnapshot) -> float:
        seconds = snapshot.reset_timeout
        return int(seconds) if float(seconds).is_integer() else seconds

    @extend_schema_field(serializers.ChoiceField(choices=[reason.value for reason in OpenReason], allow_null=True))
    def get_reason(self, snapshot: CircuitSnapshot) -> str | None:
        return snapshot.reason or None


class CircuitsSerializer(serializers.Serializer):
    """Schema of every circuit, keyed by provider."""

    def get_fields(self):
        return {provider.value: CircuitSerializer() for provider in Provider}


@extend_schema_field(CircuitsSerializer())
class CircuitsField(serializers.Field):
    """Every circuit, keyed by provider."""

    def __init__(self, **kwargs) -> None:
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, snapshots) -> dict[str, dict]:
        return {snapshot.provider.value: CircuitSerializer(snapshot).data for snapshot in snapshots}


class CircuitListOutputSerializer(serializers.Serializer):
    """Every circuit, keyed by provider (a serializer, so the schema names each provider's entry)."""

    def get_fields(self):
        return {provider.value: CircuitSerializer() for provider in Provider}

    def to_representation(self, snapshots) -> dict[str, dict]:
        return CircuitsField().to_representation(snapshots)


class CircuitOverrideOutputSerializer(serializers.Serializer):
    """What a staff override did, and the circuit after it."""

    provider = serializers.ChoiceField(choices=PROVIDER_CHOICES, source="override.circuit_id")
    action = serializers.ChoiceField(choices=CircuitOverride.Action.values, source="override.action")
    state_before = serializers.ChoiceField(choices=CIRCUIT_STATE_CHOICES, source="override.state_before")
    state_after = serializers.ChoiceField(choices=CIRCUIT_STATE_CHOICES, source="override.state_after")
    expires_at = serializers.DateTimeField(source="override.expires_at", allow_null=True)
    circuit = CircuitSerializer()


class LiveOutputSerializer(serializers.Serializer):
    """The /health/live/ body: the process answers."""

    status = serializers.ChoiceField(choices=[PASS])


def _checks(checks: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name: {"status": status} for name, status in checks.items()}


class CheckSerializer(serializers.Serializer):
    """Schema of one dependency check."""

    status = serializers.ChoiceField(choices=[PASS, FAIL, NOT_CONFIGURED])


CHECKS_SCHEMA = serializers.DictField(child=CheckSerializer(), help_text="each dependency, by name")


class ReadinessOutputSerializer(serializers.Serializer):
    """The /health/ready/ body: pass or fail, and each dependency."""

    status = serializers.SerializerMethodField()
    checks = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ChoiceField(choices=[PASS, FAIL]))
    def get_status(self, readiness: Readiness) -> str:
        return PASS if readiness.ready else FAIL

    @extend_schema_field(CHECKS_SCHEMA)
    def get_checks(self, readiness: Readiness) -> dict[str, dict[str, str]]:
        return _checks(readiness.checks)


class CreditBudgetSerializer(serializers.Serializer):
    """Today's Plant.id credit budget (UTC day), fleet-wide."""

    budget = serializers.IntegerField(allow_null=True, help_text="PLANT_ID_DAILY_CREDIT_BUDGET; null: no cap")
    spent_today = serializers.IntegerField(
        source="spent", help_text="credits spent today (reserved by calls in flight included)"
    )
    remaining = serializers.IntegerField(allow_null=True, help_text="credits the budget leaves today; null: no cap")
    exhausted = serializers.BooleanField(help_text="true: Plant.id is not called until resets_at")
    resets_at = serializers.SerializerMethodField(help_text="the next 00:00 UTC")

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_resets_at(self, budget) -> str:
        return iso(budget.reset_at)


class CreditUsageSerializer(serializers.Serializer):
    """Plant.id's own ``usage_info``: credits per period (day, week, month, total; null: no limit)."""

    active = serializers.BooleanField(allow_null=True)
    can_use = serializers.BooleanField(allow_null=True)
    reason = serializers.CharField(allow_null=True, help_text="why credits cannot be used, as Plant.id says")
    limits = serializers.DictField(child=serializers.IntegerField(allow_null=True))
    used = serializers.DictField(child=serializers.IntegerField(allow_null=True))
    remaining = serializers.DictField(child=serializers.IntegerField(allow_null=True))


class QuotaSerializer(serializers.Serializer):
    """What a provider last said of its quota (null where it said nothing), and Plant.id's credit budget."""

    remaining = serializers.IntegerField(
        allow_null=True, help_text="Pl@ntNet: identifications left today; Plant.id: credits left (usage_info)"
    )
    limit = serializers.IntegerField(allow_null=True, help_text="the quota those are counted against")
    reset_at = serializers.SerializerMethodField(help_text="when the provider said its quota comes back")
    observed_at = serializers.SerializerMethodField(help_text="when the provider said so")
    source = serializers.ChoiceField(
        choices=["response", "usage_info"],
        allow_null=True,
        help_text="response: Pl@ntNet's body and RateLimit headers; usage_info: Plant.id's polled usage",
    )
    exhausted = serializers.BooleanField(help_text="nothing left until the reset (provider or budget)")
    credits = CreditUsageSerializer(allow_null=True, help_text="Plant.id only")
    budget = CreditBudgetSerializer(allow_null=True, help_text="Plant.id only")

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_reset_at(self, report: QuotaReport) -> str | None:
        return iso(report.reset_at)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_observed_at(self, report: QuotaReport) -> str | None:
        return iso(report.observed_at)


class QuotasSerializer(serializers.Serializer):
    """Schema of every provider's quota, keyed by provider."""

    def get_fields(self):
        return {provider.value: QuotaSerializer() for provider in Provider}


@extend_schema_field(QuotasSerializer())
class QuotasField(serializers.Field):
    """Every provider's quota, keyed by provider."""

    def __init__(self, **kwargs) -> None:
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, reports) -> dict[str, dict]:
        return {provider.value: QuotaSerializer(report).data for provider, report in reports.items()}


class HealthOutputSerializer(serializers.Serializer):
    """The /health/ body: overall status, whether each provider can be called, circuits and dependencies."""

    status = serializers.ChoiceField(choices=["healthy", "degraded", "unhealthy"])
    sandbox = serializers.BooleanField()
    circuit_breakers = CircuitsField(source="circuits")
    checks = serializers.SerializerMethodField()
    quota = QuotasField(source="quotas", help_text="each provider's quota and Plant.id's daily credit budget")

    def get_fields(self):
        fields = super().get_fields()
        available = {
            f"{provider.value}_available": ProviderAvailableField(
                provider, help_text="whether this provider can be called now"
            )
            for provider in Provider
        }
        return {"status": fields.pop("status"), "sandbox": fields.pop("sandbox"), **available, **fields}

    @extend_schema_field(CHECKS_SCHEMA)
    def get_checks(self, report: HealthReport) -> dict[str, dict[str, str]]:
        return _checks(report.checks)


@extend_schema_field(OpenApiTypes.BOOL)
class ProviderAvailableField(serializers.Field):
    """``<provider>_available`` in /health/: whether that provider can be called now."""

    def __init__(self, provider: Provider, **kwargs) -> None:
        self.provider = provider
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, report: HealthReport) -> bool:
        return report.available[self.provider]


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would turn a JSON ``0`` or ``true`` into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class CircuitOverrideInputSerializer(serializers.Serializer):
    """A staff request to force a circuit: why, and optionally for how long."""

    reason = StrictCharField(max_length=500, allow_blank=False, trim_whitespace=True)
    expires_in = serializers.FloatField(
        required=False,
        min_value=1,
        max_value=OVERRIDE_MAX_SECONDS,
        allow_null=True,
        default=None,
        help_text=f"seconds until the override lapses, at most {OVERRIDE_MAX_SECONDS} (30 days); omit for no expiry",
    )


class CircuitOverrideFormSerializer(CircuitOverrideInputSerializer):
    """Schema of the same request as a form (schema only): a form cannot send a null ``expires_in``."""

    expires_in = serializers.FloatField(
        required=False,
        min_value=1,
        max_value=OVERRIDE_MAX_SECONDS,
        help_text=f"seconds until the override lapses, at most {OVERRIDE_MAX_SECONDS} (30 days); omit for no expiry",
    )


class IdentifyFieldsInputSerializer(IdentifyInputSerializer):
    """The identify request with its uploads left undecoded: what an ``Idempotency-Key`` fingerprint is made of
    (the fields validated as identify validates them), so a replay costs no image decoding."""

    def validate_images(self, uploads):
        return uploads
