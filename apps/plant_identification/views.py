"""HTTP endpoints: thin views that validate, call a service or selector, and serialize."""

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiRequest, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotAuthenticated, NotFound
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.plant_identification.access import CanIdentify, IdentifyThrottle
from apps.plant_identification.circuits.breaker import breaker_for, circuit_snapshot_list
from apps.plant_identification.circuits.overrides import circuit_override
from apps.plant_identification.metrics import CONTENT_TYPE, metrics_exposition, metrics_token_valid
from apps.plant_identification.providers import Provider
from apps.plant_identification.selectors import PASS, health_report, identification_for_user, readiness
from apps.plant_identification.serializers import (
    PROVIDER_CHOICES,
    CircuitListOutputSerializer,
    CircuitOverrideFormSerializer,
    CircuitOverrideInputSerializer,
    CircuitOverrideOutputSerializer,
    ErrorOutputSerializer,
    HealthOutputSerializer,
    IdentificationOutputSerializer,
    IdentifyFieldsInputSerializer,
    IdentifyInputSerializer,
    LiveOutputSerializer,
    PayloadTooLargeError,
    ReadinessOutputSerializer,
    UnavailableOutputSerializer,
)
from apps.plant_identification.services.idempotency import (
    HEADER,
    MAX_KEY_LENGTH,
    idempotency_key_read,
    idempotency_scope,
    identification_once,
    request_fingerprint,
)
from apps.plant_identification.services.identify import plant_identify
from apps.plant_identification.services.late_answers import identification_settle
from apps.plant_identification.uploads import require_declared_length


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorOutputSerializer, description=description)


UNAUTHENTICATED = _error("Missing or invalid credentials.")
NOT_STAFF = _error("The user is not staff, or a session POST without its CSRF token.")


def _status(ok: bool) -> int:
    return status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE


ACCEPTED_IMAGE_TYPES = "image/jpeg, image/png, image/webp, image/heic, image/heif"  # images.py decodes these

