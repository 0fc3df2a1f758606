"""Provider clients and ``build_clients()``, which builds one per configured provider from settings."""

from django.conf import settings

from apps.plant_identification.clients.base import BaseProviderClient
from apps.plant_identification.clients.plant_id import PlantIdClient
from apps.plant_identification.clients.plantnet import PlantNetClient
from apps.plant_identification.types import Provider

__all__ = ["BaseProviderClient", "PlantIdClient", "PlantNetClient", "build_clients", "configured_providers"]


def configured_providers() -> list[Provider]:
    """Providers with an API key; a provider with an empty key is never called."""
    keys = {Provider.PLANT_ID: settings.PLANT_ID_API_KEY, Provider.PLANTNET: settings.PLANTNET_API_KEY}
    return [provider for provider in Provider if keys[provider]]


def build_clients() -> dict[Provider, BaseProviderClient]:
    """One client per configured provider, from settings read now."""
    clients: dict[Provider, BaseProviderClient] = {}
    if settings.PLANT_ID_API_KEY:
        clients[Provider.PLANT_ID] = PlantIdClient(
            api_key=settings.PLANT_ID_API_KEY,
            base_url=settings.PLANT_ID_API_URL,
            timeout=settings.PLANT_ID_TIMEOUT,
        )
    if settings.PLANTNET_API_KEY:
        clients[Provider.PLANTNET] = PlantNetClient(
            api_key=settings.PLANTNET_API_KEY,
            base_url=settings.PLANTNET_API_URL,
            timeout=settings.PLANTNET_TIMEOUT,
            project=settings.PLANTNET_PROJECT,
        )
    return clients
