"""Plant.id v3 specifics: Api-Key auth, base64 JSON payload with health in the same call, parsing, credits."""

import dataclasses
import logging
import math
import re
from typing import Any

import requests
from django.conf import settings

from apps.plant_identification.clients.base import BaseProviderClient, OutboundRequest
from apps.plant_identification.clients.payloads import Base64Data
from apps.plant_identification.exceptions import ProviderResponseError, ProviderTimeoutError
from apps.plant_identification.metrics import credits_spent_record
from apps.plant_identification.periods import seconds_until_period_end
from apps.plant_identification.providers import Provider
from apps.plant_identification.quotas.credits import (
    Reservation,
    budget_refusal,
    credits_refund,
    credits_reserve,
    credits_spent,
)
from apps.plant_identification.quotas.usage_poll import usage_poll_maybe
from apps.plant_identification.types import IdentifyRequest, ProviderAnswer, Suggestion

logger = logging.getLogger(__name__)

# Plant and disease detail views share one `details` query parameter: one list names both.
DETAILS = (
    "common_names,url,description,taxonomy,synonyms,image,edible_parts,watering,propagation_methods,"
    "best_watering,best_light_condition,best_soil_type,toxicity,gbif_id,"
    "name_authority,rank,inaturalist_id,images,common_uses,cultural_significance,"
    "local_name,treatment,classification,cause"
)
LANGUAGE = "en"
PLANT_DETAIL_KEYS = (
    "url",
    "synonyms",
    "edible_parts",
    "watering",
    "propagation_methods",
    "best_watering",
    "best_light_condition",
    "best_soil_type",
    "toxicity",
    "gbif_id",
    "name_authority",
    "rank",
    "inaturalist_id",
    "common_uses",
    "cultural_significance",
    "taxonomy",
    "language",
)
# Licensed views: the value is unwrapped into the key, its citation and licence kept beside it.
LICENSED_DETAIL_KEYS = ("description", "image")
ATTRIBUTION_KEYS = ("citation", "license_name", "license_url")
SIMILAR_IMAGE_KEYS = ("id", "url", "url_small", "similarity", "citation", "license_name", "license_url")
DISEASE_DETAIL_KEYS = ("local_name", "description", "treatment", "classification", "cause", "common_names", "url")


# "The specified api key reached its day credit limit (100)." (also week and month): back when the period ends.
CREDIT_LIMIT = re.compile(r"reached its (day|week|month) credit limit")
OUT_OF_CREDITS = "sufficient number of available credits"  # only a top-up helps
# Failures after which the call may have been charged: no answer in time (Plant.id may have answered after we
# stopped listening) and a 2xx we could not parse. Every other failure (an HTTP error, a refused connection, an
# open circuit) was not charged, and its credits are given back.
MAY_HAVE_BEEN_CHARGED = (ProviderTimeoutError, ProviderResponseError)


def credits_cost(outbound: OutboundRequest) -> int:
    """What Plant.id charges for ``outbound`` when it answers: 1 credit, 1 more with the health assessment."""
    return 2 if (outbound.json or {}).get("health") else 1


def _value(view: Any) -> Any:
    """Unwrap a ``{value, citation, ...}`` detail view; pass plain values and null through."""
    return view.get("value") if isinstance(view, dict) else view


def _similar_images(item: dict[str, Any]) -> list[dict[str, Any]]:
    """A suggestion's similar photos (plants and diseases alike), every documented field, null when not sent."""
    return [{key: image.get(key) for key in SIMILAR_IMAGE_KEYS} for image in item.get("similar_images") or []]


