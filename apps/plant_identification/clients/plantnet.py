"""Pl@ntNet v2 specifics: api-key query parameter, multipart images and organs, parsing."""

from typing import Any

import requests

from apps.plant_identification.clients.base import BaseProviderClient, OutboundRequest, seconds_until_period_end
from apps.plant_identification.providers import Provider
from apps.plant_identification.types import IdentifyRequest, ProviderAnswer, Suggestion

NB_RESULTS = 10
LANGUAGE = "en"
NOT_FOUND_MESSAGE = "species not found"
API_KEY_PARAM = "api-key"


def _name(taxon: dict[str, Any] | None) -> str | None:
    return (taxon or {}).get("scientificNameWithoutAuthor") or None


class PlantNetClient(BaseProviderClient):
    """Pl@ntNet v2: ``POST /identify/{project}`` (200), Boom JSON errors, 404 "Species not found"."""

    provider = Provider.PLANTNET
    secret_params = frozenset({API_KEY_PARAM})

    def __init__(self, *, project: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project = project

    def build_request(self, request: IdentifyRequest) -> OutboundRequest:
        return OutboundRequest(
            method="POST",
            path=f"/identify/{self.project}",
            params={
                API_KEY_PARAM: self.api_key,
                "lang": LANGUAGE,
                "nb-results": NB_RESULTS,
                "include-related-images": "true",
            },
            files=[
                ("images", (f"image_{index}.jpg", image.data_for(self.provider), image.content_type))
                for index, image in enumerate(request.images)
            ],
            data={"organs": [organ.value for organ in request.organs]},
        )

    def quota_reset_seconds(self, response: requests.Response) -> float | None:
        return seconds_until_period_end("day")  # the daily quota resets at 00:00 UTC

    def parse_response(self, payload: Any) -> ProviderAnswer:
        return ProviderAnswer(
            provider=self.provider,
            raw=payload,
            suggestions=tuple(self._suggestion(item) for item in payload["results"]),
        )

    def answer_for_error(self, response: requests.Response) -> ProviderAnswer | None:
        if response.status_code != 404:
            return None
        try:
            payload = response.json()
        except ValueError:
            return None
        if not isinstance(payload, dict) or str(payload.get("message", "")).strip().lower() != NOT_FOUND_MESSAGE:
            return None
        return ProviderAnswer(provider=self.provider, suggestions=(), raw=payload)

    @staticmethod
    def _suggestion(item: dict[str, Any]) -> Suggestion:
        species = item["species"]
        gbif_id = (item.get("gbif") or {}).get("id")
        details = {
            "name_authority": species.get("scientificName") or None,  # the name with its authorship
            "gbif_id": str(gbif_id) if gbif_id is not None else None,
            "powo_id": (item.get("powo") or {}).get("id"),
            "iucn_id": (item.get("iucn") or {}).get("id"),
            "iucn_category": (item.get("iucn") or {}).get("category"),
            "images": [
                {
                    "organ": image.get("organ"),
                    "url": (image.get("url") or {}).get("m"),
                    "url_small": (image.get("url") or {}).get("s"),
                    "url_original": (image.get("url") or {}).get("o"),
                    "author": image.get("author"),
                    "date": image.get("date"),
                    "citation": image.get("citation"),
                    "license": image.get("license"),
                }
                for image in item.get("images") or []
            ],
        }
        return Suggestion(
            scientific_name=species["scientificNameWithoutAuthor"],
            score=float(item["score"]),
            common_names=tuple(species.get("commonNames") or ()),
            family=_name(species.get("family")),
            genus=_name(species.get("genus")),
            details={key: value for key, value in details.items() if value not in (None, [])},
        )
