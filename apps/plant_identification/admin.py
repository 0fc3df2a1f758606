"""Admin: identifications with their provider results, circuits with live state and history."""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.circuits.events import circuit_events_flush
from apps.plant_identification.circuits.overrides import circuit_override
from apps.plant_identification.circuits.states import CircuitState
from apps.plant_identification.models import (
    Circuit,
    CircuitEvent,
    CircuitOverride,
    Identification,
    ProviderResult,
)
from apps.plant_identification.providers import Provider


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

    def get_readonly_fields(self, request, obj=None):
        return self.fields


class ProviderResultInline(ReadOnlyInline):
    model = ProviderResult
    fields = [
        "provider",
        "status",
        "latency_ms",
        "cached",
        "attempts",
        "http_status",
        "error_class",
        "error_detail",
        "raw_payload",
    ]


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
    fields = ["created_at", "from_state", "to_state", "fail_count", "reason", "worker"]
    ordering = ["-created_at"]


class OverrideForm(forms.Form):
    """Why staff force a circuit, and for how long."""

    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), help_text="Recorded in the audit log.")
    expires_in = forms.IntegerField(
        required=False, min_value=1, label="Expires in (seconds)", help_text="Empty: until staff change it again."
    )


class CircuitOverrideInline(ReadOnlyInline):
    model = CircuitOverride
    fields = ["created_at", "user", "action", "reason", "state_before", "state_after", "expires_at"]


@admin.register(Circuit)
class CircuitAdmin(ViewOnlyMixin, admin.ModelAdmin):
    """Circuits: live state from the breaker store, transitions and overrides from the database."""

    list_display = ["provider", "state", "failures", "half_open_in", "reason"]
    readonly_fields = ["provider", "state", "failures", "half_open_in", "reason"]
    inlines = [CircuitEventInline, CircuitOverrideInline]
    actions = ["force_open", "force_close"]

    def _snapshot(self, circuit: Circuit):
        return breaker_for(Provider(circuit.provider)).snapshot()

    @admin.display(description="state")
    def state(self, circuit: Circuit) -> str:
        return self._snapshot(circuit).state

    @admin.display(description="failures")
    def failures(self, circuit: Circuit) -> str:
        snapshot = self._snapshot(circuit)
        return f"{snapshot.fail_count} / {snapshot.fail_max}"

    @admin.display(description="time to half-open")
    def half_open_in(self, circuit: Circuit) -> str:
        snapshot = self._snapshot(circuit)
        if snapshot.state != CircuitState.OPEN:
            return "-"
        return f"{snapshot.retry_after} s" if snapshot.retry_after is not None else "until staff close it"

    @admin.display(description="reason")
    def reason(self, circuit: Circuit) -> str:
        return self._snapshot(circuit).reason or "-"

    @admin.action(description="Force open (every worker)")
    def force_open(self, request, queryset):
        return self._override(request, queryset, CircuitOverride.Action.OPEN, "force_open")

    @admin.action(description="Force close (every worker)")
    def force_close(self, request, queryset):
        return self._override(request, queryset, CircuitOverride.Action.CLOSE, "force_close")

    def _override(self, request, queryset, action: str, action_name: str):
        form = OverrideForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "title": f"{action_name.replace('_', ' ').capitalize()}",
                "form": form,
                "queryset": queryset,
                "action": action_name,
                "opts": self.opts,
            }
            return TemplateResponse(request, "admin/plant_identification/circuit/override.html", context)
        for circuit in queryset:
            circuit_override(
                provider=Provider(circuit.provider),
                action=action,
                user=request.user,
                reason=form.cleaned_data["reason"],
                expires_in=form.cleaned_data["expires_in"],
            )
        self.message_user(
            request, f"{action_name.replace('_', ' ')}: done for {queryset.count()} circuit(s).", messages.SUCCESS
        )
        return None

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        _flush_events()
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        _flush_events()
        return super().change_view(request, object_id, form_url, extra_context)


HISTORY_NOTE = (
    "A transition made while Redis was unreachable waits in its worker's memory and is missing here if that "
    "worker stopped before its next identification; its [CIRCUIT] log line always remains."
)


def _flush_events() -> None:
    """Store the transitions still waiting in Redis (or this process) so the history shown is complete."""
    circuit_events_flush()


@admin.register(CircuitEvent)
class CircuitEventAdmin(ViewOnlyMixin, admin.ModelAdmin):
    """Every circuit transition, with a note on the ones the history may miss."""

    list_display = ["created_at", "circuit", "from_state", "to_state", "fail_count", "reason", "worker"]
    list_filter = ["circuit", "to_state"]
    date_hierarchy = "created_at"

    def changelist_view(self, request, extra_context=None):
        _flush_events()
        return super().changelist_view(request, {"subtitle": HISTORY_NOTE, **(extra_context or {})})


@admin.register(CircuitOverride)
class CircuitOverrideAdmin(ViewOnlyMixin, admin.ModelAdmin):
    """The audit log of forced circuits."""

    list_display = ["created_at", "circuit", "action", "user", "reason", "state_before", "state_after", "expires_at"]
    list_filter = ["circuit", "action"]
    date_hierarchy = "created_at"
