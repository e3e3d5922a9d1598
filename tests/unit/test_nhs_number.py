"""Tests for NHS number check-digit validation and generation."""

from __future__ import annotations

import random

import pytest

from ndl.linkage.nhs_number import check_digit, format_nhs_number, generate, is_valid, normalise

KNOWN_VALID = "9434765919"


def test_known_valid_number() -> None:
    assert check_digit(KNOWN_VALID[:9]) == 9
    assert is_valid(KNOWN_VALID)
    assert normalise(KNOWN_VALID) == KNOWN_VALID


def test_wrong_check_digit_rejected() -> None:
    assert not is_valid("9434765918")
    assert normalise("9434765918") is None


@pytest.mark.parametrize(
    "formatted", ["943 476 5919", "943-476-5919", " 943 476 5919 ", "9434 765919"]
)
def test_separators_accepted(formatted: str) -> None:
    assert is_valid(formatted)
    assert normalise(formatted) == KNOWN_VALID


@pytest.mark.parametrize(
    "bad",
    ["", "943476591", "94347659190", "943476591X", "943.476.5919", "٩٤٣٤٧٦٥٩١٩", "9434765919\x00"],
)
def test_malformed_rejected(bad: str) -> None:
    assert not is_valid(bad)
    assert normalise(bad) is None


def test_check_digit_special_cases() -> None:
    # Weighted sum 0 gives 11, which maps to check digit 0.
    assert check_digit("000000000") == 0
    assert is_valid("0000000000")
    # Find nine digits whose check would be 10: such numbers are never issued.
    rng = random.Random(1)
    while True:
        first9 = "".join(str(rng.randrange(10)) for _ in range(9))
        if check_digit(first9) is None:
            break
    assert not any(is_valid(first9 + str(d)) for d in range(10))


def test_check_digit_requires_nine_digits() -> None:
    with pytest.raises(ValueError):
        check_digit("12345678")


def test_format() -> None:
    assert format_nhs_number(KNOWN_VALID) == "943 476 5919"
    with pytest.raises(ValueError):
        format_nhs_number("9434765918")


def test_generated_numbers_are_valid_and_deterministic() -> None:
    numbers = [generate(random.Random(42)) for _ in range(3)]
    assert len(set(numbers)) == 1
    rng = random.Random(2024)
    many = [generate(rng) for _ in range(5000)]
    assert all(is_valid(n) and len(n) == 10 for n in many)
    assert all(n.startswith("999") for n in many)
    # ~9e5 valid numbers in the 999 range: 5000 draws collide about 14 times on average.
    assert len(set(many)) > 4950


def test_every_single_digit_substitution_detected() -> None:
    rng = random.Random(7)
    for _ in range(200):
        number = generate(rng)
        for pos in range(10):
            for digit in "0123456789":
                if digit == number[pos]:
                    continue
                mutated = number[:pos] + digit + number[pos + 1 :]
                assert not is_valid(mutated), (number, mutated)


def test_every_adjacent_transposition_detected() -> None:
    rng = random.Random(8)
    for _ in range(500):
        number = generate(rng)
        for pos in range(9):
            if number[pos] == number[pos + 1]:
                continue
            swapped = number[:pos] + number[pos + 1] + number[pos] + number[pos + 2 :]
            assert not is_valid(swapped), (number, swapped)
