"""Deterministic synthetic UK-shaped data for three demo organisations.

One true population is generated, then each organisation gets its own noisy view of
the people it would know about: an NHS trust (everyone, plus A&E attendances), the
Department for Education (school-age children) and a county council (children known
to social care). The mapping from records to true people goes only to
``<root>/ground-truth/truth.parquet`` (with the true attributes of each person in
``people.parquet`` beside it), outside every organisation's folder, so record linkage
can be scored later without any dataset revealing the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ndl.demo import _catalogue as cat
from ndl.demo import _names
from ndl.demo._noise import Identity, NoiseRates, noisy_identity
from ndl.demo._people import REFERENCE_DATE, Population, age_in_years, build_population, date_parts
from ndl.demo._people import unique_pupil_numbers as _upns

__all__ = ["ORGS", "REFERENCE_DATE", "DemoData", "NoiseRates", "OrgSpec", "generate_demo_data"]


@dataclass(frozen=True)
class OrgSpec:
    slug: str
    name: str
    kind: str  # "nhs" | "education" | "local_authority"


ORGS: list[OrgSpec] = [
    OrgSpec("nhs-trust", "Northshire NHS Foundation Trust", "nhs"),
    OrgSpec("dfe", "Department for Education", "education"),
    OrgSpec("local-authority", "Northshire County Council", "local_authority"),
]


@dataclass(frozen=True)
class DemoData:
    root: Path
    orgs: list[OrgSpec]
    datasets: dict[str, list[Path]]  # org slug -> dataset directories
    truth_path: Path


# Coverage of each source, as fractions of the eligible true people.
DFE_COVERAGE = 0.95  # the rest are home-educated or in independent schools
LA_COVERAGE = 0.45  # of resident children: far above reality, for a usable overlap
AE_WINDOW = (np.datetime64("2022-04-01"), np.datetime64("2025-08-31"))
LA_WINDOW = (np.datetime64("2021-04-01"), np.datetime64("2025-08-31"))
RESULT_YEARS = range(2021, 2025)  # academic years 2021/22 .. 2024/25

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
}

_ARRIVAL_MODES = (
    "Ambulance",
    "Own transport",
    "Walk-in",
    "Public transport",
    "Police",
    "Air ambulance",
)
_ARRIVAL_WEIGHTS = (0.28, 0.50, 0.12, 0.07, 0.02, 0.01)
_COMPLAINTS = (
    "Chest pain",
    "Shortness of breath",
    "Abdominal pain",
    "Fall",
    "Head injury",
    "Limb injury",
    "Fever",
    "Rash",
    "Mental health crisis",
    "Overdose",
    "Allergic reaction",
    "Headache",
    "Back pain",
    "Seizure",
    "Laceration",
)
# Weights by age group: children (<16), adults (16-64), older people (65+).
_COMPLAINT_WEIGHTS = (
    (1, 8, 8, 6, 12, 18, 16, 8, 3, 2, 5, 4, 1, 4, 6),
    (10, 8, 12, 5, 6, 14, 4, 2, 8, 5, 3, 6, 8, 2, 7),
    (16, 16, 9, 22, 6, 8, 4, 1, 2, 1, 2, 3, 5, 2, 3),
)
_DISPOSALS = (
    "Discharged",
    "Admitted",
    "Referred to GP",
    "Referred to outpatient clinic",
    "Transferred",
    "Left before treatment",
    "Died",
)
# Rows are acuity 1..5: sicker patients are admitted far more often.
_DISPOSAL_WEIGHTS = (
    (15, 68, 0, 2, 10, 0, 5),
    (40, 45, 2, 8, 4, 1, 0),
    (55, 20, 10, 10, 1, 4, 0),
    (65, 5, 15, 5, 0, 10, 0),
    (70, 0, 15, 0, 0, 15, 0),
)
_ACUITY_AMBULANCE = (0.05, 0.30, 0.45, 0.15, 0.05)
_ACUITY_OTHER = (0.01, 0.08, 0.40, 0.38, 0.13)
_KS2_SUBJECTS = ("Reading", "Mathematics", "Grammar, punctuation and spelling")
_KS4_SUBJECTS = (
    "English Language",
    "English Literature",
    "Mathematics",
    "Combined Science",
    "History",
)
_REFERRAL_SOURCES = (
    "Police",
    "Schools",
    "Health services",
    "Local authority services",
    "Individual",
    "Housing",
    "Anonymous",
    "Other",
)
_REFERRAL_WEIGHTS = (29, 20, 14, 12, 7, 3, 2, 13)
_CATEGORIES = ("Child in need", "Child protection plan", "Looked after")
_CATEGORY_WEIGHTS = (0.65, 0.20, 0.15)
_AGE_BANDS = (
    (0, "0-4"),
    (5, "5-10"),
    (11, "11-15"),
    (16, "16-17"),
    (18, "18-24"),
    (25, "25-44"),
    (45, "45-64"),
    (65, "65-79"),
    (80, "80+"),
)

Columns = dict[str, np.ndarray]


def _pick(
    rng: np.random.Generator, options: tuple[str, ...], weights: tuple[float, ...], size: int
) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return np.asarray(options, dtype=object)[rng.choice(len(options), size=size, p=w / w.sum())]


def _dates_between(rng: np.random.Generator, lo: np.ndarray, hi: np.datetime64) -> np.ndarray:
    span = (hi - lo).astype(np.int64) + 1
    dates: np.ndarray = lo + (rng.random(len(lo)) * span).astype("timedelta64[D]")
    return dates


def _later_of(a: np.datetime64, b: np.ndarray) -> np.ndarray:
    later: np.ndarray = np.maximum(np.asarray(a, dtype="datetime64[D]"), b)
    return later


def _identity_columns(ident: Identity) -> Columns:
    return {
        k: getattr(ident, k)
        for k in ("given_name", "family_name", "date_of_birth", "sex", "postcode", "ethnicity")
    }


# --- NHS trust -------------------------------------------------------------------------


def _nhs_datasets(
    rngs: dict[str, np.random.Generator], pop: Population, rates: NoiseRates
) -> tuple[Columns, np.ndarray, Columns, np.ndarray]:
    rng = rngs["nhs"]
    idx = rng.permutation(len(pop))  # row order must not follow person ids
    ident = noisy_identity(rng, pop, idx, rates)
    patients = {
        "nhs_number": pop.nhs_number[idx],
        **_identity_columns(ident),
        "gp_practice_code": pop.gp_practice_code[idx],
    }

    rng = rngs["ae"]
    age_now = age_in_years(pop.date_of_birth[idx], REFERENCE_DATE)
    p_any = np.select([age_now < 5, age_now < 65, age_now < 80], [0.55, 0.35, 0.5], 0.65)
    counts = (rng.random(len(idx)) < p_any) * rng.geometric(0.5, len(idx))
    row = np.repeat(np.arange(len(idx)), counts)
    person = idx[row]
    dob = pop.date_of_birth[person]
    arrival = _dates_between(rng, _later_of(AE_WINDOW[0], dob), AE_WINDOW[1])
    order = np.lexsort((rng.random(len(row)), arrival))
    row, person, dob, arrival = row[order], person[order], dob[order], arrival[order]
    n = len(row)
    age = age_in_years(dob, arrival)
    mode = _pick(rng, _ARRIVAL_MODES, _ARRIVAL_WEIGHTS, n)
    complaint = np.empty(n, dtype=object)
    group = np.select([age < 16, age < 65], [0, 1], 2)
    for g, complaint_weights in enumerate(_COMPLAINT_WEIGHTS):
        sel = np.flatnonzero(group == g)
        complaint[sel] = _pick(rng, _COMPLAINTS, complaint_weights, len(sel))
    by_ambulance = np.isin(mode, ["Ambulance", "Air ambulance"])
    acuity = np.where(
        by_ambulance,
        rng.choice(5, size=n, p=_ACUITY_AMBULANCE) + 1,
        rng.choice(5, size=n, p=_ACUITY_OTHER) + 1,
    ).astype(np.int64)
    disposal = np.empty(n, dtype=object)
    for a, disposal_weights in enumerate(_DISPOSAL_WEIGHTS, start=1):
        sel = np.flatnonzero(acuity == a)
        disposal[sel] = _pick(rng, _DISPOSALS, disposal_weights, len(sel))
    nhs = pop.nhs_number[person].copy()
    nhs[rng.random(n) < rates.ae_nhs_number_missing] = None
    attendances = {
        "attendance_id": np.asarray([f"AE{i:08d}" for i in range(1, n + 1)], dtype=object),
        "nhs_number": nhs,
        "arrival_date": arrival,
        "arrival_mode": mode,
        "chief_complaint": complaint,
        "acuity": acuity,
        "disposal": disposal,
        "age_at_arrival": age.astype(np.int64),
        "region": ident.region[row],
    }
    return patients, idx, attendances, person


# --- Department for Education --------------------------------------------------------


def _dfe_datasets(
    rngs: dict[str, np.random.Generator], pop: Population, la_child: np.ndarray, rates: NoiseRates
) -> tuple[Columns, np.ndarray, Columns, np.ndarray]:
    rng = rngs["dfe"]
    age = age_in_years(pop.date_of_birth, REFERENCE_DATE)
    eligible = (age >= 4) & (age <= 18) & (rng.random(len(pop)) < DFE_COVERAGE)
    idx = rng.permutation(np.flatnonzero(eligible))
    n = len(idx)
    ident = noisy_identity(rng, pop, idx, rates)
    upn = _upns(rng, pop.region[idx], pop.date_of_birth[idx])
    known_to_la = la_child[idx]
    # Children known to social care are far likelier to be on FSM or to have SEN.
    fsm = rng.random(n) < np.where(known_to_la, 0.5, 0.2)
    sen_u = rng.random(n)
    sen_cut1 = np.where(known_to_la, 0.55, 0.83)
    sen_cut2 = np.where(known_to_la, 0.87, 0.96)
    sen = np.where(sen_u < sen_cut1, "None", np.where(sen_u < sen_cut2, "SEN support", "EHC plan"))
    pupils = {
        "upn": upn,
        **_identity_columns(ident),
        "fsm_eligible": fsm,
        "sen_status": sen.astype(object),
    }

    # Latent attainment, depressed by the same disadvantages the pupil record shows.
    ability = (
        rng.normal(0, 1, n)
        - 0.35 * fsm
        - 0.5 * (sen == "SEN support")
        - 1.2 * (sen == "EHC plan")
        - 0.25 * known_to_la
    )
    year, month, _ = date_parts(pop.date_of_birth[idx])
    cohort = year - (month < 9)
    rows: list[tuple[np.ndarray, str, str, int]] = []
    for offset, stage_name, subjects in ((11, "KS2", _KS2_SUBJECTS), (16, "KS4", _KS4_SUBJECTS)):
        for y in RESULT_YEARS:
            who = np.flatnonzero(cohort + offset == y)
            rows.extend((who, stage_name, subject, y) for subject in subjects)
    pupil = np.concatenate([r[0] for r in rows])
    m = len(pupil)
    stage = np.concatenate([np.full(len(r[0]), r[1], dtype=object) for r in rows])
    subject = np.concatenate([np.full(len(r[0]), r[2], dtype=object) for r in rows])
    ay = np.concatenate(
        [np.full(len(r[0]), f"{r[3]}/{(r[3] + 1) % 100:02d}", dtype=object) for r in rows]
    )
    z = ability[pupil] + rng.normal(0, 0.45, m)
    is_ks2 = np.asarray(stage == "KS2", dtype=bool)
    score = np.clip(np.round(104 + 6.5 * z), 80, 120).astype(np.int64)
    grade_num = np.clip(np.round(4.7 + 1.9 * z), 0, 9).astype(np.int64)
    grade = np.where(grade_num == 0, "U", grade_num.astype(str)).astype(object)
    absent = rng.random(m) < 0.02
    grade[is_ks2 | absent] = None
    order = rng.permutation(m)
    attainment = {
        "upn": upn[pupil],
        "academic_year": ay,
        "key_stage": stage,
        "subject": subject,
        "scaled_score": np.ma.masked_array(score, mask=~is_ks2 | absent),
        "grade": grade,
        "region": ident.region[pupil],
    }
    attainment = {k: v[order] for k, v in attainment.items()}
    return pupils, idx, attainment, idx[pupil[order]]


# --- Local authority ------------------------------------------------------------------


def _select_la_children(rng: np.random.Generator, pop: Population) -> np.ndarray:
    age = age_in_years(pop.date_of_birth, REFERENCE_DATE)
    resident_child = (age <= 17) & (pop.region == "North East")
    # Referrals concentrate in school-age children; under-4s are half as likely.
    p = np.where(age < 4, LA_COVERAGE / 2, LA_COVERAGE)
    chosen: np.ndarray = resident_child & (rng.random(len(pop)) < p)
    return chosen


def _la_datasets(
    rngs: dict[str, np.random.Generator], pop: Population, la_child: np.ndarray, rates: NoiseRates
) -> tuple[Columns, np.ndarray, Columns]:
    rng = rngs["la"]
    base = np.flatnonzero(la_child)
    dupes = base[rng.random(len(base)) < rates.la_duplicate]
    idx = rng.permutation(np.concatenate([base, dupes]))
    n = len(idx)
    ident = noisy_identity(rng, pop, idx, rates)
    nhs = pop.nhs_number[idx].copy()
    nhs[rng.random(n) < rates.la_nhs_number_missing] = None
    # Random, not sequential, ids so the id carries no hint of row or person order.
    child_id = np.asarray([f"LA-{i:06d}" for i in rng.choice(999_999, n, replace=False) + 1])
    csc = {
        "child_id": child_id.astype(object),
        **_identity_columns(ident),
        "nhs_number": nhs,
        "referral_date": _dates_between(
            rng, _later_of(LA_WINDOW[0], pop.date_of_birth[idx]), LA_WINDOW[1]
        ),
        "referral_source": _pick(rng, _REFERRAL_SOURCES, _REFERRAL_WEIGHTS, n),
        "category": _pick(rng, _CATEGORIES, _CATEGORY_WEIGHTS, n),
        "ethnicity": ident.ethnicity,
        "region": ident.region,
    }
    col_order = [c.name for c in cat.CHILDRENS_SOCIAL_CARE.columns]
    csc = {k: csc[k] for k in col_order}

    # Open aggregate: true residents per ward, year and age band (no person-level data).
    in_ward = pop.ward >= 0
    ward, dob = pop.ward[in_ward], pop.date_of_birth[in_ward]
    band_starts = np.asarray([b[0] for b in _AGE_BANDS])
    out: dict[str, list[object]] = {
        "ward_code": [],
        "ward_name": [],
        "year": [],
        "age_band": [],
        "population": [],
    }
    for y in range(2021, 2026):
        at = np.datetime64(f"{y}-06-30")
        alive = dob <= at
        band = np.searchsorted(band_starts, age_in_years(dob[alive], at), side="right") - 1
        counts = np.zeros((len(_names.WARD_NAMES), len(_AGE_BANDS)), dtype=np.int64)
        np.add.at(counts, (ward[alive], band), 1)
        # Statistical disclosure control: round to the nearest 5 like published tables.
        rounded = (np.floor(counts / 5 + 0.5) * 5).astype(np.int64)
        for w, name in enumerate(_names.WARD_NAMES):
            for b, (_, label) in enumerate(_AGE_BANDS):
                out["ward_code"].append(f"E0599{w + 1:04d}")
                out["ward_name"].append(name)
                out["year"].append(y)
                out["age_band"].append(label)
                out["population"].append(int(rounded[w, b]))
    wards = {
        k: np.asarray(v, dtype=np.int64 if k in ("year", "population") else object)
        for k, v in out.items()
    }
    return csc, idx, wards


# --- Writing ---------------------------------------------------------------------------


def _to_arrow(values: np.ndarray, type_name: str) -> pa.Array:
    arrow_type = _ARROW_TYPES[type_name]
    if type_name == "date":
        values = np.asarray(values, dtype="datetime64[D]")
        return pa.array(values, type=arrow_type, mask=np.isnat(values))
    if isinstance(values, np.ma.MaskedArray):
        return pa.array(values.data, type=arrow_type, mask=np.ma.getmaskarray(values))
    if type_name == "string":
        return pa.array(values.tolist(), type=arrow_type)
    return pa.array(values, type=arrow_type)


def _write_dataset(org_dir: Path, spec: cat.DatasetSpec, publisher: str, cols: Columns) -> Path:
    names = [c.name for c in spec.columns]
    if sorted(names) != sorted(cols):
        raise RuntimeError(f"{spec.name}: columns {sorted(cols)} != spec {sorted(names)}")
    schema = pa.schema([pa.field(c.name, _ARROW_TYPES[c.type]) for c in spec.columns])
    table = pa.Table.from_arrays(
        [_to_arrow(cols[c.name], c.type) for c in spec.columns], schema=schema
    )
    ds_dir = org_dir / "datasets" / spec.name
    ds_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, ds_dir / "data.parquet", compression="zstd")
    meta = spec.metadata(publisher, table.num_rows)
    (ds_dir / "metadata.json").write_text(
        json.dumps(meta, indent=2, sort_keys=False, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return ds_dir


def _write_people(pop: Population, path: Path) -> None:
    """The true attributes of every person, for diagnosing linkage errors (not a dataset)."""
    table = pa.table(
        {
            "person_id": pa.array(pop.person_id.tolist(), type=pa.string()),
            "household_id": pa.array(pop.household, type=pa.int64()),
            "given_name": pa.array(pop.given_name.tolist(), type=pa.string()),
            "family_name": pa.array(pop.family_name.tolist(), type=pa.string()),
            "date_of_birth": pa.array(pop.date_of_birth, type=pa.date32()),
            "sex": pa.array(pop.sex.tolist(), type=pa.string()),
            "postcode": pa.array(pop.postcode.tolist(), type=pa.string()),
            "region": pa.array(pop.region.tolist(), type=pa.string()),
            "ethnicity": pa.array(pop.ethnicity.tolist(), type=pa.string()),
            "nhs_number": pa.array(pop.nhs_number.tolist(), type=pa.string()),
        }
    )
    pq.write_table(table, path, compression="zstd")


def generate_demo_data(
    root: Path, people: int = 2000, seed: int = 7, *, noise: NoiseRates | None = None
) -> DemoData:
    """Generate the three organisations' datasets and the linkage ground truth under root.

    The same (people, seed, noise) always yields identical files. Existing files at the
    same paths are overwritten; nothing else under root is touched.
    """
    if people < 1:
        raise ValueError("people must be at least 1")
    rates = noise or NoiseRates()
    root = Path(root)
    # Independent streams per stage so e.g. changing a noise rate leaves the people alone.
    streams = np.random.SeedSequence(seed).spawn(6)
    rngs = {
        name: np.random.default_rng(s)
        for name, s in zip(("people", "nhs", "ae", "dfe", "la_pick", "la"), streams, strict=True)
    }

    pop = build_population(rngs["people"], people)
    la_child = _select_la_children(rngs["la_pick"], pop)
    patients, patients_idx, attendances, ae_person = _nhs_datasets(rngs, pop, rates)
    pupils, pupils_idx, attainment, attainment_person = _dfe_datasets(rngs, pop, la_child, rates)
    csc, csc_idx, wards = _la_datasets(rngs, pop, la_child, rates)

    by_org = {o.slug: o for o in ORGS}
    plan = [
        ("nhs-trust", cat.PATIENTS, patients, "nhs_number", patients_idx),
        ("nhs-trust", cat.AE_ATTENDANCES, attendances, "attendance_id", ae_person),
        ("dfe", cat.PUPILS, pupils, "upn", pupils_idx),
        ("dfe", cat.ATTAINMENT, attainment, "upn", attainment_person),
        ("local-authority", cat.CHILDRENS_SOCIAL_CARE, csc, "child_id", csc_idx),
        ("local-authority", cat.WARD_POPULATION, wards, None, None),
    ]
    datasets: dict[str, list[Path]] = {o.slug: [] for o in ORGS}
    truth: dict[str, list[np.ndarray]] = {
        k: [] for k in ("org", "dataset", "key_column", "key_value", "person_id")
    }
    for slug, spec, cols, key, person_idx in plan:
        datasets[slug].append(_write_dataset(root / slug, spec, by_org[slug].name, cols))
        if key is None or person_idx is None:
            continue
        keys = np.asarray(cols[key], dtype=object)
        # Keys repeat in attainment (one row per subject); truth needs each key once.
        _, first = np.unique(keys.astype(str), return_index=True)
        first.sort()
        m = len(first)
        truth["org"].append(np.full(m, slug, dtype=object))
        truth["dataset"].append(np.full(m, spec.name, dtype=object))
        truth["key_column"].append(np.full(m, key, dtype=object))
        truth["key_value"].append(keys[first])
        truth["person_id"].append(pop.person_id[person_idx[first]])

    truth_dir = root / "ground-truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    truth_path = truth_dir / "truth.parquet"
    truth_table = pa.table(
        {k: pa.array(np.concatenate(v).tolist(), type=pa.string()) for k, v in truth.items()}
    )
    pq.write_table(truth_table, truth_path, compression="zstd")
    _write_people(pop, truth_dir / "people.parquet")
    return DemoData(root=root, orgs=list(ORGS), datasets=datasets, truth_path=truth_path)
