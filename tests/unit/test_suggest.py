"""Sensitivity and join-key suggestions: each detector fires on its kind and only on its kind."""

from __future__ import annotations

import random

import pytest

from ndl.datasite.suggest import suggest_column, suggest_columns
from ndl.linkage.nhs_number import generate

NHS = [generate(random.Random(i)) for i in range(50)]


def kind(name: str, values: list[object], type_: str = "string") -> str | None:
    s = suggest_column(name, values, type_)
    return None if s is None else s.kind


# -- NHS numbers ---------------------------------------------------------------------------
def test_nhs_numbers_found_by_value_whatever_the_column_is_called() -> None:
    s = suggest_column("ref", NHS)
    assert s is not None
    assert (s.kind, s.sensitivity, s.join_key) == ("nhs_number", "direct_identifier",
                                                   "nhs_number")
    assert "50 of 50" in s.reason and "check digit" in s.reason


def test_nhs_numbers_with_spaces_and_as_integers() -> None:
    spaced = [f"{n[:3]} {n[3:6]} {n[6:]}" for n in NHS]
    assert kind("patient", spaced) == "nhs_number"
    assert kind("patient", [int(n) for n in NHS], "integer") == "nhs_number"


def test_ten_digit_numbers_failing_the_check_digit_are_not_nhs_numbers() -> None:
    # Flip the check digit of every valid number: ten digits, none valid.
    invalid = [n[:9] + str((int(n[9]) + 1) % 10) for n in NHS]
    assert kind("account", invalid) is None


def test_nhs_named_column_is_flagged_even_when_values_fail() -> None:
    s = suggest_column("NHS_No", ["123", "456"])
    assert s is not None and s.kind == "nhs_number"
    assert "name mentions" in s.reason and "0 of 2" in s.reason


# -- postcodes -------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [
    ["NE1 4AB", "SW1A 1AA", "LS6 2XZ", "M1 1AE", "B33 8TH", "CR2 6XH", "DN55 1PT"],
    ["ne14ab", "sw1a1aa", "ls62xz"],
])
def test_full_postcodes_are_quasi_identifiers_and_join_keys(values: list[str]) -> None:
    s = suggest_column("addr", values)
    assert s is not None
    assert (s.kind, s.sensitivity, s.join_key) == ("postcode", "quasi_identifier", "postcode")


def test_postcode_districts_are_quasi_identifiers_without_a_join_key() -> None:
    s = suggest_column("postcode_district", ["NE1", "SW1A", "LS6"])
    assert s is not None and (s.kind, s.join_key) == ("postcode_district", None)


def test_things_shaped_nearly_like_postcodes_are_not() -> None:
    # Invalid inward letters (C, I, K, M, O, V), product codes, plain words.
    assert kind("code", ["NE1 4CI", "AB12 3KM", "XX1 1OV"]) is None
    assert kind("sku", ["A1-2345", "B2-9999"]) is None


# -- dates of birth --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dob", "date_of_birth", "DateOfBirth", "birth_date",
                                  "patient_dob"])
def test_date_of_birth_by_name_and_date_type(name: str) -> None:
    s = suggest_column(name, ["1980-01-02", "1975-12-31"], "date")
    assert s is not None
    assert (s.kind, s.sensitivity, s.join_key) == ("date_of_birth", "quasi_identifier",
                                                   "date_of_birth")


def test_date_of_birth_name_without_dates_gets_no_join_key() -> None:
    s = suggest_column("dob", ["unknown", "n/k"])
    assert s is not None and s.join_key is None


def test_other_dates_and_birth_weight_are_not_dates_of_birth() -> None:
    assert kind("admission_date", ["2024-01-02", "2024-02-03"], "date") is None
    assert kind("birth_weight", ["3.2", "2.9"], "float") is None


# -- names -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["first_name", "FirstName", "forename", "surname",
                                  "family_name", "given_name", "last name", "full_name"])
def test_name_columns_by_name(name: str) -> None:
    s = suggest_column(name, ["x", "y"])
    assert s is not None
    assert (s.kind, s.sensitivity, s.join_key) == ("name", "direct_identifier", "name")


def test_people_names_found_by_value() -> None:
    s = suggest_column("person", ["Olivia Smith", "Jack Jones", "Mohammed Khan", "Emily Brown"])
    assert s is not None and s.kind == "name" and "first name" in s.reason


def test_hospital_and_ward_names_are_not_people() -> None:
    assert kind("hospital_name", ["Royal Victoria Infirmary", "Freeman Hospital"]) is None
    assert kind("name", ["Cardiology", "Oncology", "Emergency Department"]) is None
    assert kind("org_name", ["Northshire NHS Trust", "Eastshire Council"]) is None


# -- email and phone -------------------------------------------------------------------------
def test_email_by_value_and_by_name() -> None:
    s = suggest_column("contact", ["a.b@example.org", "jo@nhs.net", "x@y.co.uk"])
    assert s is not None and (s.kind, s.sensitivity, s.join_key) == (
        "email", "direct_identifier", None)
    assert kind("email", []) == "email"


def test_not_emails() -> None:
    assert kind("handle", ["@someone", "name at example dot org", "a@b"]) is None


@pytest.mark.parametrize("values", [
    ["07700 900123", "07700 900456", "07700-900789"],
    ["+44 7700 900123", "+447700900456", "0044 7700 900789"],
    ["(0191) 496 0000", "020 7946 0000", "0113 496 0999"],
])
def test_uk_phone_numbers(values: list[str]) -> None:
    s = suggest_column("contact_no", values)
    assert s is not None and (s.kind, s.sensitivity) == ("phone", "direct_identifier")


def test_not_phone_numbers() -> None:
    # Ten digits without a leading 0 (could be NHS-like), short codes, money.
    assert kind("amount", ["1234.50", "99.99"]) is None
    assert kind("code", ["12345", "67890"]) is None
    assert kind("mobile_unit", ["A", "B"]) == "phone"  # the name alone says so: steward decides


# -- others ----------------------------------------------------------------------------------
def test_quasi_identifiers_and_special_category_by_name() -> None:
    assert suggest_column("sex", ["F", "M"]).sensitivity == "quasi_identifier"  # type: ignore[union-attr]
    assert suggest_column("ethnicity", ["A"]).sensitivity == "quasi_identifier"  # type: ignore[union-attr]
    s = suggest_column("primary_diagnosis", ["I21"])
    assert s is not None and s.sensitivity == "sensitive"
    assert kind("archive_flag", ["true"], "boolean") is None  # "hiv" inside a word: no


def test_upn_and_local_ids() -> None:
    s = suggest_column("pupil", ["A929123456789", "B383123456781", "C909000000012"])
    assert s is not None and (s.kind, s.join_key) == ("upn", "upn")
    s = suggest_column("MRN", ["00123", "00456"])
    assert s is not None and (s.kind, s.join_key) == ("local_id", "local_id")


def test_plain_measures_get_no_suggestion() -> None:
    assert kind("acuity", ["1", "2", "3"], "integer") is None
    assert kind("region", ["North East", "London"]) is None
    assert kind("wait_minutes", ["12.5", "30"], "float") is None


def test_suggest_columns_keeps_order_and_skips_plain_columns() -> None:
    out = suggest_columns({"acuity": ("integer", [1, 2]), "nhs": ("string", NHS[:5]),
                           "postcode": ("string", ["NE1 4AB"])})
    assert [s.column for s in out] == ["nhs", "postcode"]
