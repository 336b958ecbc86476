"""Crop names, bulk densities and standard moistures (the basis of dry yield and bushels), and how a file's
crop is found.

The figures are Leaf's published crop table (reference/crops.csv) and a crop is always reported under one
of its names. Monitors name crops in many ways: spellings (`WHEAT_HRD_RD_SPR`, `Wheat (Hrd Rd Wtr)`, `CORN
WHITE`, `ww`), languages (`Raps`, `Weizen`, `blé`, `milho`, `Potatis`: reference/crop_names.csv), vendor codes
(John Deere's `Crop = 174`: reference/crop_codes.csv, learnt from the corpus's Deere-Metadata.json files), file
names (`...-Soybeans.shp`), or only their own numbers (a wet mass / wet volume ratio of 60 lb/bu). Each way is
one step of the chain in `standardize._crop_names`; every function here says what it found and why, so the
file's notes can show the evidence.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

UNKNOWN_CROP = "unknown"
JOHN_DEERE = "JOHN_DEERE"

# Seed brand prefixes that name the crop of a hybrid or variety (DEKALB corn "DKC61-54", sorghum "DKS").
_SEED_BRAND_PREFIXES = (("dkc", "corn"), ("dks", "sorghum"))
# Letters that Unicode decomposition leaves alone.
_TRANSLIT = str.maketrans({"æ": "ae", "ø": "o", "ß": "ss", "œ": "oe", "ł": "l"})
_LANGUAGES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "pt": "Portuguese", "sv": "Swedish",
              "no": "Norwegian", "da": "Danish", "fi": "Finnish", "abbr": "a monitor abbreviation"}
# Tolerances when matching a file's own figures to the crop table: lb/bu relative, moisture in points.
DENSITY_TOLERANCE = 0.005
MOISTURE_TOLERANCE = 0.15


@dataclass(frozen=True)
class Crop:
    name: str
    density_lb_per_bu: float | None
    standard_moisture_pct: float | None


@dataclass(frozen=True)
class Resolved:
    """A crop found for a source string, with the evidence in words."""

    crop: Crop
    evidence: str


def fold(name: str) -> str:
    """Lower case, accents and punctuation removed: `Maïs` and `MAIS`, `Wheat (Hrd Rd Wtr)` and
    `WHEAT_HRD_RD_WTR` fold alike."""
    text = unicodedata.normalize("NFKD", str(name).lower().translate(_TRANSLIT))
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def _read(name: str) -> list[dict[str, str]]:
    text = resources.files("leaf_dagster").joinpath(f"reference/{name}").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@lru_cache(maxsize=1)
def table() -> dict[str, Crop]:
    """Leaf's crop table by folded name (the first row of a name wins)."""
    out: dict[str, Crop] = {}
    for row in _read("crops.csv"):
        name = row["crop"].strip()
        density = float(row["density_lb_per_bu"]) if row["density_lb_per_bu"].strip() else None
        moisture = float(row["standard_moisture_pct"]) if row["standard_moisture_pct"].strip() else None
        out.setdefault(fold(name), Crop(name, density, moisture))
    return out


@lru_cache(maxsize=1)
def names() -> dict[str, tuple[str, str]]:
    """Other names for Leaf's crops (translations, synonyms, abbreviations): folded name -> (Leaf name,
    languages), `Mais` being French and German alike."""
    out: dict[str, tuple[str, str]] = {}
    for row in _read("crop_names.csv"):
        key, crop = fold(row["name"]), row["crop"].strip()
        language = _LANGUAGES.get(row["language"], row["language"])
        if key in out:
            if out[key][0] != crop:
                raise ValueError(f"crop_names.csv maps '{row['name']}' to two crops")
            if language not in out[key][1].split("/"):
                out[key] = (crop, f"{out[key][1]}/{language}")
        else:
            out[key] = (crop, language)
    return out


@lru_cache(maxsize=1)
def codes() -> dict[tuple[str, str], tuple[str, str, str]]:
    """Vendor crop codes: (vendor, code) -> (Leaf name, the vendor's token, where the pair was learnt)."""
    return {(row["vendor"], row["code"].strip()): (row["crop"].strip(), row["token"], row["origin"])
            for row in _read("crop_codes.csv")}


def canonical(crop: Crop) -> Crop:
    """The name Leaf's table gives a crop: a vendor's qualified spelling (`wheat (hrd rd wtr)`) is the plain
    crop when the plain crop has the same density and standard moisture, so no figure changes."""
    base = re.sub(r"\s*\(.*\)\s*$", "", crop.name).strip()
    plain = table().get(fold(base)) if base != crop.name else None
    if plain and plain.density_lb_per_bu is not None and crop.density_lb_per_bu is not None \
            and abs(plain.density_lb_per_bu - crop.density_lb_per_bu) < 0.01 \
            and plain.standard_moisture_pct == crop.standard_moisture_pct:
        return plain
    return crop


def resolve_crop(name: object) -> tuple[str | None, str]:
    """Leaf's name for a crop written any way a monitor, a task file or a person writes it, and the evidence.

    Returns (None, reason) when the name is not a crop we know; numeric codes are not names (see
    `resolve_code`)."""
    found = resolve(name)
    if found is None:
        return None, f"'{name}' is not a crop name we know"
    return found.crop.name, found.evidence


