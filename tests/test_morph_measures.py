"""Morphing attack measures: hand-computed examples, reference implementations and refused inputs."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

from facesec.families.morph.measures import (
    accepted_counts,
    dedup_search,
    fmmpmr,
    fmr,
    fnmr,
    map_matrix,
    mmpmr,
    rmmr,
)
from facesec.measures.rates import rate_with_ci, wilson_interval
from facesec.protocols import supported_fmr, threshold_at_fmr
from facesec.record import OperatingPoint

NINF = -np.inf


# --- MMPMR -------------------------------------------------------------------------------------------------------


def test_mmpmr_hand_example_and_threshold_equality_not_accepted() -> None:
    a = np.array([0.6, 0.4, 0.5, 0.9])
    b = np.array([0.7, 0.9, 0.5, 0.51])
    # min = [0.6, 0.4, 0.5, 0.51] -> > 0.5: morph 0 and 3 (morph 2 sits exactly on the threshold: refused)
    assert mmpmr(a, b, 0.5) == pytest.approx(2 / 4)
    assert mmpmr(a, b, 0.3) == pytest.approx(1.0)
    assert mmpmr(a, b, 0.6) == 0.0  # morph 0's min is exactly 0.6
    assert mmpmr(a, b, 0.59) == pytest.approx(1 / 4)


def test_mmpmr_unenrolled_morph_never_matches_and_empty_is_nan() -> None:
    assert mmpmr(np.array([NINF, 0.9]), np.array([NINF, 0.8]), -1e9) == pytest.approx(0.5)
    assert math.isnan(mmpmr(np.array([]), np.array([]), 0.5))


def test_mmpmr_refuses_bad_inputs() -> None:
    with pytest.raises(ValueError, match="same shape"):
        mmpmr(np.array([0.1, 0.2]), np.array([0.1]), 0.5)
    with pytest.raises(ValueError, match="1-D"):
        mmpmr(np.zeros((2, 2)), np.zeros((2, 2)), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        mmpmr(np.array([np.nan]), np.array([0.1]), 0.5)
    with pytest.raises(ValueError, match="threshold"):
        mmpmr(np.array([0.1]), np.array([0.1]), float("nan"))


# --- FMMPMR ------------------------------------------------------------------------------------------------------


def test_fmmpmr_hand_example_differs_from_mmpmr() -> None:
    scores_a = [np.array([0.6, 0.4]), np.array([0.9])]
    scores_b = [np.array([0.7, 0.8, 0.3]), np.array([0.55, 0.45])]
    # morph 0: 1/2 of A's x 2/3 of B's = 1/3; morph 1: 1/1 x 1/2 = 1/2; mean = 5/12
    assert fmmpmr(scores_a, scores_b, 0.5) == pytest.approx(5 / 12)
    # with only each contributor's first probe, both morphs match: MMPMR = 1
    first_a = np.array([s[0] for s in scores_a])
    first_b = np.array([s[0] for s in scores_b])
    assert mmpmr(first_a, first_b, 0.5) == pytest.approx(1.0)


def test_fmmpmr_equals_pairwise_definition_on_random_inputs() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = int(rng.integers(1, 8))
        scores_a = [rng.normal(size=int(rng.integers(1, 6))) for _ in range(m)]
        scores_b = [rng.normal(size=int(rng.integers(1, 6))) for _ in range(m)]
        t = float(rng.normal())
        pairwise = np.mean([np.mean([(x > t) and (y > t) for x, y in itertools.product(sa, sb)])
                            for sa, sb in zip(scores_a, scores_b, strict=True)])
        assert fmmpmr(scores_a, scores_b, t) == pytest.approx(pairwise)


def test_fmmpmr_threshold_equality_unenrolled_and_empty() -> None:
    # morph 0: A [0.5 (= t, refused), 0.6] -> 1/2, B [0.7] -> 1; morph 1 not enrolled -> 0
    scores_a = [np.array([0.5, 0.6]), np.array([NINF, NINF])]
    scores_b = [np.array([0.7]), np.array([NINF])]
    assert fmmpmr(scores_a, scores_b, 0.5) == pytest.approx((0.5 + 0.0) / 2)
    assert math.isnan(fmmpmr([], [], 0.5))


def test_fmmpmr_refuses_bad_inputs() -> None:
    with pytest.raises(ValueError, match="no probe for contributor B"):
        fmmpmr([np.array([0.9])], [np.array([])], 0.5)
    with pytest.raises(ValueError, match="no probe for contributor A"):
        fmmpmr([np.array([])], [np.array([0.9])], 0.5)
    with pytest.raises(ValueError, match="same morphs"):
        fmmpmr([np.array([0.9])], [np.array([0.9]), np.array([0.9])], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        fmmpmr([np.array([0.9, np.nan])], [np.array([0.9])], 0.5)


# --- RMMR, FNMR, FMR ---------------------------------------------------------------------------------------------


def test_rmmr_arithmetic() -> None:
    assert rmmr(0.8, 0.1) == pytest.approx(0.9)  # 1 + (0.8 - 0.9)
    assert rmmr(0.0, 0.0) == 0.0
    assert rmmr(1.0, 0.0) == 1.0
    assert rmmr(0.95, 0.2) == pytest.approx(1.15)  # not clipped: more morph matches than 1 - FNMR
    assert math.isnan(rmmr(float("nan"), 0.1))
    with pytest.raises(ValueError, match="fnmr"):
        rmmr(0.5, 1.5)
    with pytest.raises(ValueError, match="mmpmr_value"):
        rmmr(-0.1, 0.5)


def test_fnmr_and_fmr_hand_example() -> None:
    genuine = np.array([0.2, 0.5, 0.7, 0.9, NINF])
    assert fnmr(genuine, 0.5) == pytest.approx(3 / 5)  # 0.2, 0.5 (equal: refused) and -inf
    impostor = np.array([0.1, 0.5, 0.6])
    assert fmr(impostor, 0.5) == pytest.approx(1 / 3)
    assert fmr(impostor, 0.6) == 0.0
    assert math.isnan(fnmr(np.array([]), 0.5)) and math.isnan(fmr(np.array([]), 0.5))
    with pytest.raises(ValueError, match="NaN"):
        fmr(np.array([np.nan]), 0.5)


def test_fmr_agrees_with_threshold_at_fmr() -> None:
    impostor = np.random.default_rng(1).normal(size=1000)
    for target in (0.1, 0.01, 0.001):
        t = threshold_at_fmr(impostor, target)
        assert fmr(impostor, t) <= target
        assert fmr(impostor, np.nextafter(t, -np.inf)) > target  # smallest such t


def test_rmmr_from_measured_rates() -> None:
    genuine = np.array([0.9, 0.8, 0.3, 0.7])  # FNMR at 0.5: 1/4
    first_a = np.array([0.6, 0.4])
    first_b = np.array([0.6, 0.9])  # MMPMR at 0.5: 1/2
    assert rmmr(mmpmr(first_a, first_b, 0.5), fnmr(genuine, 0.5)) == pytest.approx(0.75)


# --- supported_fmr -----------------------------------------------------------------------------------------------


def test_supported_fmr_boundaries() -> None:
    assert supported_fmr(10000, 1e-3)
    assert not supported_fmr(9999, 1e-3)
    assert supported_fmr(10, 1.0) and not supported_fmr(9, 1.0)
    assert supported_fmr(0, 1.0) is False
    for k in range(1, 13):  # 10 / 10^-k = 10^(k+1) exactly, whatever the rounding of 10^-k
        assert supported_fmr(10 ** (k + 1), 10.0**-k), k
        assert not supported_fmr(10 ** (k + 1) - 1, 10.0**-k), k
    assert supported_fmr(334, 0.03) and not supported_fmr(333, 0.03)  # 10 / 0.03 = 333.3


def test_supported_fmr_refuses_bad_inputs() -> None:
    for bad_fmr in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="fmr"):
            supported_fmr(100, bad_fmr)
    with pytest.raises(ValueError, match="n_impostor"):
        supported_fmr(-1, 0.1)


# --- MAP ---------------------------------------------------------------------------------------------------------


def test_map_hand_example() -> None:
    # M=4 morphs, C=2 recognizers, R=3 attempts per contributor
    accepted_a = np.array([[3, 2], [2, 0], [0, 3], [3, 3]])
    accepted_b = np.array([[2, 3], [0, 2], [3, 3], [3, 0]])
    # min per (morph, recognizer) = [[2, 2], [0, 0], [0, 3], [3, 0]]; morph 1 fools none (A only on recognizer 0,
    # B only on recognizer 1: both contributors must be accepted by the same recognizer)
    # recognizers fooled with >= r attempts, per morph:
    #   r=1: [2, 0, 1, 1] -> >= 1 recognizer: 3/4, >= 2 recognizers: 1/4
    #   r=2: [2, 0, 1, 1] -> 3/4, 1/4
    #   r=3: [0, 0, 1, 1] -> 2/4, 0
    expected = np.array([[0.75, 0.25],
                         [0.75, 0.25],
                         [0.50, 0.00]])
    got = map_matrix(accepted_a, accepted_b, 3)
    assert got.shape == (3, 2) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected)
    # symmetric in the contributors
    np.testing.assert_allclose(map_matrix(accepted_b, accepted_a, 3), expected)


def _map_reference(a: np.ndarray, b: np.ndarray, r_max: int) -> np.ndarray:
    m, c_max = a.shape
    out = np.zeros((r_max, c_max))
    for r in range(1, r_max + 1):
        for c in range(1, c_max + 1):
            hits = 0
            for i in range(m):
                fooled = sum(1 for k in range(c_max) if a[i, k] >= r and b[i, k] >= r)
                hits += fooled >= c
            out[r - 1, c - 1] = hits / m
    return out


def test_map_random_is_monotone_and_matches_reference() -> None:
    rng = np.random.default_rng(2)
    for _ in range(50):
        m, c, r = int(rng.integers(1, 30)), int(rng.integers(1, 6)), int(rng.integers(1, 7))
        a = rng.integers(0, r + 1, size=(m, c))
        b = rng.integers(0, r + 1, size=(m, c))
        got = map_matrix(a, b, r)
        assert got.shape == (r, c)
        assert np.all(np.diff(got, axis=0) <= 0), "MAP must not increase with the attempts r"
        assert np.all(np.diff(got, axis=1) <= 0), "MAP must not increase with the recognizers c"
        assert np.all((got >= 0) & (got <= 1))
        np.testing.assert_allclose(got, _map_reference(a, b, r))


def test_map_empty_and_refused_inputs() -> None:
    empty = map_matrix(np.zeros((0, 2), dtype=int), np.zeros((0, 2), dtype=int), 3)
    assert empty.shape == (3, 2) and np.all(np.isnan(empty))
    with pytest.raises(ValueError, match="n_attempts=3"):
        map_matrix(np.array([[4]]), np.array([[0]]), 3)
    with pytest.raises(ValueError, match=r"\[0, n_attempts"):
        map_matrix(np.array([[1]]), np.array([[-1]]), 3)
    with pytest.raises(ValueError, match="same shape"):
        map_matrix(np.array([[1, 1]]), np.array([[1]]), 3)
    with pytest.raises(ValueError, match="integer"):
        map_matrix(np.array([[1.0]]), np.array([[1.0]]), 3)
    with pytest.raises(ValueError, match="2-D"):
        map_matrix(np.array([1]), np.array([1]), 3)
    with pytest.raises(ValueError, match="n_attempts"):
        map_matrix(np.array([[0]]), np.array([[0]]), 0)


def test_accepted_counts_hand_example_and_into_map() -> None:
    scores = [np.array([0.6, 0.4, 0.7, 0.9]), np.array([0.5, 0.51, NINF]), np.array([NINF, NINF, NINF])]
    # first 3 only: morph 0 -> 0.6, 0.7 (0.9 is a 4th attempt); morph 1 -> 0.51 (0.5 on the threshold)
    counts = accepted_counts(scores, 0.5, 3)
    np.testing.assert_array_equal(counts, [2, 1, 0])
    assert np.issubdtype(counts.dtype, np.integer)
    with pytest.raises(ValueError, match="fewer than n_attempts=4"):
        accepted_counts(scores, 0.5, 4)
    with pytest.raises(ValueError, match="n_attempts"):
        accepted_counts(scores, 0.5, 0)
    assert accepted_counts([], 0.5, 2).shape == (0,)
    # one recognizer, B accepted on every attempt: MAP column = shares of morphs with >= r of A's attempts
    a = counts[:, None]
    b = np.full_like(a, 3)
    np.testing.assert_allclose(map_matrix(a, b, 3)[:, 0], [2 / 3, 1 / 3, 0.0])


# --- 1:N duplicate-enrolment search ------------------------------------------------------------------------------


def test_dedup_search_hand_example_with_ties_and_unenrolled() -> None:
    s = np.array([
        [0.9, 0.8, 0.1, 0.2],  # 0: contributors 0, 1 are ranks 1, 2
        [0.9, 0.3, 0.8, 0.2],  # 1: A rank 1, B rank 3
        [0.5, 0.6, 0.7, 0.1],  # 2: a stranger is rank 1
        [NINF, NINF, NINF, NINF],  # 3: morph not enrolled
        [0.7, 0.5, 0.5, 0.1],  # 4: B ties a stranger for rank 2: not top-2
        [0.7, 0.6, 0.7, 0.1],  # 5: A ties a stranger for rank 1: neither
        [0.4, 0.8, 0.8, 0.1],  # 6: the two contributors (1, 2) tie for rank 1: both
        [0.1, 0.2, 0.95, 0.9],  # 7: contributors given as (3, 2): order does not matter
        [0.3, NINF, NINF, NINF],  # 8: B (index 1) at -inf is never returned, even with no stranger above it
    ])
    a = np.array([0, 0, 0, 0, 0, 0, 1, 3, 0])
    b = np.array([1, 1, 1, 1, 1, 1, 2, 2, 1])
    both, one = dedup_search(s, a, b)
    assert both.dtype == np.bool_ and one.dtype == np.bool_
    np.testing.assert_array_equal(both, [True, False, False, False, False, False, True, True, False])
    np.testing.assert_array_equal(one, [True, True, False, False, True, False, True, True, True])


def test_dedup_search_two_entry_gallery_and_empty() -> None:
    both, one = dedup_search(np.array([[0.2, 0.1], [NINF, NINF]]), np.array([0, 1]), np.array([1, 0]))
    np.testing.assert_array_equal(both, [True, False])
    np.testing.assert_array_equal(one, [True, False])
    both, one = dedup_search(np.zeros((0, 3)), np.zeros(0, dtype=int), np.zeros(0, dtype=int))
    assert both.shape == (0,) and one.shape == (0,)


def test_dedup_search_refuses_bad_inputs() -> None:
    s = np.array([[0.9, 0.8, 0.1]])
    with pytest.raises(ValueError, match="different"):
        dedup_search(s, np.array([1]), np.array([1]))
    with pytest.raises(ValueError, match="indices"):
        dedup_search(s, np.array([0]), np.array([3]))
    with pytest.raises(ValueError, match="shape"):
        dedup_search(s, np.array([0, 1]), np.array([1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        dedup_search(np.array([[0.9, np.nan, 0.1]]), np.array([0]), np.array([1]))
    with pytest.raises(ValueError, match="2-D"):
        dedup_search(np.array([0.9, 0.8]), np.array([0]), np.array([1]))


# --- rate_with_ci ------------------------------------------------------------------------------------------------


def test_rate_with_ci() -> None:
    out = rate_with_ci(3, 10)
    assert out["rate"] == pytest.approx(0.3)
    assert out["ci95"] == pytest.approx(list(wilson_interval(3, 10)))
    assert out["ci95"] == pytest.approx([0.1078, 0.6032], abs=1e-4)  # Wilson 95% for 3/10, by hand
    frac = rate_with_ci(2.5, 10)  # e.g. FMMPMR x M: the rate keeps the fraction, the interval rounds to 3
    assert frac["rate"] == pytest.approx(0.25)
    assert frac["ci95"] == pytest.approx(list(wilson_interval(3, 10)))
    assert rate_with_ci(2.4, 10)["ci95"] == pytest.approx(list(wilson_interval(2, 10)))
    empty = rate_with_ci(0, 0)
    assert math.isnan(empty["rate"]) and empty["ci95"] == [0.0, 1.0]
    with pytest.raises(ValueError, match="successes"):
        rate_with_ci(11, 10)
    with pytest.raises(ValueError, match="successes"):
        rate_with_ci(-1, 10)
    with pytest.raises(ValueError, match="n must"):
        rate_with_ci(0, -1)


def test_module_does_not_import_torch() -> None:
    code = "import sys, facesec.families.morph.measures; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_rmmr_best_of_n_compares_like_with_like() -> None:
    """MMPMR takes each contributor's best probe; the plain RMMR sets that against single genuine comparisons and
    can pass 1. The best-of-N variant scores the genuine side the same way: A's own photo against A's probes."""
    from facesec.families.morph.run import _at_fmr
    from facesec.measures.judges import Judge

    t = 0.5
    from types import SimpleNamespace

    people = SimpleNamespace(names=["a", "b", "c"])
    judge = Judge("toy", None, people, None, genuine=np.array([0.9, 0.4, 0.45, 0.3]),  # type: ignore[arg-type]
                  impostor=np.array([0.1, 0.2]), thresholds={1e-3: t}, points=[_in_sample(1e-3, t, 2, 3)])
    sa = [np.array([0.6, 0.2]), np.array([0.7, 0.1]), np.array([0.3, 0.2])]  # best: accepted, accepted, not
    sb = [np.array([0.1, 0.8]), np.array([0.6, 0.6]), np.array([0.9, 0.9])]
    host_a = [np.array([0.2, 0.7]), np.array([0.4, 0.3]), np.array([0.8, 0.1])]  # A's own photo: best of N 2 of 3
    host_b = [np.array([0.1, 0.1])] * 3
    m = _at_fmr(judge, 1e-3, sa, sb, host_a, host_b, [(0, 1), (1, 2), (2, 0)])
    assert m["mmpmr"] == pytest.approx(2 / 3) and m["fnmr"] == pytest.approx(0.75)
    lo, hi = m["mmpmr_ci95_cluster"]  # three morphs: no narrower than Wilson's interval
    assert lo <= wilson_interval(2, 3)[0] and hi >= wilson_interval(2, 3)[1]
    assert "fnmr_ci95_cluster" not in m  # a judge given bare scores has no people to resample
    assert m["rmmr"] == pytest.approx(2 / 3 + 0.75)  # above 1: best-of-N against single comparisons
    assert m["genuine_accept_rate_best_of_n"] == pytest.approx(2 / 3)
    assert m["rmmr_best_of_n"] == pytest.approx(1.0)  # as often as a genuine best-of-N: no gain from morphing
    assert m["n_impostor_identity_pairs"] == 3


def test_error_rates_resample_the_people_of_the_pairs() -> None:
    """FNMR whose genuine pairs are all rejected for half the people and all accepted for the rest: its cluster
    interval is far wider than Wilson's over the 100 pairs; the genuine acceptance interval mirrors it."""
    from facesec.families.morph.run import _cluster_intervals
    from facesec.measures.judges import Judge

    genuine = np.where(np.repeat(np.arange(10), 10) < 5, 0.1, 0.9)
    impostor = np.full(45, 0.1)
    pairs = np.array(list(itertools.combinations(range(10), 2)))
    judge = Judge("toy", None, None, None, genuine, impostor, {1e-3: 0.5},  # type: ignore[arg-type]
                  genuine_people=np.repeat(np.arange(10), 10), impostor_people=pairs)
    m = _cluster_intervals(judge, 0.5, [], [], [], [], [])
    w_lo, w_hi = wilson_interval(50, 100)
    lo, hi = m["fnmr_ci95_cluster"]
    assert lo < w_lo - 0.1 and hi > w_hi + 0.1
    assert m["genuine_accept_rate_ci95_cluster"] == pytest.approx([1 - hi, 1 - lo])
    assert m["impostor_accept_rate_ci95_cluster"][0] == 0.0


