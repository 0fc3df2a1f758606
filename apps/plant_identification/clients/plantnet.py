"""Pl@ntNet v2 specifics: api-key query parameter, multipart images and organs, parsing, its daily quota."""

import logging
import re
from typing import Any

import requests
from django.conf import settings

from apps.plant_identification.circuits.states import OpenReason
from apps.plant_identification.clients.base import BaseProviderClient, OutboundRequest
from apps.plant_identification.periods import seconds_to_utc_midnight, seconds_until_period_end
from apps.plant_identification.providers import Provider
from apps.plant_identification.quotas.observed import quota_record
from apps.plant_identification.quotas.ratelimit import ratelimit_parse
from apps.plant_identification.types import IdentifyRequest, ProviderAnswer, Suggestion

logger = logging.getLogger(__name__)

NB_RESULTS = 10
LANGUAGE = "en"
NOT_FOUND_MESSAGE = "species not found"
API_KEY_PARAM = "api-key"
# A top-level field of the 200 body; read without parsing the body twice (parse_response parses it).
REMAINING = re.compile(r'"remainingIdentificationRequests"\s*:\s*(-?\d+)')


def plantnet_quota(response: requests.Response, now: float) -> dict | None:
    """What a Pl@ntNet response says of its daily quota (body ``remainingIdentificationRequests`` on a 2xx,
    ``RateLimit`` / ``RateLimit-Policy`` headers on any), as an observation; None when it says nothing."""
    header = ratelimit_parse(response.headers)
    body = None
    if 200 <= response.status_code < 300:
        match = REMAINING.search(response.text)
        body = max(int(match.group(1)), 0) if match else None
    if response.status_code == 429 and header.remaining is None:
        body = 0  # "Too Many Requests": the day's quota is used up whatever the headers say
    said = [value for value in (header.remaining, body) if value is not None]
    if not said and not header.known:
        return None
    reset_s = header.reset_s if header.reset_s is not None else seconds_to_utc_midnight(now)
    observation = {"observed_at": now, "source": "response", "reset_at": now + reset_s}
    if said:
        observation["remaining"] = min(said)
    if header.limit is not None:
        observation["limit"] = header.limit
    if header.window_s is not None:
        observation["window_s"] = header.window_s
    return observation


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

    def observe(self, response: requests.Response) -> None:
        """Record the quota the response reports; when none is left, hold the circuit open (reason quota) until
        the reset, fleet-wide, so Pl@ntNet is not called before it (a 429 is held by the breaker itself)."""
        now = self.wall_clock()
        observation = plantnet_quota(response, now)
        if observation is None:
            return
        quota_record(self.provider, observation)
        if observation.get("remaining") == 0 and response.status_code != 429 and settings.CIRCUIT_BREAKER_ENABLED:
            wait = observation["reset_at"] - now
            logger.warning("[QUOTA] plantnet: no identification left today: not called for %ds", wait)
            try:
                self.breaker.hold_open(wait, OpenReason.QUOTA)
            except Exception:  # the answer in hand still goes out
                logger.exception("[QUOTA] could not hold the plantnet circuit open")

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
