"""Provider clients: one ``BaseProviderClient`` subclass per provider, and ``build_clients()``."""

from apps.plant_identification.clients.base import BaseProviderClient
from apps.plant_identification.clients.plant_id import PlantIdClient
from apps.plant_identification.clients.plantnet import PlantNetClient
from apps.plant_identification.providers import Provider, configured_specs

__all__ = ["BaseProviderClient", "PlantIdClient", "PlantNetClient", "build_clients"]


def build_clients() -> dict[Provider, BaseProviderClient]:
    """One client per configured provider, from the registry as it is now."""
    return {spec.provider: spec.client() for spec in configured_specs()}
