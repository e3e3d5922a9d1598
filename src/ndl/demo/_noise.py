"""Per-record noise: how one organisation's copy of a person differs from the truth.

Each source draws its own noise independently, so two sources disagree about a person
roughly twice as often as either disagrees with the truth. Every random draw is made
whatever the rates are, so changing one rate never reshuffles unrelated noise.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ndl.demo import _names
from ndl.demo._people import Population, date_parts, random_postcodes, random_surnames

_LOWER = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class NoiseRates:
    """Probability that a source record shows each kind of error, per record or field."""

    typo: float = 0.05  # one substitution/transposition/deletion in a name
    # Rates below apply only to records where the error is possible: ~1/3 of given names
    # have a short form and ~36% of birth dates have a day of 1-12 unequal to the month,
    # so these defaults give roughly 5% and 2% of all records respectively.
    nickname: float = 0.15  # short form or alternative spelling of the given name
    family_name_change: float = 0.02  # marriage, divorce, double-barrelling
    dob_day_month_swap: float = 0.05  # day and month transposed
    moved: float = 0.10  # a different postcode from the true home
    missing: float = 0.03  # per quasi-identifier field
    case_whitespace: float = 0.05  # per name/postcode field: case, spacing, accents
    ethnicity_change: float = 0.03  # recorded differently (self-identification varies)
    la_nhs_number_missing: float = 0.30  # councils often lack the NHS number
    ae_nhs_number_missing: float = 0.01  # unidentified A&E arrivals
    la_duplicate: float = 0.02  # a child registered twice under two local ids

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"noise rate {name}={value} is not a probability")


@dataclass
class Identity:
    """A source's view of identity fields for a list of people (None/NaT = missing)."""

    given_name: np.ndarray
    family_name: np.ndarray
    date_of_birth: np.ndarray  # datetime64[D], NaT where missing
    sex: np.ndarray
    postcode: np.ndarray
    ethnicity: np.ndarray
    region: np.ndarray  # region of the recorded address, known even if postcode is withheld


def typo(rng: np.random.Generator, s: str) -> str:
    """One keying error: substitute, transpose adjacent or drop a character."""
    if len(s) < 2:
        return s
    op = rng.random()
    pos = int(rng.integers(0, len(s)))
    if op < 0.3 and pos < len(s) - 1 and s[pos] != s[pos + 1]:
        return s[:pos] + s[pos + 1] + s[pos] + s[pos + 2 :]
    if op > 0.9 and len(s) > 3:
        return s[:pos] + s[pos + 1 :]
    choices = [c for c in _LOWER if c != s[pos].lower()]
    c = choices[int(rng.integers(0, len(choices)))]
    return s[:pos] + (c.upper() if s[pos].isupper() else c) + s[pos + 1 :]


def _fold_ascii(s: str) -> str:
    # Strip accents by decomposition; "Ł" has no decomposition, so map it by hand.
    s = s.replace("Ł", "L").replace("ł", "l")
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii")


def _vary_name(rng: np.random.Generator, s: str) -> str:
    variant = int(rng.integers(0, 5))
    if variant == 0:
        return s.upper()
    if variant == 1:
        return s.lower()
    if variant == 2:
        return f" {s}" if rng.random() < 0.5 else f"{s}  "
    if variant == 3 and s != _fold_ascii(s):
        return _fold_ascii(s)
    return s.upper()


def _vary_postcode(rng: np.random.Generator, s: str) -> str:
    variant = int(rng.integers(0, 3))
    if variant == 0:
        return s.replace(" ", "")
    if variant == 1:
        return s.lower()
    return s.replace(" ", "  ")


def _apply(
    values: np.ndarray,
    mask: np.ndarray,
    fn: Callable[[np.random.Generator, str], str],
    rng: np.random.Generator,
) -> None:
    for i in np.flatnonzero(mask):
        if values[i] is not None:
            values[i] = fn(rng, values[i])


def noisy_identity(
    rng: np.random.Generator, pop: Population, idx: np.ndarray, rates: NoiseRates
) -> Identity:
    """Return the identity fields one source holds for people `idx` (repeats allowed)."""
    n = len(idx)
    u = rng.random((n, 15))
    given = pop.given_name[idx].copy()
    family = pop.family_name[idx].copy()
    dob = pop.date_of_birth[idx].copy()
    sex = pop.sex[idx].copy()
    postcode = pop.postcode[idx].copy()
    region = pop.region[idx].copy()
    ethnicity = pop.ethnicity[idx].copy()

    has_nick = np.fromiter((g in _names.NICKNAMES for g in given), dtype=bool, count=n)
    for i in np.flatnonzero((u[:, 0] < rates.nickname) & has_nick):
        forms = _names.NICKNAMES[given[i]]
        given[i] = forms[int(rng.integers(0, len(forms)))]

    changed = np.flatnonzero(u[:, 1] < rates.family_name_change)
    new_names = random_surnames(rng, np.full(len(changed), "british", dtype=object))
    for j, i in enumerate(changed):
        # About a third of changes are double-barrelled rather than replaced outright.
        family[i] = f"{family[i]}-{new_names[j]}" if u[i, 2] < 0.35 else new_names[j]

    typo_mask = u[:, 3] < rates.typo
    _apply(given, typo_mask & (u[:, 4] < 0.5), typo, rng)
    _apply(family, typo_mask & (u[:, 4] >= 0.5), typo, rng)

    _, month, day = date_parts(dob)
    swap = (u[:, 5] < rates.dob_day_month_swap) & (day <= 12) & (day != month)
    for i in np.flatnonzero(swap):
        y = str(dob[i])[:4]
        dob[i] = np.datetime64(f"{y}-{day[i]:02d}-{month[i]:02d}", "D")

    moved = np.flatnonzero(u[:, 6] < rates.moved)
    # Most moves are local (same region); a few are from further afield.
    stay_local = u[moved, 7] < 0.9
    other = np.asarray(list(_names.REGION_WEIGHTS), dtype=object)[rng.integers(0, 3, len(moved))]
    new_region = np.where(stay_local, region[moved], other)
    postcode[moved] = random_postcodes(rng, new_region)[0]
    region[moved] = new_region

    eth_labels = np.asarray([e[0] for e in _names.ETHNICITIES], dtype=object)
    recoded = np.flatnonzero(u[:, 8] < rates.ethnicity_change)
    ethnicity[recoded] = eth_labels[rng.integers(0, len(eth_labels), len(recoded))]

    _apply(given, u[:, 9] < rates.case_whitespace, _vary_name, rng)
    _apply(family, u[:, 10] < rates.case_whitespace, _vary_name, rng)
    _apply(postcode, u[:, 11] < rates.case_whitespace, _vary_postcode, rng)

    given[u[:, 12] < rates.missing] = None
    family[u[:, 13] < rates.missing] = None
    dob[u[:, 14] < rates.missing] = np.datetime64("NaT")
    missing_more = rng.random((n, 3)) < rates.missing
    sex[missing_more[:, 0]] = None
    postcode[missing_more[:, 1]] = None
    ethnicity[missing_more[:, 2]] = None
    return Identity(given, family, dob, sex, postcode, ethnicity, region)