def resolve(name: object) -> Resolved | None:
    """`resolve_crop` with the crop's figures."""
    if name is None or (isinstance(name, float) and np.isnan(name)):
        return None
    source = str(name).strip()
    key = fold(source)
    if not key or key.replace(" ", "").isdigit():
        return None
    crop = _by_key(key)
    if crop:
        return Resolved(crop[0], f"'{source}' {crop[1]}")
    words = key.split()
    if len(words) > 1:
        # "wheat hrd rd spr" kept its qualifier words apart, "corn white" its word order
        crop = _by_key(" ".join(reversed(words)))
        if crop:
            return Resolved(crop[0], f"'{source}' {crop[1]}")
    return None


def _by_key(key: str) -> tuple[Crop, str] | None:
    if key in names():
        leaf_name, language = names()[key]
        crop = canonical(table()[fold(leaf_name)])
        return crop, f"is {language} for {crop.name}"
    if key in table():
        crop = canonical(table()[key])
        same = fold(crop.name) == key
        return crop, "is in Leaf's crop list" if same else f"is Leaf's {table()[key].name!r}, named {crop.name}"
    return None


def lookup(name: str | None) -> Crop | None:
    """The crop-table entry for a monitor's crop name, or None when it is not a known crop."""
    found = resolve(name)
    return found.crop if found else None


def resolve_code(vendor: str | None, code: object) -> Resolved | None:
    """A vendor's numeric crop id (John Deere's `Crop` column) through the code table learnt from the corpus."""
    if vendor is None or code is None:
        return None
    text = str(code).strip()
    if re.fullmatch(r"\d+\.0*", text):
        text = text.split(".")[0]
    entry = codes().get((vendor, text))
    if entry is None:
        return None
    leaf_name, token, origin = entry
    crop = canonical(table()[fold(leaf_name)])
    return Resolved(crop, f"{text} is the {vendor.replace('_', ' ').title()} crop id of {token} ({origin})")


def is_code(value: object) -> bool:
    return bool(re.fullmatch(r"\d+(\.0*)?", str(value).strip()))


def from_file_name(file_name: str | None) -> tuple[Resolved | None, str | None]:
    """A crop named by whole words of a file name (`Merriweather Farms-JT-01-Soybeans`, `2019_mais_rendement`).

    Abbreviations are not taken from names (`sb`, `ww` are as likely to mean something else), and a name with
    words of two crops decides nothing. Returns (found, reason when nothing was found)."""
    if not file_name:
        return None, None
    words = fold(file_name).split()
    found: dict[str, tuple[Crop, str]] = {}
    for size in (3, 2, 1):
        for i in range(len(words) - size + 1):
            phrase = " ".join(words[i:i + size])
            if len(phrase) < 4 and phrase not in table() or names().get(phrase, ("", ""))[1] == _LANGUAGES["abbr"]:
                continue
            hit = _by_key(phrase)
            if hit and not any(phrase in longer for longer in found):
                found.setdefault(phrase, hit)
    crops = {c.name for c, _ in found.values()}
    if len(crops) == 1:
        phrase, (crop, why) = next(iter(found.items()))
        return Resolved(crop, f"the file name '{file_name}' has the word '{phrase}', which {why}"), None
    if len(crops) > 1:
        return None, f"the file name '{file_name}' names several crops ({', '.join(sorted(crops))})"
    return None, None


def crop_from_seed_name(name: str | None) -> Crop | None:
    """Infer the crop from a hybrid or variety name that carries a brand's crop prefix."""
    if not name:
        return None
    key = fold(str(name)).replace(" ", "")
    for prefix, crop in _SEED_BRAND_PREFIXES:
        if key.startswith(prefix) and key[len(prefix):len(prefix) + 1].isdigit():
            return lookup(crop)
    return None


@dataclass(frozen=True)
class Figures:
    """What a harvest file's own numbers say about its crop: bulk density and standard moisture."""

    density_lb_per_bu: float | None
    standard_moisture_pct: float | None
    evidence: str


def _steady(values: np.ndarray, tolerance: float) -> float | None:
    """The value most points share (rounded to the tolerance), when at least half of them share it."""
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) < 10:
        return None
    rounded = np.round(values / tolerance) * tolerance
    uniques, counts = np.unique(rounded, return_counts=True)
    if counts.max() < len(values) / 2:
        return None
    return round(float(uniques[counts.argmax()]), 6)


