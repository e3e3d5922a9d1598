"""Catalogue metadata (metadata.json content) for each synthetic demo dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ColumnType = Literal["string", "integer", "float", "boolean", "date"]
Sensitivity = Literal["direct_identifier", "quasi_identifier", "sensitive", "none"]
JoinKey = Literal["nhs_number", "upn", "postcode", "date_of_birth", "name", "local_id"]
Tier = Literal["open", "safeguarded", "controlled"]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: ColumnType
    description: str
    sensitivity: Sensitivity
    join_key: JoinKey | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "description": self.description,
            "sensitivity": self.sensitivity,
            "join_key": self.join_key,
            **COLUMN_EXTRAS.get(self.name, {}),
        }


# Public facts about columns that private (DP) queries rely on: code lists make a column a
# public group key (every group is released, so none leaks by existing), bounds clamp sums.
ENGLISH_REGIONS = ("North East", "North West", "Yorkshire and The Humber", "East Midlands",
                   "West Midlands", "East of England", "London", "South East", "South West")
COLUMN_EXTRAS: dict[str, dict[str, Any]] = {
    "region": {"code_list": [{"code": r, "label": r} for r in ENGLISH_REGIONS]},
    "sex": {"code_list": [{"code": "M", "label": "Male"}, {"code": "F", "label": "Female"}]},
    "acuity": {"minimum": 1, "maximum": 5, "code_list": [
        {"code": str(i), "label": label} for i, label in enumerate(
            ("immediate", "very urgent", "urgent", "standard", "non-urgent"), start=1)]},
    "age_at_arrival": {"minimum": 0, "maximum": 110, "unit": "years"},
    "scaled_score": {"minimum": 80, "maximum": 120, "unit": "scaled score points"},
    "key_stage": {"code_list": [{"code": "KS2", "label": "Key stage 2"},
                                {"code": "KS4", "label": "Key stage 4"}]},
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    description: str
    tier: Tier
    keywords: tuple[str, ...]
    columns: tuple[ColumnSpec, ...]

    def metadata(self, publisher: str, row_count: int) -> dict[str, Any]:
        base = {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "publisher": publisher,
            "tier": self.tier,
            "keywords": list(self.keywords),
            "row_count": row_count,
            "columns": [c.to_json() for c in self.columns],
        }
        return {**base, **DCAT_EXTRAS.get(self.name, {})}


_SYNTHETIC = (
    " All records are synthetic, generated for demonstration; they describe no real person."
)


def _given(source: str) -> ColumnSpec:
    return ColumnSpec(
        "given_name", "string", f"First name as recorded by {source}.", "direct_identifier", "name"
    )


def _family(source: str) -> ColumnSpec:
    return ColumnSpec(
        "family_name", "string", f"Surname as recorded by {source}.", "direct_identifier", "name"
    )


_DOB = ColumnSpec("date_of_birth", "date", "Date of birth.", "quasi_identifier", "date_of_birth")
_SEX = ColumnSpec("sex", "string", "Sex: M or F.", "quasi_identifier")
_POSTCODE = ColumnSpec(
    "postcode", "string", "Postcode of the recorded home address.", "quasi_identifier", "postcode"
)
_ETHNICITY = ColumnSpec(
    "ethnicity", "string", "Ethnic group (ONS 2021 classification).", "sensitive"
)
_REGION = ColumnSpec(
    "region", "string", "English region of residence (e.g. North East).", "quasi_identifier"
)
_NHS_NUMBER = ColumnSpec(
    "nhs_number",
    "string",
    "NHS number (10 digits, modulus 11 checked).",
    "direct_identifier",
    "nhs_number",
)

PATIENTS = DatasetSpec(
    name="patients",
    title="Registered patients",
    description=(
        "Demographic details of patients registered with Northshire NHS Foundation Trust, "
        "one row per patient keyed by NHS number, with registered GP practice." + _SYNTHETIC
    ),
    tier="controlled",
    keywords=("patients", "demographics", "NHS number", "hospital", "health"),
    columns=(
        _NHS_NUMBER,
        _given("the trust"),
        _family("the trust"),
        _DOB,
        _SEX,
        _POSTCODE,
        _ETHNICITY,
        ColumnSpec(
            "gp_practice_code",
            "string",
            "ODS code of the registered GP practice.",
            "quasi_identifier",
        ),
    ),
)

AE_ATTENDANCES = DatasetSpec(
    name="ae-attendances",
    title="A&E attendances",
    description=(
        "Accident and emergency (A&E) attendances at Northshire NHS Foundation Trust "
        "emergency departments since April 2022: arrival, presenting complaint, triage "
        "acuity and disposal, one row per attendance." + _SYNTHETIC
    ),
    tier="safeguarded",
    keywords=("A&E", "emergency care", "hospital", "urgent care", "emergency department"),
    columns=(
        ColumnSpec("attendance_id", "string", "Trust identifier of the attendance.", "none"),
        ColumnSpec(
            "nhs_number",
            "string",
            "NHS number of the patient; null if unidentified.",
            "direct_identifier",
            "nhs_number",
        ),
        ColumnSpec(
            "arrival_date", "date", "Date of arrival at the department.", "quasi_identifier"
        ),
        ColumnSpec("arrival_mode", "string", "How the patient arrived.", "none"),
        ColumnSpec("chief_complaint", "string", "Presenting complaint at triage.", "sensitive"),
        ColumnSpec(
            "acuity", "integer", "Triage acuity, 1 (immediate) to 5 (non-urgent).", "sensitive"
        ),
        ColumnSpec("disposal", "string", "Outcome of the attendance.", "sensitive"),
        ColumnSpec(
            "age_at_arrival", "integer", "Age in completed years on arrival.", "quasi_identifier"
        ),
        _REGION,
    ),
)

PUPILS = DatasetSpec(
    name="pupils",
    title="Pupil records",
    description=(
        "Pupils on roll at state schools, from the school census: identity, free school "
        "meals eligibility and special educational needs status, one row per pupil keyed "
        "by Unique Pupil Number." + _SYNTHETIC
    ),
    tier="controlled",
    keywords=("pupils", "school census", "education", "UPN", "free school meals", "SEN"),
    columns=(
        ColumnSpec(
            "upn",
            "string",
            "Unique Pupil Number: check letter and 12 digits.",
            "direct_identifier",
            "upn",
        ),
        _given("the school"),
        _family("the school"),
        _DOB,
        _SEX,
        _POSTCODE,
        _ETHNICITY,
        ColumnSpec("fsm_eligible", "boolean", "Eligible for free school meals.", "sensitive"),
        ColumnSpec(
            "sen_status",
            "string",
            "Special educational needs: None, SEN support or EHC plan.",
            "sensitive",
        ),
    ),
)

ATTAINMENT = DatasetSpec(
    name="attainment",
    title="Key stage 2 and 4 attainment",
    description=(
        "Results of pupils at key stage 2 (scaled scores, 80-120) and key stage 4 (GCSE "
        "grades 9-1, U) for academic years 2021/22 to 2024/25, one row per pupil, year "
        "and subject." + _SYNTHETIC
    ),
    tier="safeguarded",
    keywords=("attainment", "exam results", "key stage 2", "GCSE", "education", "schools"),
    columns=(
        ColumnSpec(
            "upn", "string", "Unique Pupil Number of the pupil.", "direct_identifier", "upn"
        ),
        ColumnSpec("academic_year", "string", "Academic year, e.g. 2023/24.", "none"),
        ColumnSpec("key_stage", "string", "KS2 or KS4.", "none"),
        ColumnSpec("subject", "string", "Subject assessed.", "none"),
        ColumnSpec(
            "scaled_score",
            "integer",
            "KS2 scaled score (100 = expected standard); null for KS4 or if absent.",
            "none",
        ),
        ColumnSpec("grade", "string", "KS4 GCSE grade 9-1 or U; null for KS2.", "none"),
        _REGION,
    ),
)

CHILDRENS_SOCIAL_CARE = DatasetSpec(
    name="childrens-social-care",
    title="Children's social care referrals",
    description=(
        "Children referred to Northshire County Council children's social care since April "
        "2021, with the referral source and the child's most serious category (child in "
        "need, child protection plan, looked after). The NHS number is often not recorded, "
        "and a few children appear twice under different local ids." + _SYNTHETIC
    ),
    tier="controlled",
    keywords=(
        "children's social care",
        "child in need",
        "child protection",
        "looked after",
        "safeguarding",
        "local authority",
    ),
    columns=(
        ColumnSpec(
            "child_id",
            "string",
            "Council case-management identifier of the child.",
            "direct_identifier",
            "local_id",
        ),
        _given("the council"),
        _family("the council"),
        _DOB,
        _SEX,
        _POSTCODE,
        ColumnSpec(
            "nhs_number",
            "string",
            "NHS number where known (often missing).",
            "direct_identifier",
            "nhs_number",
        ),
        ColumnSpec("referral_date", "date", "Date the referral was received.", "quasi_identifier"),
        ColumnSpec("referral_source", "string", "Who made the referral.", "sensitive"),
        ColumnSpec(
            "category",
            "string",
            "Child in need, Child protection plan or Looked after.",
            "sensitive",
        ),
        _ETHNICITY,
        _REGION,
    ),
)

WARD_POPULATION = DatasetSpec(
    name="ward-population",
    title="Ward population estimates",
    description=(
        "Mid-year resident population of Northshire electoral wards by age band, 2021 to "
        "2025, rounded to the nearest 5. Aggregate counts only: no person-level data." + _SYNTHETIC
    ),
    tier="open",
    keywords=("population", "wards", "census", "age", "demography", "open data"),
    columns=(
        ColumnSpec("ward_code", "string", "Ward code (E05 series).", "none"),
        ColumnSpec("ward_name", "string", "Ward name.", "none"),
        ColumnSpec("year", "integer", "Year of the mid-year (30 June) estimate.", "none"),
        ColumnSpec("age_band", "string", "Age band in completed years.", "none"),
        ColumnSpec("population", "integer", "Resident population, rounded to nearest 5.", "none"),
    ),
)


# Catalogue fields beyond the schema (DCAT-3 core, HDR UK access fields, ndl fields), so the
# demo catalogue shows what a well-described dataset looks like.
_COVERAGE = {"spatial": "Northshire (North East England)", "update_frequency": "monthly",
             "issued": "2024-04-01", "modified": "2025-09-01", "last_verified": "2025-09-15"}
_ACCESS = {
    "controlled": {"route": "Apply through the library with a project; a data steward of the "
                            "owning organisation reviews the request. With a grant, your "
                            "code runs at the data: a steward reviews it and an output "
                            "checker releases its outputs.",
                   "lead_time_days": 20, "cost": "Free for public-benefit research"},
    "safeguarded": {"route": "Registered researchers with a project get differentially private "
                             "aggregate answers at once.",
                    "lead_time_days": 0, "cost": "Free"},
}


def _contact(team: str, email: str) -> dict[str, str]:
    return {"name": team, "email": email}


DCAT_EXTRAS: dict[str, dict[str, Any]] = {
    "patients": {**_COVERAGE, "themes": ["health"], "licence": "restricted",
                 "temporal": {"start": "2022-04-01", "end": "2025-08-31"},
                 "contact": _contact("Northshire Trust data office", "data@northshire-nhs.example"),
                 "access": {**_ACCESS["controlled"],
                            "linkable_datasets": ["nhs-trust/ae-attendances",
                                                  "local-authority/childrens-social-care"]},
                 "policy_summary": "Controlled: a steward reviews each request; no jobs yet.",
                 "known_issues": "About 1% of records lack a verified NHS number."},
    "ae-attendances": {**_COVERAGE, "themes": ["health"], "licence": "restricted",
                       "temporal": {"start": "2022-04-01", "end": "2025-08-31"},
                       "contact": _contact("Northshire Trust data office",
                                           "data@northshire-nhs.example"),
                       "access": {**_ACCESS["safeguarded"],
                                  "linkable_datasets": ["nhs-trust/patients"]},
                       "policy_summary": "Safeguarded: aggregate answers with differential "
                                         "privacy; small counts suppressed."},
    "pupils": {**_COVERAGE, "themes": ["education"], "licence": "restricted",
               "update_frequency": "annual",
               "temporal": {"start": "2021-09-01", "end": "2025-07-31"},
               "contact": _contact("DfE data sharing team", "data.sharing@education.example"),
               "access": {**_ACCESS["controlled"],
                          "linkable_datasets": ["dfe/attainment",
                                                "local-authority/childrens-social-care"]},
               "policy_summary": "Controlled: pupil-level records never leave the DfE datasite."},
    "attainment": {**_COVERAGE, "themes": ["education"], "licence": "restricted",
                   "update_frequency": "annual",
                   "temporal": {"start": "2021-09-01", "end": "2025-07-31"},
                   "contact": _contact("DfE data sharing team", "data.sharing@education.example"),
                   "access": {**_ACCESS["safeguarded"], "linkable_datasets": ["dfe/pupils"]},
                   "policy_summary": "Safeguarded: aggregate answers with differential privacy."},
    "childrens-social-care": {**_COVERAGE, "themes": ["social-care"], "licence": "restricted",
                              "temporal": {"start": "2021-04-01", "end": "2025-08-31"},
                              "contact": _contact("Northshire children's services data team",
                                                  "csc.data@northshire.example"),
                              "access": {**_ACCESS["controlled"], "lead_time_days": 30,
                                         "linkable_datasets": ["dfe/pupils",
                                                               "nhs-trust/patients"]},
                              "policy_summary": "Controlled: two approvers; outputs checked.",
                              "known_issues": "NHS number is missing for about 30% of "
                                              "children; a few children appear twice."},
    "ward-population": {**_COVERAGE, "themes": ["population"], "licence": "OGL-UK-3.0",
                        "update_frequency": "annual",
                        "temporal": {"start": "2021-01-01", "end": "2025-12-31"},
                        "contact": _contact("Northshire insight team",
                                            "insight@northshire.example"),
                        "access": {"route": "Open data: download or query it directly.",
                                   "lead_time_days": 0, "cost": "Free"},
                        "policy_summary": "Open: anyone may use it under the OGL."},
}
