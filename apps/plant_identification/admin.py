"""Admin: identifications with their provider results, circuits with live state and history."""

import json
from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.circuits.events import circuit_events_flush
from apps.plant_identification.circuits.latency import FLEET
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
    IdempotencyKey,
    Identification,
    ProviderResult,
)
from apps.plant_identification.providers import Provider, provider_spec
from apps.plant_identification.quotas.report import iso, quota_report
from apps.plant_identification.types import ProviderStatus

TIME_FORMAT = "Y-m-d H:i:s"
# Seconds between reloads of the circuit pages; the circuit page skips a reload while a force form is being filled.
CIRCUIT_REFRESH_SECONDS = 15
STATE_COLOURS = {  # background, text: green, amber, red
    CircuitState.CLOSED: ("#2e7d32", "#ffffff"),
    CircuitState.HALF_OPEN: ("#f9a825", "#000000"),
    CircuitState.OPEN: ("#c62828", "#ffffff"),
}


def when(moment: datetime | None) -> str:
    """A time to the second, in the site's time zone ("-" for none)."""
    if moment is None:
        return "-"
    return date_format(timezone.localtime(moment), TIME_FORMAT)


def json_folded(value, summary: str | None = None) -> str:
    """``value`` as pretty-printed, escaped JSON folded in a ``<details>`` ("-" for none)."""
    if value is None:
        return "-"
    if summary is None:
        size = len(value) if isinstance(value, dict | list) else 1
        summary = f"{size} {'keys' if isinstance(value, dict) else 'items' if isinstance(value, list) else 'value'}"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return format_html(
        '<details class="json-payload"><summary>{}</summary><pre style="white-space: pre-wrap">{}</pre></details>',
        summary,
        text,
    )


def state_badge(state: str) -> str:
    """A circuit state in its colour: closed green, half-open amber, open red."""
    background, foreground = STATE_COLOURS.get(state, ("#777777", "#ffffff"))
    return format_html(
        '<span class="circuit-state" data-state="{}" style="background-color: {}; color: {}; padding: 2px 8px; '
        'border-radius: 4px; font-weight: bold">{}</span>',
        state,
        background,
        foreground,
        state,
    )


def last_error(provider: str) -> ProviderResult | None:
    """The latest result of ``provider`` with an error status (a selector kept here: admin.py is this page's)."""
    return (
        ProviderResult.objects.filter(provider=provider, status=ProviderStatus.ERROR)
        .select_related("identification")
        .order_by("-identification__created_at", "-pk")
        .first()
    )


