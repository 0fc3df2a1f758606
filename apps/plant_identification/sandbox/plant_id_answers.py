"""Plant.id v3 identification bodies: classification, detail views, health assessment and similar images."""

import hashlib
from dataclasses import dataclass

from apps.plant_identification.sandbox.catalogue import DISEASES, Disease, Species
from apps.plant_identification.sandbox.plant_id_request import PlantIdRequest

MODEL_VERSION = "plant_id:5.0.0"
PLANT_ID_PROBABILITIES = (0.9104, 0.0512, 0.0187)
DISEASE_PROBABILITIES = (0.12, 0.07, 0.04)
DEFAULT_DISEASES = 2  # the rest only with full_disease_list=true
SIMILARITIES = (0.812, 0.734)
PROCESSING_SECONDS = 0.4
# Every detail view Plant.id offers; a view asked for that the service has no data for comes back as null.
PLANT_VIEWS = (
    "common_names",
    "url",
    "description",
    "taxonomy",
    "name_authority",
    "rank",
    "gbif_id",
    "inaturalist_id",
    "image",
    "images",
    "synonyms",
    "edible_parts",
    "propagation_methods",
    "watering",
    "best_watering",
    "best_light_condition",
    "best_soil_type",
    "common_uses",
    "toxicity",
    "cultural_significance",
)
DISEASE_VIEWS = ("local_name", "description", "url", "treatment", "classification", "common_names", "cause")
LICENSE = {"license_name": "CC BY-SA 3.0", "license_url": "https://creativecommons.org/licenses/by-sa/3.0/"}
CDN = "https://sandbox.invalid"


@dataclass
class StoredIdentification:
    """One identification as the sandbox keeps it, rendered again on every retrieval."""

    access_token: str
    request: PlantIdRequest
    health_only: bool  # asked with health=only, or made by the health assessment endpoint
    not_plant: bool  # the fault plan made this photo "not a plant"
    created: float
    completed: float | None = None
    feedback: dict | None = None

    @property
    def has_health(self) -> bool:
        # Every catalogue plant looks healthy, so health=auto never adds the assessment.
        return self.health_only or self.request.health == "all"