def test_map_counts_a_model_in_another_runtime_once() -> None:
    """dlib-cpp runs the very weights file dlib-resnet ports: MAP's 'on c recognizers' must not count it twice;
    a copy with other weights (a fine-tuned dlib-resnet) is another recognizer."""
    from types import SimpleNamespace

    from facesec.families.morph.run import _independent
    from facesec.measures.judges import Judge

    def judge(name: str, weights: str) -> Judge:
        model = SimpleNamespace(info=SimpleNamespace(name=name, weights_sha256=weights))
        return Judge(name, model, None, None, np.zeros(0), np.zeros(0), {})  # type: ignore[arg-type]

    kept, repeats = _independent([judge("dlib-resnet", "d"), judge("hse-faceres", "h"), judge("dlib-cpp", "d"),
                                  judge("dlib-resnet#2", "tuned")])
    assert kept == [0, 1, 3] and repeats == [("dlib-cpp", "dlib-resnet")]


def _in_sample(fmr: float, threshold: float, impostor_pairs: int, identities: int) -> OperatingPoint:
    """A hand-made judge's operating point: set on its own people."""
    return OperatingPoint(recognizer="toy", fmr=fmr, threshold=threshold, threshold_ci95=[threshold, threshold],
                          source="in-sample", dataset="", identities=identities, impostor_pairs=impostor_pairs,
                          identity_pairs=identities * (identities - 1) // 2, supported=True)