def failing_identifications_url(provider: str) -> str:
    """The identification changelist filtered to ``provider``'s errors."""
    changelist = reverse("admin:plant_identification_identification_changelist")
    return f"{changelist}?{urlencode({f'{provider}_status': ProviderStatus.ERROR.value})}"


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
        "raw_payload_pretty",
    ]

    @admin.display(description="raw payload")
    def raw_payload_pretty(self, result: ProviderResult) -> str:
        return json_folded(result.raw_payload)


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
    """Identifications: filter by degraded, complete (no late answer pending) and each provider's outcome, search
    by species."""

    list_display = ["created_at", "top_scientific_name", "degraded_mark", "complete_mark", "image_count", "user"]
    list_filter = ["degraded", "complete", *(provider_status_filter(provider) for provider in Provider)]
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
        "complete_mark",
        "message",
        "is_plant_pretty",
        "suggestions_table",
        "health_pretty",
        "top_scientific_name",
        "scientific_names",
    ]

    @admin.display(description="is plant")
    def is_plant_pretty(self, identification: Identification) -> str:
        return json_folded(identification.is_plant)

    @admin.display(description="health")
    def health_pretty(self, identification: Identification) -> str:
        return json_folded(identification.health)

    @admin.display(description="suggestions")
    def suggestions_table(self, identification: Identification) -> str:
        """The merged suggestions as a table; each one's details folded as pretty JSON."""
        suggestions = [s for s in identification.suggestions or [] if isinstance(s, dict)]
        if not suggestions:
            return "-"

        def cells(suggestion: dict):
            scores = suggestion.get("scores") or {}
            return (
                suggestion.get("scientific_name") or "-",
                ", ".join(map(str, suggestion.get("common_names") or [])) or "-",
                suggestion.get("family") or "-",
                suggestion.get("genus") or "-",
                suggestion.get("confidence", "-"),
                ", ".join(f"{name}: {score}" for name, score in scores.items())
                if isinstance(scores, dict)
                else str(scores),
                json_folded(suggestion["details"]) if suggestion.get("details") else "-",
            )

        header = ("scientific name", "common names", "family", "genus", "confidence", "scores", "details")
        return format_html(
            '<table class="suggestions"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
            format_html_join("", "<th>{}</th>", ((name,) for name in header)),
            format_html_join(
                "",
                "<tr>{}</tr>",
                ((format_html_join("", "<td>{}</td>", ((cell,) for cell in cells(s))),) for s in suggestions),
            ),
        )

    @admin.display(description="degraded", ordering="degraded")
    def degraded_mark(self, identification: Identification) -> str:
        """A degraded answer is a warning, so it reads as one (the boolean icon showed it as a green tick)."""
        if not identification.degraded:
            return "no"
        return format_html('<strong style="color: var(--error-fg)">{}</strong>', "yes")

    @admin.display(description="complete", ordering="complete")
    def complete_mark(self, identification: Identification) -> str:
        """Reads "pending" while a late provider answer is still to be merged in (the early answer)."""
        return "yes" if identification.complete else format_html("<em>{}</em>", "pending")


class CircuitEventInline(ReadOnlyInline):
    model = CircuitEvent
    fields = ["created_at_seconds", "from_state", "to_state", "fail_count", "reason", "worker"]
    ordering = ["-created_at"]

    @admin.display(description="time", ordering="created_at")
    def created_at_seconds(self, event: CircuitEvent) -> str:
        return when(event.created_at)


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
    fields = ["created_at_seconds", "user", "action", "reason", "state_before", "state_after", "expires_at_seconds"]

    @admin.display(description="time", ordering="created_at")
    def created_at_seconds(self, override: CircuitOverride) -> str:
        return when(override.created_at)

    @admin.display(description="expires at", ordering="expires_at")
    def expires_at_seconds(self, override: CircuitOverride) -> str:
        return when(override.expires_at)


FORCE_ACTIONS = {"open": CircuitOverride.Action.OPEN, "close": CircuitOverride.Action.CLOSE}
RECENT_TRANSITIONS = 10


