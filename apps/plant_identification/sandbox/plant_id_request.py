"""Reading a Plant.id v3 create request (a JSON or multipart body, plus query parameters) as the service checks it.

The sentences for bad JSON and bad images are the service's own; those for other bad parameters are the
sandbox's wording (the service's is not published), in the same plain-text form.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from apps.plant_identification.sandbox.catalogue import Species, UnreadableImage, photo_ranking, url_ranking
from apps.plant_identification.sandbox.forms import form_parts

HEALTH_MODES = ("all", "only", "auto")
CLASSIFICATION_LEVELS = ("all", "genus", "species")
MAX_LANGUAGES = 3


class BadRequest(ValueError):
    """A request Plant.id answers 400; the message is the plain-text body."""


@dataclass(frozen=True)
class PlantIdRequest:
    """What a create request asked for, validated."""

    ranking: list[Species] | None  # from the first photo; None: "not a plant"
    image_count: int
    latitude: float | None
    longitude: float | None
    similar_images: bool
    health: str | None
    classification_level: str | None
    classification_raw: bool
    custom_id: int | None
    datetime: str
    details: tuple[str, ...]
    language: str
    asynchronous: bool
    full_disease_list: bool


def query_details(query: dict) -> tuple[str, ...]:
    """The ``details`` names of a query, in the order given."""
    return tuple(name.strip() for name in _first(query, "details", "").split(",") if name.strip())


def query_language(query: dict) -> str:
    """The first ``language`` of a query (the sandbox has one text per view, so the first one labels it)."""
    languages = [code.strip() for code in _first(query, "language", "en").split(",") if code.strip()]
    if len(languages) > MAX_LANGUAGES:
        raise BadRequest(f"At most {MAX_LANGUAGES} languages can be requested.")
    return languages[0] if languages else "en"


def plant_id_request(body: bytes, content_type: str, query: dict) -> PlantIdRequest:
    """Validate a create request; raise BadRequest with the service's sentence when it would refuse it."""
    fields, images = _multipart(body, content_type) if content_type.startswith("multipart/") else _json(body)
    if not images:
        raise BadRequest("Missing image data")
    rankings = [_ranking(image) for image in images]
    return PlantIdRequest(
        ranking=rankings[0],
        image_count=len(images),
        latitude=_number(fields, "latitude"),
        longitude=_number(fields, "longitude"),
        similar_images=_flag(fields, "similar_images"),
        health=_choice(fields, "health", HEALTH_MODES),
        classification_level=_choice(fields, "classification_level", CLASSIFICATION_LEVELS),
        classification_raw=_flag(fields, "classification_raw"),
        custom_id=_custom_id(fields),
        datetime=_datetime(fields),
        details=query_details(query),
        language=query_language(query),
        asynchronous=_first(query, "async", "false") == "true",
        full_disease_list=_first(query, "full_disease_list", "false") == "true",
    )


def _first(query: dict, name: str, default: str) -> str:
    return (query.get(name) or [default])[0]


def _json(body: bytes) -> tuple[dict, list]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("Invalid json data") from exc
    if not isinstance(payload, dict):
        raise BadRequest("Invalid json data")
    images = payload.get("images")
    if images is None or images == []:
        return payload, []
    if not isinstance(images, list) or not all(isinstance(image, str) for image in images):
        raise BadRequest("Images have to be list of base64 strings")
    return payload, [_image(image) for image in images]


def _multipart(body: bytes, content_type: str) -> tuple[dict, list]:
    """File parts are images whatever their field names; text parts are the JSON body's fields."""
    fields, images = {}, []
    for name, filename, content in form_parts(body, content_type):
        if filename is not None:
            images.append(content)
        elif name:
            fields[name] = _form_value(name, content.decode("utf-8", "replace"))
    return fields, images


def _form_value(name: str, text: str):
    if name in ("similar_images", "classification_raw"):
        return {"true": True, "false": False}.get(text.lower(), text)
    if name in ("latitude", "longitude"):
        try:
            return float(text)
        except ValueError:
            return text
    if name == "custom_id":
        return int(text) if text.isdigit() else text
    return text


def _image(entry: str) -> bytes | str:
    """Raw base64, a data URI or an http(s) URL (kept as the URL: the sandbox never fetches photos)."""
    if entry.startswith(("http://", "https://")):
        return entry
    encoded = entry.split(",", 1)[1] if entry.startswith("data:") else entry
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("Invalid image data") from exc


def _ranking(image: bytes | str) -> list[Species] | None:
    if isinstance(image, str):
        return url_ranking(image)
    if not image:
        raise BadRequest("Missing image data")
    try:
        return photo_ranking(image)
    except UnreadableImage as exc:
        raise BadRequest("Invalid image data") from exc


def _number(fields: dict, name: str) -> float | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"Parameter {name} has to be a number.")
    return value


def _flag(fields: dict, name: str) -> bool:
    value = fields.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"Parameter {name} has to be true or false.")
    return value


def _choice(fields: dict, name: str, allowed: tuple[str, ...]) -> str | None:
    value = fields.get(name)
    if value is not None and value not in allowed:
        raise BadRequest(f"Parameter {name} has to be one of: {', '.join(allowed)}.")
    return value


def _custom_id(fields: dict) -> int | None:
    value = fields.get("custom_id")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise BadRequest("Parameter custom_id has to be an integer.")
    return value


def _datetime(fields: dict) -> str:
    """The ``datetime`` sent, in ISO form with an offset (UTC when it had none); the time now when not sent."""
    value = fields.get("datetime")
    if value is None:
        return datetime.now(UTC).isoformat()
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise BadRequest("Parameter datetime has to be a date and time in ISO 8601 format.") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
