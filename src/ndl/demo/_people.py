"""The true synthetic population: households, people and their identifiers.

Everything here is the *truth* that the three organisations' records are noisy views
of. It is generated household by household so that siblings share a surname, an
address and a GP practice, and twins share a date of birth: the cases that make real
record linkage hard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ndl.demo import _names
from ndl.linkage.nhs_number import CHECK_WEIGHTS

REFERENCE_DATE = np.datetime64("2025-09-01", "D")

# Share of households that contain dependent children. Deliberately far above the
# real UK figure so that a small demo population has a usable three-way overlap.
FAMILY_HOUSEHOLD_SHARE = 0.75
TWIN_RATE = 0.03
UPN_CHECK_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"  # DfE: 0->A ... 22->Z, skipping I, O, S


@dataclass
class Population:
    """Column arrays for the true people, all the same length and index-aligned."""

    person_id: np.ndarray  # str "P0000001"
    household: np.ndarray  # int
    sex: np.ndarray  # str "M" / "F"
    date_of_birth: np.ndarray  # datetime64[D]
    given_name: np.ndarray  # str
    family_name: np.ndarray  # str
    ethnicity: np.ndarray  # str (ONS 2021 category)
    postcode: np.ndarray  # str, the home address in truth
    region: np.ndarray  # str, region of the home postcode
    ward: np.ndarray  # int index into WARD_NAMES, -1 outside Northshire
    gp_practice_code: np.ndarray  # str
    nhs_number: np.ndarray  # str

    def __len__(self) -> int:
        return len(self.person_id)


def age_in_years(dob: np.ndarray, at: np.ndarray | np.datetime64) -> np.ndarray:
    """Completed years between dob and at (both datetime64[D]), as real birthdays count."""
    by, bm, bd = date_parts(dob)
    ay, am, ad = date_parts(np.broadcast_to(np.asarray(at, dtype="datetime64[D]"), dob.shape))
    before_birthday = (am < bm) | ((am == bm) & (ad < bd))
    years: np.ndarray = ay - by - before_birthday.astype(np.int64)
    return years


def date_parts(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split datetime64[D] values into integer year, month and day arrays."""
    months = d.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (d - months.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def rank_weights(n: int, flatten: float = 4.0) -> np.ndarray:
    """Zipf-like weights for a list ordered most-common first."""
    w = 1.0 / (np.arange(n) + flatten)
    weights: np.ndarray = w / w.sum()
    return weights


def _choice(rng: np.random.Generator, pool: tuple[str, ...], size: int) -> np.ndarray:
    return np.asarray(pool, dtype=object)[
        rng.choice(len(pool), size=size, p=rank_weights(len(pool)))
    ]


def random_surnames(rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
    """One surname per entry of `groups` (name-pool keys), drawn from that group's pool."""
    out = np.empty(len(groups), dtype=object)
    for group in np.unique(groups):
        idx = np.flatnonzero(groups == group)
        if group == "british":
            w = np.asarray(_names.BRITISH_SURNAME_WEIGHTS)
            picks = rng.choice(len(w), size=len(idx), p=w / w.sum())
            out[idx] = np.asarray(_names.BRITISH_SURNAMES, dtype=object)[picks]
        else:
            out[idx] = _choice(rng, _names.OTHER_POOLS[group][2], len(idx))
    return out


def random_given_names(
    rng: np.random.Generator, groups: np.ndarray, sex: np.ndarray, birth_year: np.ndarray
) -> np.ndarray:
    """Given names matching each person's name-pool group, sex and birth cohort."""
    out = np.empty(len(groups), dtype=object)
    modern = birth_year >= 1990
    for group in np.unique(groups):
        for s in ("M", "F"):
            for is_modern in (False, True):
                idx = np.flatnonzero((groups == group) & (sex == s) & (modern == is_modern))
                if not len(idx):
                    continue
                if group != "british":
                    pool = _names.OTHER_POOLS[group][0 if s == "M" else 1]
                elif is_modern:
                    pool = _names.BRITISH_MODERN_MALE if s == "M" else _names.BRITISH_MODERN_FEMALE
                else:
                    pool = _names.BRITISH_OLDER_MALE if s == "M" else _names.BRITISH_OLDER_FEMALE
                out[idx] = _choice(rng, pool, len(idx))
    return out


def random_postcodes(
    rng: np.random.Generator, regions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Real-format postcodes within each given region; also returns each one's ward index."""
    n = len(regions)
    postcodes = np.empty(n, dtype=object)
    wards = np.full(n, -1, dtype=np.int64)
    letters = np.asarray(list(_names.POSTCODE_UNIT_LETTERS))
    sector = rng.integers(0, 10, n)
    unit = letters[rng.integers(0, len(letters), (n, 2))]
    frac = rng.random(n)
    for region, areas in _names.POSTCODE_AREAS.items():
        idx = np.flatnonzero(regions == region)
        if not len(idx):
            continue
        w = np.asarray([a[1] for a in areas])
        area_pick = rng.choice(len(areas), size=len(idx), p=w / w.sum())
        max_district = np.asarray([a[2] for a in areas])[area_pick]
        district = (frac[idx] * max_district).astype(np.int64) + 1
        postcodes[idx] = [
            f"{areas[a][0]}{d} {s}{u[0]}{u[1]}"
            for a, d, s, u in zip(area_pick, district, sector[idx], unit[idx], strict=True)
        ]
        if region == "North East":
            # A fixed arithmetic map so each district always falls in the same ward.
            wards[idx] = (area_pick * 37 + district * 7) % len(_names.WARD_NAMES)
    return postcodes, wards


def nhs_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct valid NHS numbers in the 999 test range, vectorised for large populations."""
    weights = np.asarray(CHECK_WEIGHTS)
    found: list[np.ndarray] = []
    seen: set[str] = set()
    total = 0
    while total < n:
        batch = int((n - total) * 1.15) + 16  # about 1 in 11 draws has no valid check digit
        digits = rng.integers(0, 10, (batch, 9))
        digits[:, :3] = 9  # 999 is reserved for testing: never a real person's number
        check = 11 - (digits @ weights) % 11
        check[check == 11] = 0
        digits = np.column_stack([digits[check != 10], check[check != 10]])
        as_str = ["".join(map(str, row)) for row in digits.tolist()]
        fresh = []
        for s in as_str:
            if s not in seen:
                seen.add(s)
                fresh.append(s)
        found.append(np.asarray(fresh, dtype=object))
        total += len(fresh)
    return np.concatenate(found)[:n]


def upn_check_letter(digits12: str) -> str:
    """DfE UPN check letter: sum of digit x position (positions 2-13) modulo 23."""
    total = sum(int(d) * pos for pos, d in enumerate(digits12, start=2))
    return UPN_CHECK_LETTERS[total % 23]


def unique_pupil_numbers(
    rng: np.random.Generator, regions: np.ndarray, dob: np.ndarray
) -> np.ndarray:
    """Permanent UPNs: check letter + LA(3) + establishment(4) + year issued(2) + serial(3)."""
    n = len(regions)
    year, month, _ = date_parts(dob)
    cohort = year - (month < 9)  # academic year the child was born in
    issued = (cohort + 4) % 100  # UPNs are issued on entry to reception
    la = np.asarray([_names.UPN_LA_CODE.get(r, "929") for r in regions], dtype=object)
    establishment = rng.integers(2000, 2400, n)  # ~400 primary schools per LA
    out = np.empty(n, dtype=object)
    seen: set[str] = set()
    pending = np.arange(n)
    while len(pending):
        serial = rng.integers(0, 1000, len(pending))
        retry = []
        for i, s in zip(pending, serial, strict=True):
            digits = f"{la[i]}{establishment[i]:04d}{issued[i]:02d}{s:03d}"
            if digits in seen:
                retry.append(i)
                continue
            seen.add(digits)
            out[i] = upn_check_letter(digits) + digits
        pending = np.asarray(retry, dtype=np.int64)
    return out


def build_population(rng: np.random.Generator, people: int) -> Population:
    """Generate `people` true persons grouped into households."""
    # Over-generate households, then cut the person list to exactly `people`.
    h = max(8, int(people / 2.3) + 8)
    family = rng.random(h) < FAMILY_HOUSEHOLD_SHARE
    n_adults = np.where(family, 1 + (rng.random(h) < 0.7), 1 + (rng.random(h) < 0.55))
    n_children = np.where(family, rng.choice([1, 2, 3, 4], size=h, p=[0.3, 0.4, 0.2, 0.1]), 0)
    size = n_adults + n_children
    deficit = max(0, people - int(size.sum()))  # only for tiny populations: add single adults
    if deficit:
        family = np.concatenate([family, np.zeros(deficit, dtype=bool)])
        n_adults = np.concatenate([n_adults, np.ones(deficit, dtype=n_adults.dtype)])
        n_children = np.concatenate([n_children, np.zeros(deficit, dtype=n_children.dtype)])
        size = n_adults + n_children
        h += deficit

    region_names = np.asarray(list(_names.REGION_WEIGHTS), dtype=object)
    rw = np.asarray(list(_names.REGION_WEIGHTS.values()))
    hh_region = region_names[rng.choice(len(rw), size=h, p=rw / rw.sum())]
    hh_postcode, hh_ward = random_postcodes(rng, hh_region)
    eth_labels = np.asarray([e[0] for e in _names.ETHNICITIES], dtype=object)
    eth_groups = np.asarray([e[2] for e in _names.ETHNICITIES], dtype=object)
    ew = np.asarray([e[1] for e in _names.ETHNICITIES])
    hh_eth = rng.choice(len(ew), size=h, p=ew / ew.sum())
    hh_surname = random_surnames(rng, eth_groups[hh_eth])
    # Each region has ~40 practices; a household registers at one.
    gp_serial = rng.integers(1, 41, h)
    hh_gp = np.asarray(
        [
            f"{_names.GP_PREFIX[r]}{(s * 97) % 9 + 1}{s:03d}"
            for r, s in zip(hh_region, gp_serial, strict=True)
        ],
        dtype=object,
    )
    parent_age = 20 + rng.beta(2.2, 2.5, h) * 38  # first adult of a family household
    solo_age = 18 + rng.beta(1.3, 1.4, h) * 72  # first adult of an adult-only household

    hh = np.repeat(np.arange(h), size)[:people]
    start = np.repeat(np.cumsum(size) - size, size)[:people]
    slot = np.arange(people) - start  # 0, 1 = adults; then children
    n_ad = n_adults[hh]
    is_adult = slot < n_ad
    child_rank = slot - n_ad  # 0 for eldest child

    u = rng.random((people, 6))
    first_age = np.where(family[hh], parent_age[hh], solo_age[hh])
    age = np.where(slot == 0, first_age, np.clip(first_age + rng.normal(0, 4, people), 18, 95))
    oldest_child_max = np.clip(first_age - 17, 0.2, 19)
    age = np.where(is_adult, age, u[:, 0] * oldest_child_max)
    dob = REFERENCE_DATE - np.ceil(age * 365.25).astype("timedelta64[D]") - np.timedelta64(1, "D")

    # Twins: the second child copies the first child's birth date.
    twin = (~is_adult) & (child_rank == 1) & (u[:, 1] < TWIN_RATE)
    dob[twin] = dob[np.flatnonzero(twin) - 1]

    # Two-adult households are mostly one man and one woman.
    sex = np.where(u[:, 2] < 0.49, "M", "F").astype(object)
    second_adult = is_adult & (slot == 1)
    opposite = np.where(sex[np.flatnonzero(second_adult) - 1] == "M", "F", "M")
    sex[second_adult] = np.where(u[second_adult, 3] < 0.92, opposite, sex[second_adult])

    eth_idx = hh_eth[hh].copy()
    redraw = u[:, 4] < 0.05  # mixed families: not everyone shares the household's group
    eth_idx[redraw] = rng.choice(len(ew), size=int(redraw.sum()), p=ew / ew.sum())
    groups = eth_groups[eth_idx]

    family_name = hh_surname[hh].copy()
    # Unmarried partners and children from earlier relationships keep their own surnames.
    own = (second_adult & (u[:, 5] < 0.3)) | ((~is_adult) & (u[:, 5] < 0.1))
    family_name[own] = random_surnames(rng, groups[own])
    birth_year = date_parts(dob)[0]
    given = random_given_names(rng, groups, sex, birth_year)
    # Twins get different given names where the pool allows it.
    clash = np.flatnonzero(twin & (given == np.roll(given, 1)))
    given[clash] = random_given_names(rng, groups[clash], sex[clash], birth_year[clash])

    return Population(
        person_id=np.asarray([f"P{i:07d}" for i in range(1, people + 1)], dtype=object),
        household=hh,
        sex=sex,
        date_of_birth=dob,
        given_name=given,
        family_name=family_name,
        ethnicity=eth_labels[eth_idx],
        postcode=hh_postcode[hh],
        region=hh_region[hh],
        ward=hh_ward[hh],
        gp_practice_code=hh_gp[hh],
        nhs_number=nhs_numbers(rng, people),
    )