IDEMPOTENCY_KEY = OpenApiParameter(
    HEADER,
    {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
    OpenApiParameter.HEADER,
    description=(
        "Optional, 1 to 255 printable ASCII characters (a UUID, say), scoped to the caller. The same key with the "
        "same images and fields within IDEMPOTENCY_KEY_TTL (24 h) replays the stored identification (same id, no "
        "provider call, header Idempotent-Replayed: true); with other content it is a 422. Concurrent requests "
        "with one key make one identification: the others wait for it."
    ),
)


@method_decorator(transaction.non_atomic_requests, name="dispatch")
class PlantIdentifyView(APIView):
    """POST photos of one plant; answer the merged identification (200) or 4xx/503."""

    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [CanIdentify]
    throttle_classes = [IdentifyThrottle]

    @extend_schema(
        request={
            "multipart/form-data": OpenApiRequest(
                IdentifyInputSerializer, encoding={"images": {"contentType": ACCEPTED_IMAGE_TYPES}}
            )
        },
        parameters=[IDEMPOTENCY_KEY],
        responses={
            200: IdentificationOutputSerializer,
            400: _error(
                "Invalid input: no image, not an image, bad organs or coordinates, a malformed Idempotency-Key "
                "(``errors`` by field)."
            ),
            401: _error("Missing or invalid credentials while anonymous identification is off."),
            403: _error("A session POST without its CSRF token."),
            411: _error("A chunked upload without a Content-Length."),
            413: _error("An image or the whole upload over its size limit."),
            415: _error("A body that is not multipart/form-data (or a url-encoded form)."),
            422: _error("This Idempotency-Key was used with other images or fields."),
            429: _error("Throttled (IDENTIFY_THROTTLE_RATE); see Retry-After."),
            503: OpenApiResponse(UnavailableOutputSerializer, description="No provider could answer; see Retry-After."),
        },
    )
    def post(self, request):
        key = idempotency_key_read(request.headers)  # a malformed key is a 400 before any of the body is read
        require_declared_length(request)  # 411 for a chunked upload, before reading any of it
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.IDENTIFY_MAX_REQUEST_BYTES:  # refuse before reading the body
            raise PayloadTooLargeError(f"The upload is larger than {settings.IDENTIFY_MAX_REQUEST_BYTES} bytes.")
        if key is None:
            return self._answer(self._identify(request))
        keyed = identification_once(
            scope=idempotency_scope(request.user),
            key=key,
            fingerprint=self._fingerprint(request),
            identify=lambda: self._identify(request),
        )
        return self._answer(keyed.identification, replayed=keyed.replayed)

    @staticmethod
    def _identify(request):
        serializer = IdentifyInputSerializer.from_request(request)
        serializer.is_valid(raise_exception=True)
        return plant_identify(request=serializer.to_identify_request(), user=request.user)

    @staticmethod
    def _fingerprint(request) -> str:
        """The parsed request's fingerprint, its uploads hashed undecoded: a replay costs no image decoding."""
        fields = IdentifyFieldsInputSerializer.from_request(request)
        if not fields.is_valid():
            IdentifyInputSerializer.from_request(request).is_valid(raise_exception=True)  # the 400 it gets keyless
            fields.is_valid(raise_exception=True)
        return request_fingerprint(**fields.validated_data)

    @staticmethod
    def _answer(identification, *, replayed: bool = False) -> Response:
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return Response(IdentificationOutputSerializer(identification).data, status=status.HTTP_200_OK, headers=headers)


class IdentificationDetailView(APIView):
    """GET a stored identification: its owner or staff; anonymous ones by whoever holds the id."""

    permission_classes = [AllowAny]

    @extend_schema(
        responses={
            200: IdentificationOutputSerializer,
            401: _error("Invalid credentials (a request without any may read anonymous identifications)."),
            404: _error("No such identification, or not the caller's."),
        }
    )
    def get(self, request, identification_id):
        identification = identification_for_user(identification_id=identification_id, user=request.user)
        if identification is None:
            raise NotFound("No such identification.")
        if identification_settle(identification):  # a part pending past its deadline was written off: read again
            identification = identification_for_user(identification_id=identification_id, user=request.user)
        return Response(IdentificationOutputSerializer(identification).data)


class CircuitListView(APIView):
    """GET every circuit breaker (staff only)."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: CircuitListOutputSerializer, 401: UNAUTHENTICATED, 403: NOT_STAFF})
    def get(self, request):
        return Response(CircuitListOutputSerializer(circuit_snapshot_list()).data)


class CircuitOverrideView(APIView):
    """POST to force one circuit open or closed for every worker (staff only; ``reason`` required)."""

    permission_classes = [IsAdminUser]
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    action: str = ""

    @extend_schema(
        parameters=[OpenApiParameter("provider", str, OpenApiParameter.PATH, enum=PROVIDER_CHOICES)],
        request={
            "application/json": CircuitOverrideInputSerializer,
            "application/x-www-form-urlencoded": CircuitOverrideFormSerializer,
            "multipart/form-data": CircuitOverrideFormSerializer,
        },
        responses={
            200: CircuitOverrideOutputSerializer,
            400: _error("No ``reason``, or a bad ``expires_in`` (``errors`` by field)."),
            401: UNAUTHENTICATED,
            403: NOT_STAFF,
            404: _error("No circuit of that name."),
            415: _error("A body that is neither JSON nor a form."),
            503: _error("The shared circuit store is unreachable; nothing was changed (see Retry-After)."),
        },
    )
    def post(self, request, provider):
        if provider not in {p.value for p in Provider}:
            raise NotFound(f"No circuit named {provider!r}.")
        serializer = CircuitOverrideInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        override = circuit_override(
            provider=Provider(provider), action=self.action, user=request.user, **serializer.validated_data
        )
        circuit = breaker_for(Provider(provider)).snapshot()
        return Response(CircuitOverrideOutputSerializer({"override": override, "circuit": circuit}).data)


@method_decorator(never_cache, name="dispatch")
class ProbeView(APIView):
    """Base of the health probes: open to all, never cached, never throttled, no session lookup."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = []


class HealthView(ProbeView):
    """Circuits and dependencies; 200 while some configured provider can be called, else 503."""

    @extend_schema(
        responses={
            200: OpenApiResponse(HealthOutputSerializer, description="Some configured provider can be called."),
            503: OpenApiResponse(HealthOutputSerializer, description="No configured provider can be called."),
        }
    )
    def get(self, request):
        report = health_report()
        return Response(HealthOutputSerializer(report).data, status=_status(report.serving))


class LiveView(ProbeView):
    """The process is up; checks no dependency."""

    @extend_schema(responses=LiveOutputSerializer)
    def get(self, request):
        return Response(LiveOutputSerializer({"status": PASS}).data)


class ReadyView(ProbeView):
    """The database and (when configured) Redis answer."""

    @extend_schema(
        responses={
            200: OpenApiResponse(ReadinessOutputSerializer, description="Every dependency answers."),
            503: OpenApiResponse(ReadinessOutputSerializer, description="A dependency does not answer."),
        }
    )
    def get(self, request):
        report = readiness()
        return Response(ReadinessOutputSerializer(report).data, status=_status(report.ready))


class MetricsView(ProbeView):
    """Prometheus text for scrapers: no login; ``Authorization: Bearer <METRICS_TOKEN>`` when that is set."""

    @extend_schema(
        responses={
            (200, "text/plain"): OpenApiTypes.STR,
            401: _error("METRICS_TOKEN is set and the request does not carry it."),
        }
    )
    def get(self, request):
        if not metrics_token_valid(request.headers.get("Authorization", "")):
            raise NotAuthenticated("Send Authorization: Bearer <METRICS_TOKEN>.")
        return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE)

    def get_authenticate_header(self, request) -> str:
        return 'Bearer realm="metrics"'  # makes a refusal a 401 with WWW-Authenticate

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)  # scrapers' Accept is not JSON
