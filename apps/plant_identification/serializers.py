"""Request validation, and every response body: identifications, the 503, circuits, overrides and health."""

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import APIException

from apps.plant_identification.circuits.overrides import OVERRIDE_MAX_SECONDS
from apps.plant_identification.circuits.snapshots import CircuitSnapshot
from apps.plant_identification.circuits.states import CircuitState
from apps.plant_identification.images import ImageRejectedError, image_load
from apps.plant_identification.models import Identification
from apps.plant_identification.providers import Provider
from apps.plant_identification.selectors import FAIL, PASS, HealthReport, Readiness
from apps.plant_identification.types import IdentifyRequest, Organ, ProviderStatus

# Pl@ntNet accepts these only alongside a primary organ (it answers 400 to habit or other alone).
SECONDARY_ORGANS = {Organ.HABIT.value, Organ.OTHER.value}


class PayloadTooLargeError(APIException):
    """An upload over a configured size limit (413); not a ValidationError, so it is never folded into a 400."""

    status_code = 413
    default_detail = "The upload is too large."
    default_code = "payload_too_large"


class IdentifyInputSerializer(serializers.Serializer):
    """Validates a multipart identify request into an ``IdentifyRequest``; no provider is called here."""

    images = serializers.ListField(child=serializers.FileField(allow_empty_file=True), allow_empty=False)
    organs = serializers.ListField(child=serializers.ChoiceField(choices=[o.value for o in Organ]), required=False)
    include_diseases = serializers.BooleanField(required=False, default=True)
    latitude = serializers.FloatField(required=False, min_value=-90, max_value=90, allow_null=True, default=None)
    longitude = serializers.FloatField(required=False, min_value=-180, max_value=180, allow_null=True, default=None)

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


@extend_schema_field(serializers.DictField(child=ProviderEntrySerializer()))
class ProvidersField(serializers.Field):
    """The ``providers`` block: one entry per provider, from provider outcomes or stored provider results."""

    def __init__(self, **kwargs) -> None:
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, parts) -> dict[str, dict]:
        # Plain dicts, not a serializer per entry: this runs on every answer, and the entries are three scalars.
        by_provider = {str(part.provider): part for part in parts}
        body = {}
        for provider in Provider:
            part = by_provider.get(provider.value)
            body[provider.value] = {
                "status": str(part.status) if part else ProviderStatus.NOT_CONFIGURED.value,
                "latency_ms": part.latency_ms if part else None,
                "cached": bool(part.cached) if part else False,
            }
        return body


class IdentificationOutputSerializer(serializers.ModelSerializer):
    """The identify response body, the same when the identification is read back later."""

    providers = ProvidersField(source="results")

    class Meta:
        model = Identification
        fields = ["id", "created_at", "degraded", "message", "is_plant", "suggestions", "health", "providers"]


class UnavailableOutputSerializer(serializers.Serializer):
    """The 503 body when no provider could answer: why, and each provider's outcome."""

    detail = serializers.CharField(source="message")
    providers = ProvidersField(source="outcomes")


class CircuitSerializer(serializers.Serializer):
    """One circuit breaker as it stands now."""

    state = serializers.ChoiceField(choices=[s.value for s in CircuitState])
    fail_count = serializers.IntegerField()
    fail_max = serializers.IntegerField()
    reset_timeout = serializers.SerializerMethodField()
    retry_after = serializers.IntegerField(allow_null=True, help_text="seconds until a trial call is allowed")
    reason = serializers.SerializerMethodField()

    def get_reset_timeout(self, snapshot: CircuitSnapshot) -> float:
        seconds = snapshot.reset_timeout
        return int(seconds) if float(seconds).is_integer() else seconds

    def get_reason(self, snapshot: CircuitSnapshot) -> str | None:
        return snapshot.reason or None


@extend_schema_field(serializers.DictField(child=CircuitSerializer()))
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

    provider = serializers.CharField(source="override.circuit_id")
    action = serializers.CharField(source="override.action")
    state_before = serializers.CharField(source="override.state_before")
    state_after = serializers.CharField(source="override.state_after")
    expires_at = serializers.DateTimeField(source="override.expires_at", allow_null=True)
    circuit = CircuitSerializer()


class LiveOutputSerializer(serializers.Serializer):
    """The /health/live/ body: the process answers."""

    status = serializers.CharField()


def _checks(checks: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name: {"status": status} for name, status in checks.items()}


class ReadinessOutputSerializer(serializers.Serializer):
    """The /health/ready/ body: pass or fail, and each dependency."""

    status = serializers.SerializerMethodField()
    checks = serializers.SerializerMethodField()

    def get_status(self, readiness: Readiness) -> str:
        return PASS if readiness.ready else FAIL

    def get_checks(self, readiness: Readiness) -> dict[str, dict[str, str]]:
        return _checks(readiness.checks)


class HealthOutputSerializer(serializers.Serializer):
    """The /health/ body: overall status, whether each provider can be called, circuits and dependencies."""

    status = serializers.CharField()
    sandbox = serializers.BooleanField()
    circuit_breakers = CircuitsField(source="circuits")
    checks = serializers.SerializerMethodField()

    def get_checks(self, report: HealthReport) -> dict[str, dict[str, str]]:
        return _checks(report.checks)

    def to_representation(self, report: HealthReport) -> dict:
        body = super().to_representation(report)
        available = {f"{provider.value}_available": value for provider, value in report.available.items()}
        return {"status": body["status"], "sandbox": body["sandbox"], **available, **body}


class CircuitOverrideInputSerializer(serializers.Serializer):
    """A staff request to force a circuit: why, and optionally for how long."""

    reason = serializers.CharField(max_length=500, allow_blank=False, trim_whitespace=True)
    expires_in = serializers.FloatField(
        required=False,
        min_value=1,
        max_value=OVERRIDE_MAX_SECONDS,
        allow_null=True,
        default=None,
        help_text=f"seconds until the override lapses, at most {OVERRIDE_MAX_SECONDS} (30 days); omit for no expiry",
    )