def entity_id(name: str) -> str:
    """A 16-hex entity id, the same for a name every time."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def identification_body(record: StoredIdentification, details: tuple[str, ...], language: str) -> dict:
    """The identification as Plant.id sends it; without ``result`` until it is completed."""
    request = record.request
    inputs: dict = {
        "latitude": request.latitude,
        "longitude": request.longitude,
        "similar_images": request.similar_images,
    }
    if request.health is not None:
        inputs["health"] = request.health
    if request.classification_level is not None:
        inputs["classification_level"] = request.classification_level
    if request.classification_raw:
        inputs["classification_raw"] = True
    # The service keeps its own copy of each photo and names it by URL, never echoing the base64 sent.
    stored = (
        hashlib.sha256(f"{record.access_token}:{index}".encode()).hexdigest()[:32]
        for index in range(request.image_count)
    )
    inputs["images"] = [f"{CDN}/media/imgs/{name}.jpg" for name in stored]
    inputs["datetime"] = request.datetime
    body: dict = {
        "access_token": record.access_token,
        "model_version": MODEL_VERSION,
        "custom_id": request.custom_id,
        "input": inputs,
    }
    if record.completed is not None:
        body["result"] = _result(record, details, language)
    body.update(
        {
            "status": "COMPLETED" if record.completed is not None else "CREATED",
            "sla_compliant_client": True,
            "sla_compliant_system": True,
            "created": record.created,
            "completed": record.completed,
        }
    )
    if record.feedback is not None:
        body["feedback"] = record.feedback
    return body


def _result(record: StoredIdentification, details: tuple[str, ...], language: str) -> dict:
    request = record.request
    ranking = None if record.not_plant else request.ranking
    plant = ranking is not None
    result: dict = {"is_plant": {"probability": 0.9873 if plant else 0.0412, "threshold": 0.5, "binary": plant}}
    if not record.health_only:
        result["classification"] = {"suggestions": _classification(ranking or [], request, details, language)}
    if record.has_health:
        result["is_healthy"] = {"probability": 0.83, "threshold": 0.525, "binary": True}
        result["disease"] = _disease(request, details, language)
    return result


def _classification(ranking: list[Species], request: PlantIdRequest, details, language) -> list | dict:
    """Species suggestions, genus ones for classification_level=genus, or every level for classification_raw."""
    top = list(zip(ranking, PLANT_ID_PROBABILITIES, strict=False))
    species = [_suggestion(s.name, p, _species_views(s), request, details, language) for s, p in top]
    genera: dict[str, float] = {}
    for item, probability in top:
        genera[item.genus] = round(genera.get(item.genus, 0) + probability, 4)
    member = {item.genus: item for item, _ in reversed(top)}  # the best-ranked species of each genus
    genus = [_suggestion(name, p, _genus_views(member[name]), request, details, language) for name, p in genera.items()]
    if request.classification_raw:
        return {"genus": genus, "species": species, "infraspecies": []}  # the catalogue has no infraspecies
    return genus if request.classification_level == "genus" else species


def _suggestion(name: str, probability: float, views: dict, request: PlantIdRequest, details, language) -> dict:
    body = {key: views.get(key) for key in details if key in views}
    body.update({"language": language, "entity_id": entity_id(name)})
    return {
        "id": entity_id(name),
        "name": name,
        "probability": probability,
        "similar_images": _similar_images(name) if request.similar_images else [],
        "details": body,
    }


def _similar_images(name: str) -> list[dict]:
    """Two similar photos: one with its licence and citation, one without (both forms are sent)."""
    images = []
    for index, similarity in enumerate(SIMILARITIES):
        image_id = hashlib.sha1(f"{name}:{index}".encode()).hexdigest()  # noqa: S324 - an id, not security
        image = {
            "id": image_id,
            "url": f"{CDN}/similar_images/5/{image_id[:3]}/{image_id[3:]}.jpeg",
            "url_small": f"{CDN}/similar_images/5/{image_id[:3]}/{image_id[3:]}.small.jpeg",
            "similarity": similarity,
        }
        if index == 0:
            image.update({**LICENSE, "citation": "Sandbox Gardener"})
        images.append(image)
    return images


def _licensed(value: str, citation: str) -> dict:
    return {"value": value, "citation": citation, **LICENSE}


def _wiki(name: str) -> str:
    return f"https://en.wikipedia.org/wiki/{name.replace(' ', '_')}"


def _picture(name: str, index: int) -> dict:
    token = hashlib.sha256(f"{name}:{index}".encode()).hexdigest()[:12]
    return _licensed(f"{CDN}/knowledge_base/{token[:3]}/{token}.jpg", f"https://commons.wikimedia.org/wiki/{token}")


def _taxonomy(item: Species) -> dict:
    return {
        "kingdom": "Plantae",
        "phylum": "Tracheophyta",
        "class": item.plant_class,
        "order": item.order,
        "family": item.family,
        "genus": item.genus,
    }


def _species_views(item: Species) -> dict:
    low, high = item.watering
    return {
        "common_names": list(item.common_names),
        "url": _wiki(item.name),
        "description": _licensed(f"{item.name} is a plant of the family {item.family}.", _wiki(item.name)),
        "taxonomy": _taxonomy(item),
        "name_authority": item.name_authority,
        "rank": "species",
        "gbif_id": int(item.gbif_id),
        "inaturalist_id": item.inaturalist_id,
        "image": _picture(item.name, 0),
        "images": [_picture(item.name, 0), _picture(item.name, 1)],
        "synonyms": list(item.synonyms),
        "edible_parts": list(item.edible_parts) if item.edible_parts else None,
        "propagation_methods": ["seeds"],
        "watering": {"min": low, "max": high},
        "best_watering": "Water when the top of the soil is dry." if high < 3 else "Keep the soil evenly moist.",
        "best_light_condition": f"Grows best in {item.light}.",
        "best_soil_type": "A well-drained, humus-rich soil.",
        "common_uses": None,
        "toxicity": item.toxicity,
        "cultural_significance": None,
    }


def _genus_views(item: Species) -> dict:
    """What the service knows of a genus: its taxonomy and page; the care views are species-level (null)."""
    views = dict.fromkeys(PLANT_VIEWS)
    views.update({"url": _wiki(item.genus), "taxonomy": _taxonomy(item), "rank": "genus", "synonyms": []})
    return views


def _disease(request: PlantIdRequest, details: tuple[str, ...], language: str) -> dict:
    count = len(DISEASES) if request.full_disease_list else DEFAULT_DISEASES
    suggestions = [
        _disease_suggestion(disease, probability, request, details, language)
        for disease, probability in zip(DISEASES[:count], DISEASE_PROBABILITIES, strict=False)
    ]
    suggestions[1]["redundant"] = False  # sent on some suggestions: whether a more specific one supersedes it
    first, second = DISEASES[0], DISEASES[1]
    return {
        "suggestions": suggestions,
        "question": {
            "text": "Does the substrate stay wet for days after watering?",
            "translation": "Does the substrate stay wet for days after watering?",
            "options": {
                "yes": {
                    "suggestion_index": 0,
                    "entity_id": entity_id(first.name),
                    "name": first.name,
                    "translation": "Yes",
                },
                "no": {
                    "suggestion_index": 1,
                    "entity_id": entity_id(second.name),
                    "name": second.name,
                    "translation": "No",
                },
            },
        },
    }


def _disease_suggestion(disease: Disease, probability: float, request: PlantIdRequest, details, language) -> dict:
    views = {
        "local_name": disease.local_name,
        "description": disease.description,  # plain text, unlike a plant's description
        "url": disease.url,
        "treatment": disease.treatment,
        "classification": list(disease.classification),
        "common_names": list(disease.common_names) if disease.common_names else None,
        "cause": disease.cause,
    }
    return _suggestion(disease.name, probability, views, request, details, language)
