"""Root URL configuration: admin, the API, health checks, metrics and the OpenAPI schema."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from apps.plant_identification import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/plant-identification/", include("apps.plant_identification.urls")),
    path("health/", views.HealthView.as_view(), name="health"),
    path("health/live/", views.LiveView.as_view(), name="health-live"),
    path("health/ready/", views.ReadyView.as_view(), name="health-ready"),
    path("metrics", views.MetricsView.as_view(), name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI and ReDoc load their JavaScript from drf-spectacular-sidecar's static files, not a CDN.
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
]

handler404 = "backend.error_views.not_found"
handler500 = "backend.error_views.server_error"
