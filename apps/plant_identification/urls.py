"""URL routes of the plant identification API (mounted at /api/v1/plant-identification/)."""

from django.urls import path

from apps.plant_identification import views
from apps.plant_identification.models import CircuitOverride

app_name = "plant_identification"

urlpatterns = [
    path("identify/", views.PlantIdentifyView.as_view(), name="identify"),
    path(
        "identifications/<uuid:identification_id>/",
        views.IdentificationDetailView.as_view(),
        name="identification-detail",
    ),
    path("circuits/", views.CircuitListView.as_view(), name="circuits"),
    path(
        "circuits/<str:provider>/open/",
        views.CircuitOverrideView.as_view(action=CircuitOverride.Action.OPEN),
        name="circuit-open",
    ),
    path(
        "circuits/<str:provider>/close/",
        views.CircuitOverrideView.as_view(action=CircuitOverride.Action.CLOSE),
        name="circuit-close",
    ),
]
