"""A1111's X/Y/Z plot value syntax (its scripts/xyz_grid.py), plain Python — no numpy, no torch:

- values are CSV: `1, 2, 3`; a value with a comma is quoted: `"long hair, blond", short` (whitespace around each
  value is stripped);
- whole numbers: `1-5` (1 to 5, both ends), `1-10 (+3)` (a step: 1, 4, 7, 10), `10-1 (-3)`, `1-10 [4]` (4 values
  spread evenly from 1 to 10, rounded down: 1, 4, 7, 10);
- decimals: `1-2 (+0.25)` (1, 1.25, ... 2), `0.5-1 [3]` (0.5, 0.75, 1), `1-3` (a step of 1).

Ranges are counted before they are made, so `1-1000000000` is refused at once rather than built."""

from __future__ import annotations

import csv
import io
import math
import re
from itertools import chain, permutations
from typing import Union

from ..contract import RequestError

# The patterns of A1111's re_range / re_range_count / re_range_float / re_range_count_float (its "." escaped here).
_INT = r"([+-]?\s*\d+)"
_FLOAT = r"([+-]?\s*\d+(?:\.\d*)?)"
RANGE_INT = re.compile(rf"\s*{_INT}\s*-\s*{_INT}(?:\s*\(([+-]\d+)\s*\))?\s*")
COUNT_INT = re.compile(rf"\s*{_INT}\s*-\s*{_INT}(?:\s*\[(\d+)\s*\])?\s*")
RANGE_FLOAT = re.compile(rf"\s*{_FLOAT}\s*-\s*{_FLOAT}(?:\s*\(([+-]\d+(?:\.\d*)?)\s*\))?\s*")
COUNT_FLOAT = re.compile(rf"\s*{_FLOAT}\s*-\s*{_FLOAT}(?:\s*\[(\d+(?:\.\d*)?)\s*\])?\s*")

Number = Union[int, float]


def split_csv(text: str, axis: str = "values") -> list[str]:
    """A1111's csv_string_to_list_strip: every CSV field of every line, stripped; empty text gives []."""
    if not isinstance(text, str):
        raise RequestError(f"{axis} must be text (comma-separated values).")
    try:
        return [field.strip() for field in chain.from_iterable(csv.reader(io.StringIO(text), skipinitialspace=True))]
    except csv.Error as exc:
        raise RequestError(f"{axis}: not valid comma-separated values ({exc}).") from None


def _number(text: str) -> str:
    return text.replace(" ", "").replace("\t", "")


def _count(limit: int, so_far: int, more: int, axis: str, value: str) -> None:
    if more < 0 or so_far + more > limit:
        raise RequestError(f"{axis}: '{value}' makes more than {limit} values.")


def linspace(start: float, stop: float, num: int) -> list[float]:
    """numpy.linspace(start, stop, num).tolist(): num values from start to stop, both ends included."""
    if num <= 0:
        return []
    if num == 1:
        return [float(start)]
    step = (stop - start) / (num - 1)
    values = [start + i * step for i in range(num)]
    values[-1] = float(stop)
    return values


def arange(start: float, stop: float, step: float) -> list[float]:
    """numpy.arange(start, stop, step).tolist() for floats: start + i × step while short of stop."""
    length = math.ceil((stop - start) / step)
    return [start + i * step for i in range(max(0, length))]


def expand_ints(values: list[str], axis: str, limit: int) -> list[int]:
    """Whole-number values with A1111's ranges expanded; raises RequestError for a value that is not a whole
    number, a step of 0, or more than `limit` values."""
    out: list[int] = []
    for value in values:
        ranged, counted = RANGE_INT.fullmatch(value), COUNT_INT.fullmatch(value)
        if ranged is not None:
            start, end = int(_number(ranged.group(1))), int(_number(ranged.group(2))) + 1
            step = int(ranged.group(3)) if ranged.group(3) is not None else 1
            if step == 0:
                raise RequestError(f"{axis}: '{value}' has a step of 0.")
            span = range(start, end, step)
            _count(limit, len(out), len(span), axis, value)
            out.extend(span)
        elif counted is not None:
            start, end = int(_number(counted.group(1))), int(_number(counted.group(2)))
            num = int(counted.group(3)) if counted.group(3) is not None else 1
            _count(limit, len(out), num, axis, value)
            out.extend(int(v) for v in linspace(start, end, num))
        else:
            try:
                out.append(int(_number(value)))
            except ValueError:
                raise RequestError(f"{axis}: '{value}' is not a whole number (or a range such as 1-5).") from None
            _count(limit, len(out), 0, axis, value)
    return out


def expand_floats(values: list[str], axis: str, limit: int) -> list[float]:
    """Decimal values with A1111's ranges expanded (see the module's doc)."""
    out: list[float] = []
    for value in values:
        ranged, counted = RANGE_FLOAT.fullmatch(value), COUNT_FLOAT.fullmatch(value)
        if ranged is not None:
            start, end = float(_number(ranged.group(1))), float(_number(ranged.group(2)))
            step = float(ranged.group(3)) if ranged.group(3) is not None else 1.0
            if step == 0:
                raise RequestError(f"{axis}: '{value}' has a step of 0.")
            _count(limit, len(out), math.ceil((end + step - start) / step), axis, value)
            out.extend(arange(start, end + step, step))
        elif counted is not None:
            start, end = float(_number(counted.group(1))), float(_number(counted.group(2)))
            num = int(float(counted.group(3))) if counted.group(3) is not None else 1
            _count(limit, len(out), num, axis, value)
            out.extend(linspace(start, end, num))
        else:
            try:
                number = float(_number(value))
            except ValueError:
                raise RequestError(f"{axis}: '{value}' is not a number (or a range such as 1-2 (+0.5)).") from None
            if not math.isfinite(number):
                raise RequestError(f"{axis}: '{value}' is not a finite number.")
            out.append(number)
            _count(limit, len(out), 0, axis, value)
    return out


def expand_permutations(values: list[str], axis: str, limit: int) -> list[tuple[str, ...]]:
    """A1111's "Prompt order": every order of the values."""
    if not values or math.factorial(len(values)) > limit:
        raise RequestError(f"{axis}: {len(values)} values make {math.factorial(len(values))} orders, over {limit}.")
    return list(permutations(values))


def parse_values(text: str, kind: str, axis: str, limit: int) -> list:
    """The values of one axis from its text: kind "int", "float", "str" or "permutations"."""
    values = split_csv(text, axis)
    if kind == "int":
        return expand_ints(values, axis, limit)
    if kind == "float":
        return expand_floats(values, axis, limit)
    if kind == "permutations":
        return expand_permutations(values, axis, limit)
    if len(values) > limit:
        raise RequestError(f"{axis}: {len(values)} values, over {limit}.")
    return values


def format_number(value) -> str:
    """A value as A1111's labels show it: floats rounded to 8 places (7.0 stays "7.0")."""
    if isinstance(value, float):
        return str(round(value, 8))
    return str(value)
