"""Request validation for identify and the JSON shape of an identification (CONTRACT §2)."""

from django.conf import settings
from rest_framework import serializers
from rest_framework.exceptions import APIException

from apps.plant_identification.images import ImageRejectedError, image_load
from apps.plant_identification.models import Identification
from apps.plant_identification.types import IdentifyRequest, Organ, Provider

# Pl@ntNet accepts these only alongside a primary organ (upstream_apis.md B.2).
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


class IdentificationOutputSerializer(serializers.ModelSerializer):
    """The identify response body, the same when the identification is read back later."""

    providers = serializers.SerializerMethodField()

    class Meta:
        model = Identification
        fields = ["id", "created_at", "degraded", "message", "is_plant", "suggestions", "health", "providers"]

    def get_providers(self, identification: Identification) -> dict[str, dict]:
        stored = identification.stored_results
        results = {
            result.provider: result
            for result in (stored if stored is not None else identification.provider_results.all())
        }
        body = {}
        for provider in Provider:
            result = results.get(provider.value)
            body[provider.value] = {
                "status": result.status if result else "not_configured",
                "latency_ms": result.latency_ms if result else None,
                "cached": result.cached if result else False,
            }
        return body


class CircuitOverrideInputSerializer(serializers.Serializer):
    """A staff request to force a circuit: why, and optionally for how long."""

    reason = serializers.CharField(max_length=500, allow_blank=False, trim_whitespace=True)
    expires_in = serializers.FloatField(
        required=False,
        min_value=1,
        allow_null=True,
        default=None,
        help_text="seconds until the override lapses; omit for no expiry",
    )