class PlantIdClient(BaseProviderClient):
    """Plant.id v3: ``POST /identification`` (201), plain-text errors."""

    provider = Provider.PLANT_ID

    def build_request(self, request: IdentifyRequest) -> OutboundRequest:
        body: dict[str, Any] = {
            "images": [Base64Data(image.data_for(self.provider)) for image in request.images],
            "similar_images": True,
        }
        if request.include_diseases:
            body["health"] = "all"  # one call, one extra credit: no second /health_assessment call
        if request.latitude is not None and request.longitude is not None:
            body["latitude"], body["longitude"] = request.latitude, request.longitude
        return OutboundRequest(
            method="POST",
            path="/identification",
            params={"details": DETAILS, "language": LANGUAGE},
            headers={"Api-Key": self.api_key},
            json=body,
        )

    def request_for(self, request: IdentifyRequest) -> IdentifyRequest:
        """Without the health assessment when one credit is left of today's budget (rather than failing); it
        is also where the fleet's usage_info poll is started when it is due."""
        now = self.wall_clock()
        usage_poll_maybe(now)
        budget = settings.PLANT_ID_DAILY_CREDIT_BUDGET
        if budget is None or not request.include_diseases or budget - credits_spent(now) != 1:
            return request
        logger.info("[QUOTA] plant_id: 1 credit left of today's budget: asking without the health assessment")
        return dataclasses.replace(request, include_diseases=False)

    def admit(self, outbound: OutboundRequest) -> Reservation:
        """Reserve the call's credits from today's budget (fleet-wide, atomic), or refuse it without a call."""
        cost, now = credits_cost(outbound), self.wall_clock()
        reservation, spent = credits_reserve(cost, now, settings.PLANT_ID_DAILY_CREDIT_BUDGET)
        if reservation is None:
            raise budget_refusal(self.provider.value, cost, spent, now)
        return reservation

    def settle(self, outbound: OutboundRequest, admitted: Reservation | None, error: BaseException | None) -> None:
        """Keep the credits of a call that was (or may have been) charged; give the others back."""
        if admitted is None:
            return
        try:
            if error is None or isinstance(error, MAY_HAVE_BEEN_CHARGED):
                credits_spent_record(self.provider.value, admitted.cost)
            else:
                credits_refund(admitted)
        except Exception:  # the ledger must never cost an answer
            logger.exception("[QUOTA] could not settle plant_id credits")

    def quota_reset_seconds(self, response: requests.Response) -> float | None:
        limit = CREDIT_LIMIT.search(response.text)
        if limit:
            return seconds_until_period_end(limit.group(1))
        return math.inf if OUT_OF_CREDITS in response.text else None

    def parse_response(self, payload: Any) -> ProviderAnswer:
        result = payload["result"]
        is_plant = result.get("is_plant")
        classification = result.get("classification")
        if classification is None and "disease" not in result:
            raise KeyError("classification")  # only a health-only answer (health=only) comes without one
        suggestions = [] if classification is None else classification["suggestions"]
        if isinstance(suggestions, dict):  # classification_raw form
            suggestions = suggestions.get("species") or []
        parsed = tuple(self._suggestion(item) for item in suggestions)
        if is_plant is not None and is_plant.get("binary") is False:
            parsed = ()
        return ProviderAnswer(
            provider=self.provider,
            suggestions=parsed,
            raw=payload,
            is_plant={"probability": is_plant.get("probability"), "binary": is_plant.get("binary")}
            if is_plant
            else None,
            health=self._health(result),
        )

    @staticmethod
    def _suggestion(item: dict[str, Any]) -> Suggestion:
        details = item.get("details") or {}
        taxonomy = details.get("taxonomy") or {}
        extra = {key: details.get(key) for key in PLANT_DETAIL_KEYS if details.get(key) is not None}
        extra.update(
            {
                "plant_id_entity": item.get("id"),
                "description": _value(details.get("description")),
                "image": _value(details.get("image")),
                "similar_images": _similar_images(item),
            }
        )
        for key in LICENSED_DETAIL_KEYS:
            if isinstance(details.get(key), dict):
                extra[f"{key}_attribution"] = {name: details[key].get(name) for name in ATTRIBUTION_KEYS}
        if details.get("images") is not None:
            extra["representative_images"] = details["images"]  # not "images": Pl@ntNet's photos go by that name
        return Suggestion(
            scientific_name=item["name"],
            score=float(item["probability"]),
            common_names=tuple(details.get("common_names") or ()),
            family=taxonomy.get("family"),
            genus=taxonomy.get("genus"),
            details=extra,
        )

    @staticmethod
    def _health(result: dict[str, Any]) -> dict[str, Any] | None:
        is_healthy = result.get("is_healthy")
        disease = result.get("disease")
        if is_healthy is None and disease is None:
            return None
        diseases = []
        for item in (disease or {}).get("suggestions") or []:
            details = item.get("details") or {}
            entry = {"id": item.get("id"), "name": item["name"], "probability": float(item["probability"])}
            if item.get("redundant") is not None:
                entry["redundant"] = item["redundant"]  # whether a more specific suggestion supersedes this one
            entry.update({key: details[key] for key in DISEASE_DETAIL_KEYS if details.get(key) is not None})
            entry["similar_images"] = _similar_images(item)
            diseases.append(entry)
        return {
            "is_healthy": {"probability": is_healthy.get("probability"), "binary": is_healthy.get("binary")}
            if is_healthy
            else None,
            "diseases": diseases,
            "question": (disease or {}).get("question"),
        }
