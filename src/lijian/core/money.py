"""Integer-fen arithmetic. Money is never a float anywhere in lijian."""

from __future__ import annotations

BASIS_POINTS_PER_UNIT = 10_000


def floor_div_mul(amount_fen: int, numerator: int, denominator: int) -> int:
    """floor(amount × numerator / denominator) for non-negative integers, exactly."""
    assert amount_fen >= 0 and numerator >= 0 and denominator > 0
    return (amount_fen * numerator) // denominator


def percent_off_fen(payable_fen: int, rate_bp: int) -> int:
    """R5: floor(payable × rate_bp / 10000); rounding never in the person's favour."""
    return floor_div_mul(payable_fen, rate_bp, BASIS_POINTS_PER_UNIT)


def format_cny(amount_fen: int) -> str:
    """2,500.00 style rendering for humans (reports, CLI); never parsed back."""
    sign = "-" if amount_fen < 0 else ""
    yuan, fen = divmod(abs(amount_fen), 100)
    return f"{sign}{yuan:,}.{fen:02d}"