def file_figures(wet_mass: np.ndarray | None, wet_volume: np.ndarray | None, dry_mass: np.ndarray | None,
                 dry_volume: np.ndarray | None, moisture: np.ndarray | None) -> Figures | None:
    """Bulk density and standard moisture implied by a harvest file's columns (all per area, lb/ac and bu/ac).

    Mass / volume on one basis is the density. Dry against wet mass at the point's moisture gives the
    standard moisture: monitors shrink grain wetter than standard (`dry = wet (100 - m) / (100 - s)`) and
    leave drier grain alone, so only shrunk points tell `s`. With dry volume and wet mass only (John Deere),
    the points that were not shrunk give the density and the others the standard moisture."""
    with np.errstate(divide="ignore", invalid="ignore"):
        density, said = None, ""
        for mass, volume, basis in ((wet_mass, wet_volume, "wet"), (dry_mass, dry_volume, "dry")):
            if density is None and mass is not None and volume is not None:
                density = _steady(np.asarray(mass) / np.asarray(volume), 0.01)
                said = f"{basis} mass / {basis} volume = {density} lb/bu" if density else ""
        dry = dry_mass
        if moisture is not None and wet_mass is not None and dry is None and dry_volume is not None:
            ratio = np.asarray(wet_mass) / np.asarray(dry_volume)
            density = density or _steady(ratio, 0.01)
            if density:
                said = said or f"wet mass / dry volume of unshrunk points = {density} lb/bu"
                dry = np.asarray(dry_volume) * density
        standard = None
        if moisture is not None and wet_mass is not None and dry is not None:
            wet, dry, m = np.asarray(wet_mass, float), np.asarray(dry, float), np.asarray(moisture, float)
            shrunk = np.abs(dry / wet - 1) > 1e-4
            if shrunk.sum() >= 10:
                standard = _steady(100 - (100 - m[shrunk]) * wet[shrunk] / dry[shrunk], 0.1)
                if standard is not None:
                    said += f"; dry / wet mass at the logged moisture = {standard} % standard moisture"
    if density is None and standard is None:
        return None
    return Figures(density, standard, said.strip("; "))


def infer_crop(figures: Figures) -> tuple[Resolved | None, str]:
    """The one crop of Leaf's table whose density (and standard moisture, when known) fit the figures."""
    if figures.density_lb_per_bu is None:
        return None, f"the file's numbers ({figures.evidence}) give no bulk density"
    fits = set()
    for crop in table().values():
        if crop.density_lb_per_bu is None or \
                abs(crop.density_lb_per_bu - figures.density_lb_per_bu) > DENSITY_TOLERANCE * figures.density_lb_per_bu:
            continue
        if figures.standard_moisture_pct is not None and (crop.standard_moisture_pct is None or abs(
                crop.standard_moisture_pct - figures.standard_moisture_pct) > MOISTURE_TOLERANCE):
            continue
        fits.add(_preferred(crop).name)
    if len(fits) == 1:
        crop = canonical(table()[fold(fits.pop())])
        return Resolved(crop, f"inferred: {figures.evidence} fit only {crop.name} in Leaf's crop table"), ""
    if not fits:
        return None, f"the file's numbers ({figures.evidence}) fit no crop in Leaf's table"
    shown = sorted(fits)
    return None, (f"the file's numbers ({figures.evidence}) fit {len(shown)} crops "
                  f"({', '.join(shown[:6])}{', ...' if len(shown) > 6 else ''}), so they do not decide")


def general_name(name: str | None) -> str | None:
    """The general crop a named crop is a kind of (`winter wheat` -> wheat), for figures kept per crop."""
    crop = lookup(name) if name else None
    return _preferred(crop).name if crop else None


def _preferred(crop: Crop) -> Crop:
    """The general crop a table entry is a kind of, for inference, where numbers cannot tell kinds apart:
    `hard red winter wheat`, `wheat, soft red spring` and `durum wheat` are wheat, `maize` is corn."""
    name = re.sub(r"\s*\(.*\)\s*$", "", crop.name).split(",")[0].strip()
    entry = names().get(fold(name))
    if entry and entry[1] != _LANGUAGES["abbr"]:
        name = entry[0]
    words = fold(name).split()
    if len(words) > 1 and words[-1] in table():
        name = words[-1]
    return canonical(table()[fold(name)]) if fold(name) in table() else canonical(crop)


def agreement(crop: Crop, figures: Figures) -> str:
    """A note on whether a crop found by name or code fits the file's own numbers."""
    parts = []
    if figures.density_lb_per_bu is not None and crop.density_lb_per_bu is not None:
        ok = abs(crop.density_lb_per_bu - figures.density_lb_per_bu) <= DENSITY_TOLERANCE * figures.density_lb_per_bu
        parts.append(f"{figures.density_lb_per_bu} lb/bu {'fits' if ok else 'does not fit'} Leaf's "
                     f"{crop.density_lb_per_bu} lb/bu for {crop.name}")
    if figures.standard_moisture_pct is not None and crop.standard_moisture_pct is not None:
        ok = abs(crop.standard_moisture_pct - figures.standard_moisture_pct) <= MOISTURE_TOLERANCE
        parts.append(f"a {figures.standard_moisture_pct} % standard moisture {'fits' if ok else 'does not fit'} "
                     f"Leaf's {crop.standard_moisture_pct} %")
    return "; ".join(parts)


def crops_in(values: object) -> list[str]:
    """The distinct crop names of a column, sorted: a file's (or a merged file's) `crops` list."""
    distinct = {str(value) for value in pd.Series(values).dropna().unique()}  # few names, many points
    return sorted(name for name in distinct if name)
