"""Crop names, bulk densities and standard moistures (the basis of dry yield and bushels).

The table is Leaf's published crop table (reference/crops.csv). Names from monitors come in many
spellings ("WHEAT_HRD_RD_SPR", "Wheat (Hrd Rd Wtr)", "CORN WHITE", "ww"); `lookup` folds them to one key.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

UNKNOWN_CROP = "unknown"

# Short codes used by Yield Editor and monitor exports that are not spelled out in the crop table.
_CODES = {
    "ww": "winter wheat", "sw": "spring wheat", "hrw": "hard red winter wheat", "hrs": "hard red spring wheat",
    "sb": "soybeans", "soy": "soybeans", "soybean": "soybeans", "cn": "corn", "maize": "corn",
    "bar": "barley", "oat": "oats",
}

# Crop names terminals write in other languages (ISOXML crop types, task names), folded like `_fold` does.
_TRANSLATIONS = {
    # German
    "weizen": "wheat", "winterweizen": "winter wheat", "sommerweizen": "spring wheat", "gerste": "barley",
    "wintergerste": "winter barley", "sommergerste": "spring barley", "roggen": "rye", "hafer": "oats",
    "mais": "corn", "silomais": "silage corn", "raps": "rapeseed", "winterraps": "oilseed rape winter",
    "kartoffel": "potatoes", "kartoffeln": "potatoes", "zuckerrube": "sugar beet", "zuckerruben": "sugar beet",
    "sojabohne": "soybeans", "sojabohnen": "soybeans", "sonnenblume": "sunflower", "sonnenblumen": "sunflower",
    "erbse": "peas", "erbsen": "peas", "ackerbohne": "field beans", "ackerbohnen": "field beans", "gras": "grass",
    "dinkel": "spelt", "hirse": "millet", "lein": "flax", "senf": "mustard", "luzerne": "lucerne",
    # Scandinavian
    "hvete": "wheat", "vete": "wheat", "hvede": "wheat", "hostvete": "winter wheat", "varvete": "spring wheat",
    "bygg": "barley", "byg": "barley", "havre": "oats", "rag": "rye", "rug": "rye",
    "potatis": "potatoes", "poteter": "potatoes", "kartofler": "potatoes", "rybs": "rapeseed",
    "arter": "peas", "sockerbeta": "sugar beet", "sukkerroer": "sugar beet", "majs": "corn",
    # French
    "ble": "wheat", "ble tendre": "wheat", "orge": "barley", "seigle": "rye", "avoine": "oats", "colza": "colza",
    "tournesol": "sunflower", "pomme de terre": "potatoes", "pommes de terre": "potatoes", "betterave": "sugar beet",
    "pois": "peas", "soja": "soybeans", "mais grain": "corn",
}

# Seed brand prefixes that name the crop of a hybrid or variety (DEKALB corn "DKC61-54", sorghum "DKS").
_SEED_BRAND_PREFIXES = (("dkc", "corn"), ("dks", "sorghum"))


@dataclass(frozen=True)
class Crop:
    name: str
    density_lb_per_bu: float | None
    standard_moisture_pct: float | None


def _fold(name: str) -> str:
    """Lower case, accents dropped (Zuckerrübe, maïs, råg), anything but letters and digits a space."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", plain.lower()).split())


@lru_cache(maxsize=1)
def _table() -> dict[str, Crop]:
    text = resources.files("leaf_dagster").joinpath("reference/crops.csv").read_text(encoding="utf-8")
    table: dict[str, Crop] = {}
    for row in csv.DictReader(text.splitlines()):
        name = row["crop"].strip()
        density = float(row["density_lb_per_bu"]) if row["density_lb_per_bu"].strip() else None
        moisture = float(row["standard_moisture_pct"]) if row["standard_moisture_pct"].strip() else None
        table.setdefault(_fold(name), Crop(name, density, moisture))
    return table


def lookup(name: str | None) -> Crop | None:
    """The crop-table entry for a monitor's crop name, or None when it is not a known crop."""
    if name is None:
        return None
    key = _fold(str(name))
    if not key:
        return None
    key = _fold(_CODES.get(key, _TRANSLATIONS.get(key, key)))
    table = _table()
    if key in table:
        return table[key]
    words = key.split()
    # "wheat hrd rd spr" style tokens with the qualifier moved: try the crop word alone last.
    if len(words) > 1 and " ".join(reversed(words)) in table:
        return table[" ".join(reversed(words))]
    return None


def crop_from_seed_name(name: str | None) -> Crop | None:
    """Infer the crop from a hybrid or variety name that carries a brand's crop prefix."""
    if not name:
        return None
    key = _fold(str(name)).replace(" ", "")
    for prefix, crop in _SEED_BRAND_PREFIXES:
        if key.startswith(prefix) and key[len(prefix):len(prefix) + 1].isdigit():
            return lookup(crop)
    return None
