"""NHS number validation and generation (modulus 11 check digit).

An NHS number is ten digits: nine identifying digits and a check digit. The check
digit is ``11 - (sum(d_i * w_i) % 11)`` with weights 10 down to 2; a result of 11
becomes 0 and a result of 10 means the nine digits are never issued.

Because 11 is prime and every weight is non-zero and distinct modulo 11, the check
detects every single-digit substitution and every transposition of adjacent digits.
"""

from __future__ import annotations

import random
import re

__all__ = ["CHECK_WEIGHTS", "check_digit", "format_nhs_number", "generate", "is_valid", "normalise"]

CHECK_WEIGHTS: tuple[int, ...] = (10, 9, 8, 7, 6, 5, 4, 3, 2)

# Only ASCII digits: str.isdigit() would also accept e.g. superscripts and Arabic-Indic digits.
_NINE_DIGITS = re.compile(r"[0-9]{9}")
_TEN_DIGITS = re.compile(r"[0-9]{10}")
# Separators people and systems commonly put inside an NHS number ("943 476 5919").
_SEPARATORS = re.compile(r"[\s\-]+")


def check_digit(first9: str) -> int | None:
    """Return the check digit for nine leading digits, or None if no valid number has them."""
    if not _NINE_DIGITS.fullmatch(first9):
        raise ValueError(f"expected exactly nine digits, got {first9!r}")
    total = sum(int(d) * w for d, w in zip(first9, CHECK_WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def normalise(value: str) -> str | None:
    """Strip spaces/hyphens and return the bare ten digits if valid, else None."""
    if not isinstance(value, str):
        return None
    compact = _SEPARATORS.sub("", value)
    if not _TEN_DIGITS.fullmatch(compact):
        return None
    expected = check_digit(compact[:9])
    if expected is None or expected != int(compact[9]):
        return None
    return compact


def is_valid(nhs_number: str) -> bool:
    """True if the value is ten digits (spaces/hyphens allowed) with a correct check digit."""
    return normalise(nhs_number) is not None


def format_nhs_number(nhs_number: str) -> str:
    """Render a valid NHS number in the conventional 3-3-4 grouping ("943 476 5919")."""
    compact = normalise(nhs_number)
    if compact is None:
        raise ValueError(f"not a valid NHS number: {nhs_number!r}")
    return f"{compact[:3]} {compact[3:6]} {compact[6:]}"


def generate(rng: random.Random) -> str:
    """Generate a random valid NHS number using the caller's RNG (deterministic per seed).

    Numbers start 999, the range NHS England reserves for testing, so a synthetic number can
    never coincide with a real person's.
    """
    while True:
        first9 = "999" + "".join(str(rng.randrange(10)) for _ in range(6))
        check = check_digit(first9)
        # Retry rather than patch a digit so the output stays uniform over valid numbers.
        if check is not None:
            return first9 + str(check)