@admin.register(Circuit)
class CircuitAdmin(AuditTrailMixin, admin.ModelAdmin):
    """Circuits: live state from the breaker store, transitions and overrides from the database.

    The changelist is the dashboard (state in colour, failures, a countdown to half-open, the reason, the recent
    latency, the last error and the failing identifications); each circuit's page adds its recent transitions
    and force open / close.
    """

    list_display = [
        "provider",
        "state",
        "failures",
        "half_open_in",
        "reason",
        "latency",
        "quota",
        "budget",
        "last_error",
        "failing",
    ]
    readonly_fields = list_display
    inlines = [CircuitEventInline, CircuitOverrideInline]
    actions = ["force_open", "force_close"]
    change_form_template = "admin/plant_identification/circuit/change_form.html"
    change_list_template = "admin/plant_identification/circuit/change_list.html"

    def _snapshot(self, circuit: Circuit):
        # Read once per row and page: every live column shows the same moment, for one Redis round trip.
        snapshot = getattr(circuit, "live_snapshot", None)
        if snapshot is None:
            snapshot = circuit.live_snapshot = breaker_for(Provider(circuit.provider)).snapshot()
        return snapshot

    @admin.display(description="state")
    def state(self, circuit: Circuit) -> str:
        return state_badge(self._snapshot(circuit).state)

    @admin.display(description="failures")
    def failures(self, circuit: Circuit) -> str:
        snapshot = self._snapshot(circuit)
        return f"{snapshot.fail_count} / {snapshot.fail_max}"

    @admin.display(description="time to half-open")
    def half_open_in(self, circuit: Circuit) -> str:
        snapshot = self._snapshot(circuit)
        if snapshot.state != CircuitState.OPEN:
            return "-"
        if snapshot.retry_after is None:
            return "until staff close it"
        return format_html('<span class="circuit-countdown" data-seconds="{0}">{0} s</span>', snapshot.retry_after)

    @admin.display(description="reason")
    def reason(self, circuit: Circuit) -> str:
        return self._snapshot(circuit).reason or "-"

    @admin.display(description="recent latency")
    def latency(self, circuit: Circuit) -> str:
        latency = self._snapshot(circuit).latency
        if latency is None or not latency.samples:
            return "-"
        return format_html(
            '<span class="circuit-latency" data-scope="{}">p50 {} ms, p95 {} ms ({} calls, {})</span>',
            latency.scope,
            latency.p50_ms,
            latency.p95_ms,
            latency.samples,
            "fleet-wide" if latency.scope == FLEET else "this worker only",
        )

    def _quota(self, circuit: Circuit):
        report = getattr(circuit, "live_quota", None)
        if report is None:
            report = circuit.live_quota = quota_report(Provider(circuit.provider))
        return report

    @admin.display(description="provider quota")
    def quota(self, circuit: Circuit) -> str:
        report = self._quota(circuit)
        if report.remaining is None and report.limit is None:
            return "-"
        left = "?" if report.remaining is None else report.remaining
        of = f" of {report.limit}" if report.limit is not None else ""
        unit = "credits" if report.source == "usage_info" else "identifications"
        reset = f", back at {iso(report.reset_at)}" if report.reset_at is not None else ""
        return format_html(
            '<span class="circuit-quota" data-exhausted="{}">{} {} left{}{} (said at {})</span>',
            "true" if report.exhausted else "false",
            left,
            unit,
            of,
            reset,
            iso(report.observed_at) or "-",
        )

    @admin.display(description="credit budget today")
    def budget(self, circuit: Circuit) -> str:
        budget = self._quota(circuit).budget
        if budget is None:
            return "-"
        cap = "no cap" if budget.budget is None else f"{budget.remaining} left of {budget.budget}"
        return format_html(
            '<span class="circuit-budget" data-exhausted="{}">{} spent, {}{}</span>',
            "true" if budget.exhausted else "false",
            budget.spent,
            cap,
            f" until {iso(budget.reset_at)}" if budget.exhausted else "",
        )

    @admin.display(description="last error")
    def last_error(self, circuit: Circuit) -> str:
        result = last_error(circuit.provider)
        if result is None:
            return "-"
        detail = ": ".join(part for part in (result.error_class, result.error_detail) if part) or result.status
        if result.http_status:
            detail = f"{detail} (HTTP {result.http_status})"
        return format_html(
            '<span class="circuit-last-error">{}</span> at <a href="{}">{}</a>',
            detail[:300],
            reverse("admin:plant_identification_identification_change", args=[result.identification_id]),
            when(result.identification.created_at),
        )

    @admin.display(description="failing identifications")
    def failing(self, circuit: Circuit) -> str:
        return format_html('<a href="{}">errors</a>', failing_identifications_url(circuit.provider))

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
            if self._apply(request, circuit, action, form):
                done += 1
        if done:
            self.message_user(
                request, f"{action_name.replace('_', ' ')}: done for {done} circuit(s).", messages.SUCCESS
            )
        return None

    def _apply(self, request, circuit: Circuit, action: str, form: OverrideForm) -> bool:
        """Force ``circuit`` through the audited service; False (with a message) when Redis is unreachable."""
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
            return False
        return True

    def get_urls(self):
        force = path(
            "<path:object_id>/force/<str:action>/",
            self.admin_site.admin_view(self.force_view),
            name="plant_identification_circuit_force",
        )
        return [force, *super().get_urls()]

    def force_view(self, request, object_id: str, action: str):
        """The circuit page's force open / close buttons: the actions' form and audited service, one circuit."""
        if action not in FORCE_ACTIONS:
            raise Http404("No such override.")
        circuit = get_object_or_404(Circuit, pk=unquote(object_id))
        if not self.has_view_permission(request, circuit):
            raise PermissionDenied
        title = f"Force {action}: {circuit.provider}"
        form = OverrideForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            if self._apply(request, circuit, FORCE_ACTIONS[action], form):
                self.message_user(request, f"force {action}: done for {circuit.provider}.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:plant_identification_circuit_change", args=[quote(circuit.pk)]))
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "form": form,
            "queryset": [circuit],
            "opts": self.opts,
            "circuit_page": True,
        }
        return TemplateResponse(request, "admin/plant_identification/circuit/override.html", context)

    def changelist_view(self, request, extra_context=None):
        _flush_events()
        return super().changelist_view(request, {"refresh_seconds": CIRCUIT_REFRESH_SECONDS, **(extra_context or {})})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        _flush_events()
        context = {"refresh_seconds": CIRCUIT_REFRESH_SECONDS, **(extra_context or {})}
        circuit = Circuit.objects.filter(pk=unquote(object_id)).first()
        if circuit is not None:
            context.update(
                recent_transitions=[
                    {"time": when(event.created_at), "event": event}
                    for event in circuit.events.order_by("-created_at", "-pk")[:RECENT_TRANSITIONS]
                ],
                force_forms=[
                    (
                        action,
                        reverse("admin:plant_identification_circuit_force", args=[quote(circuit.pk), action]),
                        OverrideForm(auto_id=f"id_force_{action}_%s"),
                    )
                    for action in FORCE_ACTIONS
                ],
            )
        return super().change_view(request, object_id, form_url, context)


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

    list_display = ["time", "circuit", "from_state", "to_state", "fail_count", "reason", "worker"]
    list_filter = ["circuit", "to_state"]
    date_hierarchy = "created_at"

    @admin.display(description="time", ordering="created_at")
    def time(self, event: CircuitEvent) -> str:
        return when(event.created_at)

    def changelist_view(self, request, extra_context=None):
        _flush_events()
        return super().changelist_view(request, {"subtitle": HISTORY_NOTE, **(extra_context or {})})


@admin.register(CircuitOverride)
class CircuitOverrideAdmin(AuditTrailMixin, admin.ModelAdmin):
    """The audit log of forced circuits."""

    list_display = ["time", "circuit", "action", "user", "reason", "state_before", "state_after", "expires"]
    list_filter = ["circuit", "action"]
    date_hierarchy = "created_at"

    @admin.display(description="time", ordering="created_at")
    def time(self, override: CircuitOverride) -> str:
        return when(override.created_at)

    @admin.display(description="expires at", ordering="expires_at")
    def expires(self, override: CircuitOverride) -> str:
        return when(override.expires_at)


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(AuditTrailMixin, admin.ModelAdmin):
    """Idempotency-Keys on identify: who sent which key, and the identification it replays (none: in flight)."""

    list_display = ["time", "scope", "key", "identification", "lease_expires_at"]
    search_fields = ["key", "scope", "identification__id"]
    date_hierarchy = "created_at"
    list_select_related = ["identification"]
    readonly_fields = ["scope", "key", "fingerprint", "identification", "created_at", "claim", "lease_expires_at"]

    @admin.display(description="time", ordering="created_at")
    def time(self, record: IdempotencyKey) -> str:
        return when(record.created_at)
