"""Pl@ntNet v2 identify: the checks the service makes on a request, its 200 body, and its Boom JSON errors.

The Boom messages for a bad `lang` and for "Species not found" are the service's own; the others are the
sandbox's wording in the same shape.
"""

import hashlib
from dataclasses import dataclass

from apps.plant_identification.sandbox.catalogue import CATALOGUE, Species, species_for, url_ranking
from apps.plant_identification.sandbox.forms import form_parts

VERSION = "2025-01-15 (7.3)"
SCORES = (0.78312, 0.09044, 0.03121, 0.01205, 0.00733)
PRIMARY_ORGANS = ("leaf", "flower", "fruit", "bark", "auto")
ORGANS = (*PRIMARY_ORGANS, "habit", "other")  # habit and other only next to a primary organ
LANGUAGES = ("en", "fr", "es", "pt", "de", "it", "nl", "cs")  # the sandbox's subset of /v2/languages
TYPES = ("kt", "legacy")
MAX_IMAGES = 5
MAX_BYTES = 50 * 1024 * 1024
DEFAULT_NB_RESULTS = 5  # the sandbox's catalogue is small; the client always says how many it wants


def boom(status: int, error: str, message: str) -> dict:
    """Pl@ntNet's Hapi/Boom error body."""
    return {"statusCode": status, "error": error, "message": message}


class BoomError(Exception):
    """A request Pl@ntNet refuses, with its Boom body."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = boom(status, error, message)


def bad_request(message: str) -> BoomError:
    return BoomError(400, "Bad Request", message)


@dataclass(frozen=True)
class PlantNetRequest:
    """A validated identify request."""

    project: str
    organs: list[str]
    image_ids: list[str]  # opaque ids for uploaded files, the URLs for GET
    filenames: list[str]
    ranking: list[Species] | None  # None: "not a plant"
    nb_results: int
    language: str
    related_images: bool
    no_reject: bool
    type: str


def plantnet_request(method: str, project: str, query: dict, body: bytes, content_type: str) -> PlantNetRequest:
    """Validate an identify request (POST with files, or GET with image URLs); raise BoomError as the service would."""
    if method == "POST":
        if len(body) > MAX_BYTES:
            message = f"Payload content length greater than maximum allowed: {MAX_BYTES}"
            raise BoomError(413, "Payload Too Large", message)
        images, filenames, organs = [], [], []
        for name, filename, content in form_parts(body, content_type):
            if name == "images":
                images.append(content)
                filenames.append(filename or f"image_{len(images) - 1}.jpg")
            elif name == "organs":
                organs.append(content.decode("utf-8", "replace"))
    else:
        images = filenames = query.get("images") or []
        organs = query.get("organs") or []
    _check_images_and_organs(images, organs)
    if method == "POST":
        if any(not image.startswith((b"\xff\xd8", b"\x89PNG")) for image in images):
            raise BoomError(415, "Unsupported Media Type", "only JPEG and PNG images are accepted")
        ranking = species_for(images[0])
        image_ids = [hashlib.md5(image).hexdigest() for image in images]  # noqa: S324 - an id, not security
    else:
        ranking, image_ids = url_ranking(images[0]), list(images)
    return PlantNetRequest(
        project=project,
        organs=organs,
        image_ids=image_ids,
        filenames=list(filenames),
        ranking=ranking,
        nb_results=_nb_results(query),
        language=_choice(query, "lang", LANGUAGES, "en"),
        related_images=_flag(query, "include-related-images"),
        no_reject=_flag(query, "no-reject"),
        type=_choice(query, "type", TYPES, "kt"),
    )


def _check_images_and_organs(images: list, organs: list[str]) -> None:
    if not 1 <= len(images) <= MAX_IMAGES:
        raise bad_request(f'"images" must contain between 1 and {MAX_IMAGES} items')
    if len(organs) != len(images):
        raise bad_request('"organs" must contain one organ per image')
    for index, organ in enumerate(organs):
        if organ not in ORGANS:
            raise bad_request(f'"organs[{index}]" must be one of [{", ".join(ORGANS)}]')
    if not set(organs) & set(PRIMARY_ORGANS):
        raise bad_request(f'"organs" must contain at least one of [{", ".join(PRIMARY_ORGANS)}]')


def _nb_results(query: dict) -> int:
    text = (query.get("nb-results") or [str(DEFAULT_NB_RESULTS)])[0]
    try:
        value = int(text)
    except ValueError:
        raise bad_request('"nb-results" must be a number') from None
    if value < 1:
        raise bad_request('"nb-results" must be greater than or equal to 1')
    return value


def _choice(query: dict, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = (query.get(name) or [default])[0]
    if value not in allowed:
        raise bad_request(f'"{name}" must be one of [{", ".join(allowed)}]')
    return value


def _flag(query: dict, name: str) -> bool:
    value = (query.get(name) or ["false"])[0]
    if value not in ("true", "false"):
        raise bad_request(f'"{name}" must be a boolean')
    return value == "true"


def plantnet_identification(request: PlantNetRequest, remaining: int) -> dict:
    """The 200 body; a "not a plant" photo (asked with no-reject=true) still gets the whole catalogue."""
    ranked = request.ranking or list(CATALOGUE)
    order = [ranked[0], ranked[2], ranked[1], *ranked[3:]]  # Pl@ntNet ranks the runners-up differently
    results = [
        _result(species, score, request.related_images)
        for species, score in zip(order[: request.nb_results], SCORES, strict=False)
    ]
    return {
        "query": {
            "project": request.project,
            "images": request.image_ids,
            "organs": request.organs,
            "includeRelatedImages": request.related_images,
            "noReject": request.no_reject,
            "type": request.type,
        },
        "predictedOrgans": [
            {"image": image_id, "filename": filename, "organ": "leaf" if organ == "auto" else organ, "score": 0.9}
            for image_id, filename, organ in zip(request.image_ids, request.filenames, request.organs, strict=True)
        ],
        "language": request.language,
        "preferedReferential": "k-world-flora",  # sic: the service's spelling
        "bestMatch": results[0]["species"]["scientificName"] if results else "",
        "results": results,
        "version": VERSION,
        "remainingIdentificationRequests": remaining,
    }


def _taxon(name: str) -> dict:
    return {"scientificNameWithoutAuthor": name, "scientificNameAuthorship": "", "scientificName": name}


def _result(species: Species, score: float, related_images: bool) -> dict:
    item: dict = {
        "score": score,
        "species": {
            "scientificNameWithoutAuthor": species.name,
            "scientificNameAuthorship": species.author,
            "scientificName": species.name_authority,
            "genus": _taxon(species.genus),
            "family": _taxon(species.family),
            "commonNames": list(species.common_names),
        },
        "gbif": {"id": species.gbif_id},
    }
    if related_images:  # without include-related-images the key is absent altogether
        token = hashlib.sha256(species.name.encode()).hexdigest()[:12]
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
    return item
