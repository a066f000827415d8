"""Vocabulary and text templates of the demo catalog (used by :mod:`cliper.demo.catalog`).

Each latent attribute has a canonical value (what ``truth.json`` records) and surface forms
(synonyms) that the text uses, so a text encoder has to learn that "crimson" and "scarlet"
are the same colour. Where each attribute can appear:

============  =====  ===========================  ===========  =====
attribute     image  title                        description  field
============  =====  ===========================  ===========  =====
category      no     always (category noun)       sometimes    categories
brand         no     sometimes                    no           brand
colour        yes    sometimes                    usually      -
shape         yes    never                        usually      -
pattern       yes    never                        usually      -
material      no     never                        usually      -
============  =====  ===========================  ===========  =====
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ROOT_CATEGORY = "Baby"

# group -> leaf -> title nouns
CATEGORIES: dict[str, dict[str, tuple[str, ...]]] = {
    "Feeding": {
        "Bottles": ("Baby Bottle", "Feeding Bottle", "Nursing Bottle"),
        "Bibs": ("Bib", "Feeding Bib", "Drool Bib"),
    },
    "Nursery": {
        "Blankets": ("Blanket", "Swaddle Blanket", "Receiving Blanket"),
        "Mobiles": ("Crib Mobile", "Nursery Mobile", "Hanging Mobile"),
    },
    "Toys": {
        "Blocks": ("Stacking Blocks", "Building Blocks", "Block Set"),
        "Rattles": ("Rattle", "Teething Rattle", "Shaker Rattle"),
    },
}
LEAVES: tuple[tuple[str, str], ...] = tuple((g, leaf) for g, leaves in CATEGORIES.items() for leaf in leaves)

# Canonical brand names (truth); the meta file writes ``&`` as ``&amp;`` (as the 2014 dump does).
BRANDS: tuple[str, ...] = (
    "Lullabee", "Nestwell", "Tiny Sprout", "Pebble & Co", "Moonbeam Baby", "Kidora", "BrightNest",
    "Cubby Bear", "Honeybun", "Little Otter", "Poppet", "Snugglo", "Coco Léa", "Brüder Bär", "Wee Wonder",
)

# canonical colour -> (RGB drawn in the image, surface forms used in text)
COLOURS: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "red": ((205, 30, 40), ("red", "crimson", "scarlet", "cherry red")),
    "blue": ((30, 70, 205), ("blue", "navy", "cobalt", "azure")),
    "green": ((35, 150, 60), ("green", "emerald", "sage green", "forest green")),
    "yellow": ((240, 200, 25), ("yellow", "lemon", "sunflower yellow", "golden")),
    "purple": ((125, 45, 170), ("purple", "violet", "plum", "lavender")),
    "orange": ((245, 120, 20), ("orange", "tangerine", "apricot", "pumpkin orange")),
    "pink": ((240, 110, 170), ("pink", "rose", "blush pink", "fuchsia")),
    "black": ((40, 40, 45), ("black", "charcoal", "jet black", "ebony")),
}
SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("round", "circular", "circle-shaped"),
    "square": ("square", "boxy square", "four-sided"),
    "triangle": ("triangular", "triangle-shaped", "three-cornered"),
    "star": ("star-shaped", "five-point star", "starry"),
    "diamond": ("diamond-shaped", "rhombus", "diamond"),
}
PATTERNS: dict[str, tuple[str, ...]] = {
    "plain": ("a plain, solid finish", "a clean solid colour with no print", "a simple unpatterned look"),
    "stripes": ("bold stripes", "a classic striped print", "crisp pinstripes"),
    "dots": ("polka dots", "a playful dotted print", "tiny spots all over"),
    "checks": ("gingham checks", "a checkered print", "plaid checks"),
}
MATERIALS: dict[str, tuple[str, ...]] = {
    "cotton": ("organic cotton", "soft cotton", "100% cotton muslin"),
    "silicone": ("food-grade silicone", "soft silicone", "BPA-free silicone"),
    "wood": ("solid beech wood", "natural wood", "sustainably sourced maple wood"),
    "bamboo": ("bamboo fibre", "bamboo", "bamboo viscose"),
    "plastic": ("BPA-free plastic", "durable polypropylene", "recyclable plastic"),
}
PRICE_BANDS: dict[str, tuple[float, float]] = {
    "budget": (4.0, 15.0), "mid": (15.0, 35.0), "premium": (35.0, 90.0),
}
SIZES: tuple[str, ...] = ("small", "medium", "large")  # image only (nuisance)

SERIES = ("Classic", "Deluxe", "Essentials", "Comfort", "Mini", "Everyday", "Dream", "Cloud", "Little Steps")
SUFFIXES = (
    ", 2-Pack", " - 0-12 Months", ", Set of 3", " (Newborn)", " for Boys &amp; Girls", ", 1 Count", "",
)

FILLER = (
    "Perfect as a baby shower gift.",
    "Easy to clean: simply wipe with a damp cloth or rinse under warm water.",
    "Tested to meet or exceed all applicable safety standards.",
    "Parents love how lightweight and portable it is, so it goes everywhere you go.",
    "Designed by parents who understand what little ones really need.",
    "Comes in a reusable gift box that is easy to store.",
    "Suitable from birth and built to grow with your child.",
    "Free from lead, phthalates and PVC.",
    "Our customer care team is happy to help with any question.",
    "A thoughtful addition to any nursery, playroom or diaper bag.",
    "Every piece is inspected by hand before it leaves our workshop.",
    "Designed in Zürich and loved by families around the world.",
    "Machine washable on a gentle cycle; air dry for best results.",
    "The rounded edges and smooth finish keep tiny fingers safe.",
    "Part of a coordinated collection, so you can mix and match.",
    "Please supervise your child at all times during use.",
    "Ships in recyclable, plastic-free packaging.",
    "Its clever design makes everyday routines a little bit easier.",
)
CATEGORY_FILLER: dict[str, tuple[str, ...]] = {
    "Bottles": ("The anti-colic vent reduces air intake during feeding.", "Fits most standard breast pumps."),
    "Bibs": ("The adjustable snap closure fits babies from 3 months.", "A wide pocket catches spills."),
    "Blankets": ("Breathable and light enough for warm nights.", "Generously sized for swaddling."),
    "Mobiles": ("Hangs above the crib and turns gently in the breeze.", "Mounting hardware included."),
    "Blocks": ("Encourages stacking, sorting and early counting.", "Each block is sanded smooth."),
    "Rattles": ("A gentle shake makes a soft, soothing sound.", "Easy for little hands to grip."),
}


def pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    """One element of ``options`` drawn with ``rng``."""
    return options[min(int(rng.random() * len(options)), len(options) - 1)]


def brand_in_meta(brand: str) -> str:
    """The brand as the 2014 dump writes it (``&`` escaped as an HTML entity)."""
    return brand.replace("&", "&amp;")


def make_title(rng: np.random.Generator, item: dict, show_brand: bool) -> tuple[str, list[str]]:
    """Title and the attributes it names: category noun always; brand and colour sometimes.

    Shape, pattern and material never appear in a title.
    """
    parts, named = [], ["category"]
    if show_brand:
        parts.append(brand_in_meta(item["brand"]) + ("&reg;" if rng.random() < 0.25 else ""))
        named.append("brand")
    if rng.random() < 0.5:
        parts.append(pick(rng, SERIES))
    if rng.random() < 0.4:
        parts.append(pick(rng, COLOURS[item["colour"]][1]).title())
        named.append("colour")
    noun = pick(rng, CATEGORIES[item["group"]][item["category"]])
    parts.append(noun + (" &amp; Storage Case" if rng.random() < 0.06 else ""))
    return " ".join(parts) + pick(rng, SUFFIXES), named


def _attribute_sentences(rng: np.random.Generator, item: dict) -> tuple[list[str], str | None]:
    colour = pick(rng, COLOURS[item["colour"]][1])
    shape = pick(rng, SHAPES[item["shape"]])
    noun = pick(rng, CATEGORIES[item["group"]][item["category"]]).lower()
    visual = []
    if rng.random() < 0.85:
        visual.append(f"This {colour} {noun} features a {shape} design.")
    elif rng.random() < 0.5:
        visual.append(f"The {shape} silhouette stands out in any room.")
    if rng.random() < 0.9:
        visual.append(f"It is finished with {pick(rng, PATTERNS[item['pattern']])}.")
    material = None
    if rng.random() < 0.92:
        material = f"Made from {pick(rng, MATERIALS[item['material']])}, it is gentle and durable."
    return visual, material


def make_description(rng: np.random.Generator, item: dict, long: bool) -> str:
    """Description revealing colour, shape, pattern and material (usually), with filler.

    Long descriptions (``long``) have 100-200 words and put the material sentence last with
    probability 1/2, so an encoder that truncates at 77 tokens loses it.
    """
    visual, material = _attribute_sentences(rng, item)
    n_fill = int(rng.integers(9, 17)) if long else int(rng.integers(1, 4))
    pool = list(FILLER) + list(CATEGORY_FILLER[item["category"]])
    fill = [pool[j] for j in rng.permutation(len(pool))[:n_fill]]
    if long and rng.random() < 0.5:
        bestseller = f"The &quot;{pick(rng, SERIES)}&quot; line is our bestseller."
        fill.insert(int(rng.integers(len(fill) + 1)), bestseller)
    sentences = visual + fill[: len(fill) // 2]
    if material is not None and not (long and rng.random() < 0.5):
        sentences.insert(int(rng.integers(len(sentences) + 1)), material)
        material = None
    sentences += fill[len(fill) // 2 :]
    if material is not None:
        sentences.append(material)
    sep = "\n" if rng.random() < 0.15 else " "
    return sep.join(sentences)


SUMMARIES = {
    1: ("Disappointed", "Would not buy again", "Broke quickly"),
    2: ("Not great", "Meh", "Expected more"),
    3: ("It's okay", "Does the job", "Average"),
    4: ("Very nice", "Good value", "Happy with it"),
    5: ("Love it!", "Perfect", "Five stars", "Highly recommend"),
}


def make_review(rng: np.random.Generator, item: dict, rating: int) -> tuple[str, str]:
    """(summary, reviewText) for one rating of one item."""
    noun = pick(rng, CATEGORIES[item["group"]][item["category"]]).lower()
    colour = pick(rng, COLOURS[item["colour"]][1])
    lines = {
        1: f"The {noun} fell apart after a week.",
        2: f"The {colour} looks duller than in the picture.",
        3: f"A decent {noun}, nothing special.",
        4: f"Nice {noun}; the {colour} colour is lovely.",
        5: f"We use this {noun} every day and the {colour} is gorgeous.",
    }
    text = lines[rating] + (" Would buy again." if rating >= 4 and rng.random() < 0.5 else "")
    return pick(rng, SUMMARIES[rating]), text
