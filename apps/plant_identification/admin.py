"""Admin: identifications with their provider results, circuits with live state and history."""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.html import format_html

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.circuits.events import circuit_events_flush
from apps.plant_identification.circuits.overrides import (
    OVERRIDE_MAX_SECONDS,
    CircuitStoreUnreachableError,
    circuit_override,
)
from apps.plant_identification.circuits.states import CircuitState
from apps.plant_identification.models import (
    Circuit,
    CircuitEvent,
    CircuitOverride,
    Identification,
    ProviderResult,
)
from apps.plant_identification.providers import Provider, provider_spec
from apps.plant_identification.types import ProviderStatus


class ViewOnlyMixin:
    """Rows written by the service, never by hand: staff may look, not add or edit."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class AuditTrailMixin(ViewOnlyMixin):
    """The circuits' history: nobody deletes it, superusers included."""

    def has_delete_permission(self, request, obj=None) -> bool:
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


def provider_status_filter(provider: Provider) -> type[admin.SimpleListFilter]:
    """A list filter meaning "``provider``'s result had this status".

    Provider and status must hold on the same result row: two separate related-field filters each match any
    row, so "plant_id" + "ok" also listed identifications where only Pl@ntNet was ok.
    """

    class ProviderStatusFilter(admin.SimpleListFilter):
        title = f"{provider_spec(provider).label} status"
        parameter_name = f"{provider.value}_status"

        def lookups(self, request, model_admin):
            return [(status.value, status.value.replace("_", " ")) for status in ProviderStatus]

        def queryset(self, request, queryset):
            if self.value() is None:
                return queryset
            return queryset.filter(provider_results__provider=provider.value, provider_results__status=self.value())

    return ProviderStatusFilter


@admin.register(Identification)
class IdentificationAdmin(ViewOnlyMixin, admin.ModelAdmin):
    """Identifications: filter by degraded and each provider's outcome, search by species."""

    list_display = ["created_at", "top_scientific_name", "degraded_mark", "image_count", "user"]
    list_filter = ["degraded", *(provider_status_filter(provider) for provider in Provider)]
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
        "degraded_mark",
        "message",
        "is_plant",
        "suggestions",
        "health",
        "top_scientific_name",
        "scientific_names",
    ]

    @admin.display(description="degraded", ordering="degraded")
    def degraded_mark(self, identification: Identification) -> str:
        """A degraded answer is a warning, so it reads as one (the boolean icon showed it as a green tick)."""
        if not identification.degraded:
            return "no"
        return format_html('<strong style="color: var(--error-fg)">{}</strong>', "yes")


class CircuitEventInline(ReadOnlyInline):
    model = CircuitEvent
    fields = ["created_at", "from_state", "to_state", "fail_count", "reason", "worker"]
    ordering = ["-created_at"]


class OverrideForm(forms.Form):
    """Why staff force a circuit, and for how long."""

    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), help_text="Recorded in the audit log.")
    expires_in = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=OVERRIDE_MAX_SECONDS,
        label="Expires in (seconds)",
        help_text=f"At most {OVERRIDE_MAX_SECONDS} (30 days). Empty: until staff change it again.",
    )


class CircuitOverrideInline(ReadOnlyInline):
    model = CircuitOverride
    fields = ["created_at", "user", "action", "reason", "state_before", "state_after", "expires_at"]


@admin.register(Circuit)
class CircuitAdmin(AuditTrailMixin, admin.ModelAdmin):
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
        done = 0
        for circuit in queryset:
            try:
                circuit_override(
                    provider=Provider(circuit.provider),
                    action=action,
                    user=request.user,
                    reason=form.cleaned_data["reason"],
                    expires_in=form.cleaned_data["expires_in"],
                )
            except CircuitStoreUnreachableError as exc:
                self.message_user(request, f"{circuit.provider}: {exc} Nothing was changed.", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(
                request, f"{action_name.replace('_', ' ')}: done for {done} circuit(s).", messages.SUCCESS
            )
        return None

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
class CircuitEventAdmin(AuditTrailMixin, admin.ModelAdmin):
    """Every circuit transition, with a note on the ones the history may miss."""

    list_display = ["created_at", "circuit", "from_state", "to_state", "fail_count", "reason", "worker"]
    list_filter = ["circuit", "to_state"]
    date_hierarchy = "created_at"

    def changelist_view(self, request, extra_context=None):
        _flush_events()
        return super().changelist_view(request, {"subtitle": HISTORY_NOTE, **(extra_context or {})})


@admin.register(CircuitOverride)
class CircuitOverrideAdmin(AuditTrailMixin, admin.ModelAdmin):
    """The audit log of forced circuits."""

    list_display = ["created_at", "circuit", "action", "user", "reason", "state_before", "state_after", "expires_at"]
    list_filter = ["circuit", "action"]
    date_hierarchy = "created_at"
