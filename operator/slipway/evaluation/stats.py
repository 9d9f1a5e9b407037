"""The statistics of an evaluation: pure functions of plain lists, checked by hand in the tests.

- quantile: linear interpolation between closest ranks (numpy's default, "type 7");
- agreement and accuracy: shares of equal outputs (numbers: within a tolerance, inclusive);
- psi: population stability index of the canary's outputs against stable's (the reference),
  sum((c - s) * ln(c / s)) over bins: deciles of stable's numbers, or the labels themselves;
  an empty bin counts as PSI_FLOOR, so that one empty bin does not make it infinite;
- ks: the two-sample Kolmogorov-Smirnov statistic, the largest distance between the two
  empirical distribution functions;
- label_distance: total variation distance between label frequencies, half the sum of the
  absolute differences (0: the same frequencies, 1: no label in common).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import TypeGuard

PSI_BINS = 10
PSI_FLOOR = 1e-4

Output = tuple[Hashable, ...]  # one prediction: its values (usually one)


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile of `values` (0 <= q <= 1) by linear interpolation; None for no values."""
    if not values:
        return None
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a quantile is between 0 and 1, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (position - below) * (ordered[above] - ordered[below])


def same(a: Output, b: Output, tolerance: float | None) -> bool:
    """Whether two predictions agree: equal, or (numbers, `tolerance` given) within it."""
    if tolerance is None or len(a) != len(b):
        return a == b
    return all(_close(x, y, tolerance) for x, y in zip(a, b, strict=True))


def _close(x: Hashable, y: Hashable, tolerance: float) -> bool:
    if _is_number(x) and _is_number(y):
        apart = abs(float(x) - float(y))
        # within, or as close as floating point lets a difference equal to the tolerance be
        return apart <= tolerance or math.isclose(apart, tolerance, rel_tol=1e-9)
    return x == y


def _is_number(value: Hashable) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def share_equal(pairs: Sequence[tuple[Output, Output]], tolerance: float | None) -> float | None:
    """The share of pairs that agree; None for no pairs."""
    if not pairs:
        return None
    return sum(1 for a, b in pairs if same(a, b, tolerance)) / len(pairs)


def psi_numbers(
    reference: Sequence[float], actual: Sequence[float], bins: int = PSI_BINS
) -> float | None:
    """PSI of `actual` against `reference`, over bins cut at the reference's quantiles (a value
    equal to a cut falls into the lower bin); None when either side has no values."""
    if not reference or not actual:
        return None
    edges = sorted({q for k in range(1, bins) if (q := quantile(reference, k / bins)) is not None})

    def shares(values: Sequence[float]) -> list[float]:
        counts = [0] * (len(edges) + 1)
        for value in values:
            counts[bisect.bisect_left(edges, value)] += 1
        return [count / len(values) for count in counts]

    return _psi(shares(reference), shares(actual))


def psi_labels(reference: Sequence[Hashable], actual: Sequence[Hashable]) -> float | None:
    """PSI of `actual` against `reference` with one bin per label; None when either is empty."""
    if not reference or not actual:
        return None
    labels = sorted(set(reference) | set(actual), key=repr)
    ref, act = Counter(reference), Counter(actual)
    return _psi(
        [ref[label] / len(reference) for label in labels],
        [act[label] / len(actual) for label in labels],
    )


def _psi(reference: Sequence[float], actual: Sequence[float]) -> float:
    total = 0.0
    for r, a in zip(reference, actual, strict=True):
        r, a = max(r, PSI_FLOOR), max(a, PSI_FLOOR)
        total += (a - r) * math.log(a / r)
    return total


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The two-sample Kolmogorov-Smirnov statistic; None when either side has no values."""
    if not a or not b:
        return None
    xs, ys = sorted(a), sorted(b)
    largest = 0.0
    for point in sorted(set(xs) | set(ys)):
        fa = bisect.bisect_right(xs, point) / len(xs)
        fb = bisect.bisect_right(ys, point) / len(ys)
        largest = max(largest, abs(fa - fb))
    return largest


def label_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Total variation distance between the label frequencies of `a` and `b`."""
    if not a or not b:
        return None
    ca, cb = Counter(a), Counter(b)
    labels = set(ca) | set(cb)
    return 0.5 * sum(abs(ca[label] / len(a) - cb[label] / len(b)) for label in labels)
