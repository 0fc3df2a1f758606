"""Admin: identifications with their provider results, circuits with live state and history."""

from django.contrib import admin

from apps.plant_identification.breakers import breaker_for
from apps.plant_identification.models import Circuit, CircuitEvent, Identification, ProviderResult
from apps.plant_identification.types import Provider


class ViewOnlyMixin:
    """Rows written by the service, never by hand: staff may look, not add or edit."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(ViewOnlyMixin, admin.TabularInline):
    """An inline that only shows rows."""

    extra = 0
    can_delete = False


class ProviderResultInline(ReadOnlyInline):
    model = ProviderResult
    fields = ["provider", "status", "latency_ms", "cached", "http_status", "error_class", "error_detail", "raw_payload"]


@admin.register(Identification)
class IdentificationAdmin(ViewOnlyMixin, admin.ModelAdmin):
    """Identifications: filter by degraded and provider outcome, search by species."""

    list_display = ["created_at", "top_scientific_name", "degraded", "image_count", "user"]
    list_filter = ["degraded", "provider_results__provider", "provider_results__status"]
    search_fields = ["scientific_names", "id"]
    date_hierarchy = "created_at"
    inlines = [ProviderResultInline]
    readonly_fields = [
        "id",
        "created_at",
        "user",
        "image_count",
        "image_hashes",
        "organs",
        "include_diseases",
        "latitude",
        "longitude",
        "degraded",
        "message",
        "is_plant",
        "suggestions",
        "health",
        "top_scientific_name",
        "scientific_names",
    ]


class CircuitEventInline(ReadOnlyInline):
    model = CircuitEvent
    fields = ["created_at", "from_state", "to_state", "fail_count", "worker"]
    ordering = ["-created_at"]


@admin.register(Circuit)
class CircuitAdmin(ViewOnlyMixin, admin.ModelAdmin):
    """Circuits: live state from the breaker storage, transition history from the database."""

    list_display = ["provider", "state", "failures", "half_open_in"]
    readonly_fields = ["provider", "state", "failures", "half_open_in"]
    inlines = [CircuitEventInline]

    @admin.display(description="state")
    def state(self, circuit: Circuit) -> str:
        return breaker_for(Provider(circuit.provider)).snapshot().state

    @admin.display(description="failures")
    def failures(self, circuit: Circuit) -> str:
        snapshot = breaker_for(Provider(circuit.provider)).snapshot()
        return f"{snapshot.fail_count} / {snapshot.fail_max}"

    @admin.display(description="time to half-open")
    def half_open_in(self, circuit: Circuit) -> str:
        retry_after = breaker_for(Provider(circuit.provider)).snapshot().retry_after
        return f"{retry_after} s" if retry_after else "-"

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CircuitEvent)
class CircuitEventAdmin(ViewOnlyMixin, admin.ModelAdmin):
    """Every circuit transition."""

    list_display = ["created_at", "circuit", "from_state", "to_state", "fail_count", "worker"]
    list_filter = ["circuit", "to_state"]
    date_hierarchy = "created_at"
