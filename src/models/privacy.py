"""Swedish personal identity numbers: never analysed, never echoed.

Client ids in trial data must be pseudonymous codes. A column whose values look like
Swedish personal identity numbers (*personnummer*, or *samordningsnummer*: the day plus
60) is refused by :func:`models.base.check_long` with :func:`refuse_identity_numbers`,
naming the column and the number of rows but never a value. The forms recognised are
``YYMMDD-NNNN``, ``YYMMDD+NNNN`` (100 years or older), ``YYYYMMDDNNNN``,
``YYYYMMDD-NNNN`` and ``YYMMDDNNNN``, as text or as numbers (a number may have lost a
leading zero). A value counts only with a valid date and a valid Luhn check digit. A
column is refused when a single value is written the way identity numbers are written, with
the ``-`` or ``+`` before the last four digits (no ordinary code looks like that), or when at
least :data:`SHARE` of its distinct values are bare digits that pass, so ordinary integer ids
are not refused (a random 10-digit number passes both checks with probability ~0.4%). A
value below the share is still never shown (:func:`show`, :func:`redact`).

:func:`show` and :func:`redact` keep values that look like one out of messages.

Examples
--------
>>> is_identity_number("121212-1212"), is_identity_number("121212-1213")
(True, False)
>>> is_identity_number(191212121212), is_identity_number("121272-1219")  # samordningsnummer
(True, True)
>>> redact("client 19121212-1212 appears twice")
'client [personal identity number] appears twice'
"""

from __future__ import annotations

import calendar
import re

import numpy as np
import pandas as pd

from simulate.conventions import luhn_total

__all__ = ["is_identity_number", "identity_number_columns", "refuse_identity_numbers",
           "show", "redact", "SHARE", "PSEUDONYMIZE"]

#: Share of a column's distinct values that must look like identity numbers to refuse it:
#: a column of them matches ~100%, random integer ids ~0.4%, and a block of sequential
#: 10-digit ids whose first six digits happen to form a date ~10% (the Luhn digit).
SHARE = 0.5
#: What to do instead (the README's section on pseudonymization).
PSEUDONYMIZE = ("replace them with pseudonymous codes, e.g. a keyed hash (HMAC-SHA256 with "
                "a secret key kept apart from the data; see the README, 'Real data: "
                "pseudonymize client ids')")

_TEXT = re.compile(r"(\d{2})?(\d{2})(\d{2})(\d{2})([-+]?)(\d{4})")
_IN_TEXT = re.compile(r"(?<![\d])(?:\d{8}|\d{6})[-+]?\d{4}(?![\d])")


def is_identity_number(value) -> bool:
    """Whether ``value`` (text or number) is a valid personnummer or samordningsnummer."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return False
    if isinstance(value, (int, np.integer)):
        text = str(int(value))
        # a number lost the leading zeros of years 00-09 (and of months 01-09 in year 00)
        text = text.zfill(10) if 7 <= len(text) <= 9 else text
    elif isinstance(value, (float, np.floating)):
        if not np.isfinite(value) or value != int(value):
            return False
        return is_identity_number(int(value))
    elif isinstance(value, str):
        text = value.strip()
    else:
        return False
    m = _TEXT.fullmatch(text)
    if m is None:
        return False
    century, yy, mm, dd, sep, last4 = m.groups()
    if century is not None and century not in ("18", "19", "20"):
        return False
    years = [int(century + yy)] if century else [1900 + int(yy), 2000 + int(yy)]
    month, day = int(mm), int(dd)
    if day > 60:  # samordningsnummer
        day -= 60
    if not 1 <= month <= 12 or day < 1:
        return False
    if not any(day <= calendar.monthrange(y, month)[1] for y in years):
        return False
    return _luhn(yy + mm + dd + last4)


def _luhn(digits: str) -> bool:
    return luhn_total([int(ch) for ch in digits], 10) % 10 == 0


def _candidates(col: pd.Series) -> np.ndarray:
    """Distinct values of ``col`` that could be identity numbers (a cheap pre-filter)."""
    kind = getattr(col.dtype, "kind", "O")
    if kind == "b":
        return _NONE
    if kind in "iuf":  # numbers: only integers of 7-12 digits can be one
        x = col.to_numpy()
        if not x.size:
            return _NONE
        big = np.abs(x) >= 1e6
        if not big.any():  # NaN compares False: an all-missing column stops here
            return _NONE
        x = x[big & (x < 1e12)].astype(float)
        x = np.unique(x[x == np.floor(x)])
        return x.astype(np.int64).astype(object)
    values = pd.unique(col.dropna().astype(str))
    keep = [v for v in values if 10 <= len(v.strip()) <= 13 and v.strip()[:1].isdigit()]
    return np.array(keep, dtype=object)


_NONE = np.array([], dtype=object)


def identity_number_columns(data: pd.DataFrame) -> dict[str, int]:
    """Columns of ``data`` that hold identity numbers -> number of rows that hold one.

    A column counts when one of its values is an identity number written with its
    separator (``YYMMDD-NNNN``, ``YYMMDD+NNNN``, ``YYYYMMDD-NNNN``), or when at least
    :data:`SHARE` of its distinct non-missing values are identity numbers.
    """
    found: dict[str, int] = {}
    for name, col in data.items():
        hits = [v for v in _candidates(col) if is_identity_number(v)]
        if not hits:
            continue
        # the separator makes one value unmistakable; bare digits need the share, since
        # ~0.4% of random integer ids pass the date and Luhn checks by chance
        written = any(isinstance(v, str) and ("-" in v or "+" in v) for v in hits)
        distinct = col.nunique(dropna=True)
        if written or len(hits) >= SHARE * max(distinct, 1):
            if getattr(col.dtype, "kind", "O") in "iuf":
                rows = int(col.isin(np.asarray(hits, dtype=float)).sum())
            else:
                rows = int(col.astype(str).str.strip().isin(set(hits)).sum())
            found[str(name)] = rows
    return found


def refuse_identity_numbers(data: pd.DataFrame, error: type[Exception]) -> None:
    """Raise ``error`` naming each column of identity numbers and its row count (never a
    value)."""
    found = identity_number_columns(data)
    if found:
        cols = "; ".join(f"column {name!r} ({n:,} of {len(data):,} rows)"
                         for name, n in found.items())
        raise error(f"{cols} looks like Swedish personal identity numbers (personnummer "
                    f"or samordningsnummer); the lab does not analyse them: "
                    f"{PSEUDONYMIZE}")


def show(value, limit: int = 40) -> str:
    """``repr(value)`` for a message, unless it looks like an identity number."""
    if is_identity_number(value):
        return "(a value that looks like a personal identity number; not shown)"
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def redact(text: str) -> str:
    """``text`` with anything that looks like an identity number replaced."""
    return _IN_TEXT.sub(lambda m: "[personal identity number]"
                        if is_identity_number(m.group()) else m.group(), text)
