"""The statistics of an evaluation, on inputs small enough to compute by hand (the working is in
each comment)."""

from __future__ import annotations

import math

import pytest

from slipway.evaluation.stats import (
    PSI_FLOOR,
    ks_statistic,
    label_distance,
    psi_labels,
    psi_numbers,
    quantile,
    same,
    share_equal,
)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([0.1, 0.2, 0.3, 0.4, 1.0], 0.5, 0.3),  # position (5-1)*0.5 = 2: the third value
        # position 4*0.99 = 3.96: 0.4 + 0.96 * (1.0 - 0.4) = 0.976
        ([0.1, 0.2, 0.3, 0.4, 1.0], 0.99, 0.976),
        ([4.0, 1.0, 3.0, 2.0], 0.5, 2.5),  # sorted 1 2 3 4, position 1.5: 2 + 0.5 * 1
        ([7.0], 0.99, 7.0),
        ([1.0, 2.0], 0.0, 1.0),
        ([1.0, 2.0], 1.0, 2.0),
    ],
)
def test_quantile_interpolates_between_closest_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert quantile(values, q) == pytest.approx(expected)


def test_quantile_of_nothing_is_none_and_q_is_a_share() -> None:
    assert quantile([], 0.5) is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        quantile([1.0], 99)


def test_agreement_counts_equal_labels_and_numbers_within_tolerance() -> None:
    labels = [(("cat",), ("cat",)), (("dog",), ("cat",)), ((2,), (2,)), ((1,), (0,))]
    assert share_equal(labels, None) == 0.5  # 2 of 4
    numbers = [((0.50,), (0.52,)), ((0.10,), (0.30,)), ((1.0, 2.0), (1.01, 2.0))]
    assert share_equal(numbers, 0.05) == pytest.approx(2 / 3)  # |0.2| > 0.05 disagrees
    assert share_equal(numbers, 0.0) == 0.0
    assert share_equal([], None) is None


def test_numbers_and_text_never_agree_by_tolerance_and_booleans_are_not_numbers() -> None:
    assert not same(("1",), (1,), 0.5)
    assert not same((True,), (1.2,), 0.5)
    assert same((True,), (True,), 0.5)
    assert not same((1.0,), (1.0, 2.0), 5.0)  # a different number of values


def test_psi_of_numbers_by_hand_with_two_bins() -> None:
    # stable 1 2 3 4: one cut at its median 2.5, shares [0.5, 0.5]; canary 1 1 1 4: [0.75, 0.25]
    # (0.75 - 0.5) ln(0.75 / 0.5) + (0.25 - 0.5) ln(0.25 / 0.5) = 0.25 ln 1.5 + 0.25 ln 2 = 0.274653
    psi = psi_numbers([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 4.0], bins=2)
    assert psi == pytest.approx(0.25 * math.log(1.5) + 0.25 * math.log(2.0))
    assert psi == pytest.approx(0.274653, abs=1e-6)


def test_psi_of_the_same_distribution_is_zero_and_a_value_on_a_cut_falls_below() -> None:
    stable = [float(v) for v in range(1, 101)]
    assert psi_numbers(stable, list(stable)) == pytest.approx(0.0)
    # cut at 2.5 with two bins: 2.5 counts as low, so canary [2.5, 3] splits [0.5, 0.5] like stable
    assert psi_numbers([1.0, 2.0, 3.0, 4.0], [2.5, 3.0], bins=2) == pytest.approx(0.0)


def test_psi_with_an_empty_bin_is_large_but_finite() -> None:
    # canary all below the cut: shares [1, 0] -> [1, 1e-4] against [0.5, 0.5]
    # (1 - 0.5) ln(1 / 0.5) + (1e-4 - 0.5) ln(1e-4 / 0.5) = 0.5 ln 2 + 0.4999 ln 5000
    psi = psi_numbers([1.0, 2.0, 3.0, 4.0], [1.0, 1.0], bins=2)
    expected = 0.5 * math.log(2) + (0.5 - PSI_FLOOR) * math.log(0.5 / PSI_FLOOR)
    assert psi == pytest.approx(expected)
    assert psi == pytest.approx(4.604, abs=1e-3)


def test_psi_of_labels_by_hand() -> None:
    # stable cat cat dog dog: [0.5, 0.5]; canary cat dog dog dog: [0.25, 0.75]
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 2 + 0.25 ln 1.5
    psi = psi_labels(["cat", "cat", "dog", "dog"], ["cat", "dog", "dog", "dog"])
    assert psi == pytest.approx(0.274653, abs=1e-6)
    assert psi_labels(["a"], []) is None


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [
        # F_a jumps 1/3 at 1, 2, 3; F_b at 2, 3, 4: |F_a - F_b| = 1/3 at 1, 2 and 3, 0 at 4
        ([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], 1 / 3),
        ([1.0, 2.0], [3.0, 4.0], 1.0),  # no overlap
        ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], 0.0),  # the same values
        # at 1: F_a = 2/4, F_b = 0; at 2: 3/4 vs 1/2; at 5: 1 vs 1
        ([1.0, 1.0, 2.0, 5.0], [2.0, 5.0], 0.5),
    ],
)
def test_ks_statistic_by_hand(a: list[float], b: list[float], d: float) -> None:
    assert ks_statistic(a, b) == pytest.approx(d)
    assert ks_statistic(b, a) == pytest.approx(d)


def test_label_distance_by_hand() -> None:
    # frequencies {cat 0.5, dog 0.5} and {cat 0.25, dog 0.75}: (0.25 + 0.25) / 2 = 0.25
    assert label_distance(["cat", "cat", "dog", "dog"], ["cat", "dog", "dog", "dog"]) == 0.25
    assert label_distance(["a", "b"], ["c"]) == 1.0
    assert label_distance([1, 2, 2], [2, 1, 2]) == 0.0
    assert label_distance([], ["a"]) is None
