"""The sandbox's plants and plant problems, and how a photo picks a plant: by its average colour (deterministic)."""

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, ImageStat


class UnreadableImage(ValueError):
    """The bytes are not a picture the sandbox can decode."""


@dataclass(frozen=True)
class Species:
    """One catalogue plant, with what both providers know about it (None: the provider has no data)."""

    name: str
    author: str
    genus: str
    family: str
    common_names: tuple[str, ...]
    gbif_id: str
    watering: tuple[int, int]
    order: str
    plant_class: str
    light: str
    inaturalist_id: int | None = None  # placeholder ids
    edible_parts: tuple[str, ...] | None = None
    toxicity: str | None = None
    synonyms: tuple[str, ...] = ()

    @property
    def name_authority(self) -> str:
        return f"{self.name} {self.author}"


CATALOGUE = (
    Species(
        "Monstera deliciosa",
        "Liebm.",
        "Monstera",
        "Araceae",
        ("Swiss cheese plant", "Ceriman"),
        "2868241",
        (2, 2),
        order="Alismatales",
        plant_class="Liliopsida",
        light="bright indirect light",
        inaturalist_id=100101,
        edible_parts=("fruit",),
        toxicity="The leaves and unripe fruit contain calcium oxalate and irritate the mouth of people and pets.",
        synonyms=("Philodendron pertusum",),
    ),
    Species(
        "Ficus lyrata",
        "Warb.",
        "Ficus",
        "Moraceae",
        ("Fiddle-leaf fig",),
        "5361910",
        (2, 2),
        order="Rosales",
        plant_class="Magnoliopsida",
        light="bright indirect light",
        inaturalist_id=100102,
        toxicity="The milky sap irritates skin and is mildly toxic to cats and dogs.",
    ),
    Species(
        "Rosa canina",
        "L.",
        "Rosa",
        "Rosaceae",
        ("Dog rose",),
        "8395064",
        (2, 3),
        order="Rosales",
        plant_class="Magnoliopsida",
        light="full sun",
        inaturalist_id=100103,
        edible_parts=("fruit", "flowers"),
    ),
    Species(
        "Helianthus annuus",
        "L.",
        "Helianthus",
        "Asteraceae",
        ("Sunflower",),
        "9206251",
        (2, 3),
        order="Asterales",
        plant_class="Magnoliopsida",
        light="full sun",
        inaturalist_id=100104,
        edible_parts=("seeds",),
    ),
    Species(
        "Lavandula angustifolia",
        "Mill.",
        "Lavandula",
        "Lamiaceae",
        ("English lavender",),
        "2927302",
        (1, 2),
        order="Lamiales",
        plant_class="Magnoliopsida",
        light="full sun",
        inaturalist_id=100105,
        edible_parts=("flowers",),
        synonyms=("Lavandula officinalis",),
    ),
    Species(
        "Quercus robur",
        "L.",
        "Quercus",
        "Fagaceae",
        ("English oak",),
        "2878688",
        (2, 2),
        order="Fagales",
        plant_class="Magnoliopsida",
        light="full sun",
        inaturalist_id=100106,
        toxicity="The acorns and leaves contain tannins that are toxic to horses and cattle in quantity.",
    ),
    Species(
        "Taraxacum officinale",
        "F.H.Wigg.",
        "Taraxacum",
        "Asteraceae",
        ("Common dandelion",),
        "5394267",
        (2, 2),
        order="Asterales",
        plant_class="Magnoliopsida",
        light="full sun to partial shade",
        inaturalist_id=100107,
        edible_parts=("leaves", "flowers", "roots"),
    ),
    Species(
        "Hedera helix",
        "L.",
        "Hedera",
        "Araliaceae",
        ("Common ivy",),
        "8351737",
        (2, 2),
        order="Apiales",
        plant_class="Magnoliopsida",
        light="partial to full shade",
        toxicity="The berries and leaves are poisonous to people and pets if eaten.",
    ),
)


@dataclass(frozen=True)
class Disease:
    """One plant problem Plant.id's health assessment can name, with its detail views."""

    name: str
    local_name: str
    description: str
    url: str
    treatment: dict
    classification: tuple[str, ...]
    common_names: tuple[str, ...] | None = None
    cause: str | None = None


DISEASES = (
    Disease(
        "water excess or uneven watering",
        "Overwatering",
        "Roots kept in waterlogged substrate lack oxygen and start to rot.",
        "https://en.wikipedia.org/wiki/Root_rot",
        {
            "biological": ["Repot into fresh, well-draining mix after trimming soft roots."],
            "prevention": ["Water only when the top of the substrate is dry.", "Use pots with drainage holes."],
        },
        ("Abiotic",),
        ("overwatering",),
    ),
    Disease(
        "nutrient deficiency",
        "Nutrient deficiency",
        "Too little of a mineral nutrient in the substrate shows as pale or discoloured leaves.",
        "https://en.wikipedia.org/wiki/Plant_nutrition",
        {
            "chemical": ["Feed with a balanced fertiliser at the labelled rate."],
            "prevention": ["Repot or top-dress every year or two."],
        },
        ("Abiotic",),
    ),
    Disease(
        "Fungi",
        "Fungal infection",
        "Fungal pathogens cause leaf spots, blights and rots, mostly in humid conditions.",
        "https://en.wikipedia.org/wiki/Fungus",
        {
            "chemical": ["Apply a labelled fungicide."],
            "biological": ["Remove and destroy infected leaves."],
            "prevention": ["Keep the leaves dry and the air moving."],
        },
        ("Fungi",),
        ("fungal disease",),
        "Fungi",
    ),
)


def photo_ranking(image_bytes: bytes) -> list[Species] | None:
    """The catalogue ranked for this photo, best first; None for a grey photo ("not a plant").

    Raises UnreadableImage when the bytes do not decode as a picture.
    """
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            image.draft("RGB", (64, 64))
            small = image.convert("HSV").resize((16, 16))
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImage(str(exc)) from exc
    hue, saturation, _ = (round(value) for value in ImageStat.Stat(small).mean)
    if saturation < 25:
        return None
    return _ranked_from(hue * len(CATALOGUE) // 256)


def species_for(image_bytes: bytes) -> list[Species] | None:
    """As ``photo_ranking``, with an unreadable picture counted as "not a plant"."""
    try:
        return photo_ranking(image_bytes)
    except UnreadableImage:
        return None


def url_ranking(url: str) -> list[Species]:
    """The catalogue ranked for a photo sent by URL: the sandbox never fetches it, so the URL decides."""
    return _ranked_from(hashlib.sha256(url.encode()).digest()[0] % len(CATALOGUE))


def _ranked_from(first: int) -> list[Species]:
    return [CATALOGUE[(first + offset) % len(CATALOGUE)] for offset in range(len(CATALOGUE))]
