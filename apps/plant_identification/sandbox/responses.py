"""Sandbox answers in the providers' real wire formats (Plant.id v3 JSON and plain-text errors, Pl@ntNet v2 JSON)."""

import hashlib
import time
from datetime import UTC, datetime

from apps.plant_identification.sandbox.catalogue import Species

PLANT_ID_PROBABILITIES = (0.9104, 0.0512, 0.0187)
PLANTNET_SCORES = (0.78312, 0.09044, 0.03121, 0.01205, 0.00733)
MODEL_VERSION = "plant_id:5.0.0"
PLANTNET_VERSION = "2025-01-15 (7.3)"


def _token(seed: bytes, length: int = 15) -> str:
    return hashlib.sha256(seed).hexdigest()[:length]


def _view(value: str, citation: str) -> dict:
    return {
        "value": value,
        "citation": citation,
        "license_name": "CC BY-SA 3.0",
        "license_url": "https://creativecommons.org/licenses/by-sa/3.0/",
    }


def _plant_details(species: Species, details: set[str]) -> dict:
    wiki = f"https://en.wikipedia.org/wiki/{species.name.replace(' ', '_')}"
    every = {
        "common_names": list(species.common_names),
        "url": wiki,
        "description": _view(f"{species.name} is a plant of the family {species.family}.", wiki),
        "taxonomy": {
            "kingdom": "Plantae",
            "phylum": "Tracheophyta",
            "class": "Magnoliopsida",
            "order": "-",
            "family": species.family,
            "genus": species.genus,
        },
        "synonyms": [],
        "image": _view(f"https://sandbox.invalid/images/{_token(species.name.encode())}.jpg", wiki),
        "edible_parts": None,
        "watering": {"min": species.watering[0], "max": species.watering[1]},
        "propagation_methods": ["seeds"],
        "gbif_id": int(species.gbif_id),
    }
    body = {key: value for key, value in every.items() if key in details}
    body.update({"language": "en", "entity_id": _token(species.name.encode(), 16)})
    return body


def plant_id_identification(
    ranked: list[Species] | None, *, images: int, details: set[str], health: bool, latitude=None, longitude=None
) -> dict:
    """A completed Plant.id v3 identification (201 body); ``ranked`` None means "not a plant"."""
    now = time.time()
    seed = f"{[s.name for s in ranked or []]}{now}".encode()
    if ranked is None:
        is_plant = {"probability": 0.0412, "threshold": 0.5, "binary": False}
        suggestions = []
    else:
        is_plant = {"probability": 0.9873, "threshold": 0.5, "binary": True}
        suggestions = [
            {
                "id": _token(species.name.encode(), 16),
                "name": species.name,
                "probability": probability,
                "similar_images": [],
                "details": _plant_details(species, details),
            }
            for species, probability in zip(ranked, PLANT_ID_PROBABILITIES, strict=False)
        ]
    result: dict = {"is_plant": is_plant, "classification": {"suggestions": suggestions}}
    inputs: dict = {
        "latitude": latitude,
        "longitude": longitude,
        "similar_images": True,
        "images": [f"https://sandbox.invalid/media/imgs/{_token(seed + bytes([i]), 32)}.jpg" for i in range(images)],
        "datetime": datetime.fromtimestamp(now, UTC).isoformat(),
    }
    if health:
        inputs["health"] = "all"
        result["is_healthy"] = {"probability": 0.83, "threshold": 0.525, "binary": True}
        result["disease"] = {
            "suggestions": [
                {
                    "id": "5c4b3a2918273645",
                    "name": "water excess or uneven watering",
                    "probability": 0.12,
                    "similar_images": [],
                    "details": {"local_name": "Overwatering", "language": "en", "entity_id": "5c4b3a2918273645"},
                },
            ]
        }
    return {
        "access_token": _token(seed),
        "model_version": MODEL_VERSION,
        "custom_id": None,
        "input": inputs,
        "result": result,
        "status": "COMPLETED",
        "sla_compliant_client": True,
        "sla_compliant_system": True,
        "created": now,
        "completed": now + 0.4,
    }


def plantnet_identification(
    ranked: list[Species],
    *,
    project: str,
    organs: list[str],
    image_ids: list[str],
    nb_results: int,
    related_images: bool,
    remaining: int,
) -> dict:
    """A Pl@ntNet v2 identify answer (200 body)."""
    order = [ranked[0], ranked[2], ranked[1], *ranked[3:]]  # Pl@ntNet ranks the runners-up differently
    results = []
    for species, score in zip(order[:nb_results], PLANTNET_SCORES, strict=False):
        item = {
            "score": score,
            "species": {
                "scientificNameWithoutAuthor": species.name,
                "scientificNameAuthorship": species.author,
                "scientificName": f"{species.name} {species.author}",
                "genus": {
                    "scientificNameWithoutAuthor": species.genus,
                    "scientificNameAuthorship": "",
                    "scientificName": species.genus,
                },
                "family": {
                    "scientificNameWithoutAuthor": species.family,
                    "scientificNameAuthorship": "",
                    "scientificName": species.family,
                },
                "commonNames": list(species.common_names),
            },
            "gbif": {"id": species.gbif_id},
        }
        if related_images:
            token = _token(species.name.encode(), 12)
            item["images"] = [
                {
                    "organ": "leaf",
                    "author": "Sandbox",
                    "license": "cc-by-sa",
                    "date": {"timestamp": 1622548800000, "string": "June 1, 2021"},
                    "url": {size: f"https://sandbox.invalid/image/{size}/{token}" for size in "oms"},
                    "citation": "Sandbox / Pl@ntNet, cc-by-sa",
                }
            ]
        results.append(item)
    return {
        "query": {
            "project": project,
            "images": image_ids,
            "organs": organs,
            "includeRelatedImages": related_images,
            "noReject": False,
            "type": "kt",
        },
        "predictedOrgans": [
            {"image": image_id, "filename": f"image_{index}.jpg", "organ": "leaf", "score": 0.9}
            for index, image_id in enumerate(image_ids)
        ],
        "language": "en",
        "preferedReferential": "k-world-flora",
        "bestMatch": results[0]["species"]["scientificName"] if results else "",
        "results": results,
        "version": PLANTNET_VERSION,
        "remainingIdentificationRequests": remaining,
    }


def boom(status: int, error: str, message: str) -> dict:
    """Pl@ntNet's Hapi/Boom error body."""
    return {"statusCode": status, "error": error, "message": message}
