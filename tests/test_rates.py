"""Intervals at the level of independence (issue 39): the cluster bootstrap resamples people, so outcomes that
are identical within each person count as one person's worth of evidence, and never less than Wilson's."""

from __future__ import annotations

import numpy as np
import pytest

from facesec.families.morph.measures import contributor_clusterings
from facesec.measures.rates import (
    cluster_interval,
    multiway_interval,
    paired_difference,
    rate_with_intervals,
    wilson_interval,
)


def test_identical_within_person_is_wider_than_wilson() -> None:
    """Ten people, ten photos each, five people always fooled and five never: 100 decisions, but ten people."""
    outcomes = np.repeat([1, 0] * 5, 10).astype(bool)
    people = np.repeat(np.arange(10), 10)
    lo, hi = cluster_interval(outcomes, people)
    w_lo, w_hi = wilson_interval(50, 100)
    assert hi - lo > 2 * (w_hi - w_lo)  # Wilson treats 100 photos as independent; there are 10 people
    assert lo < 0.3 and hi > 0.7  # about the width of 5 successes out of 10


def test_independent_outcomes_keep_about_wilson() -> None:
    rng = np.random.default_rng(1)
    outcomes = rng.random(400) < 0.3
    people = np.arange(400)  # one decision per person: nothing clusters
    lo, hi = cluster_interval(outcomes, people)
    w_lo, w_hi = wilson_interval(int(outcomes.sum()), 400)
    assert lo <= w_lo and hi >= w_hi  # never narrower than Wilson
    assert (hi - lo) < 1.15 * (w_hi - w_lo)


def test_all_fooled_still_has_wilsons_lower_bound() -> None:
    """Every person fooled every time: resampling people shows no spread, the decisions still carry Wilson's."""
    lo, hi = cluster_interval(np.ones(60, bool), np.repeat(np.arange(6), 10))
    assert (lo, hi) == pytest.approx(wilson_interval(60, 60))


def test_one_person_gives_no_interval_and_shapes_must_match() -> None:
    assert cluster_interval(np.array([1, 0, 1]), np.zeros(3)) == (0.0, 1.0)
    with pytest.raises(ValueError, match="same length"):
        cluster_interval(np.ones(3), np.zeros(4))


def test_rate_with_intervals_holds_both() -> None:
    r = rate_with_intervals(np.repeat([True, False], 20), np.repeat(np.arange(4), 10))
    assert r["rate"] == 0.5 and r["ci95"] == pytest.approx(list(wilson_interval(20, 40)))
    assert r["ci95_cluster"][0] < r["ci95"][0] and r["ci95_cluster"][1] > r["ci95"][1]


def test_morph_intervals_take_the_widest_way_of_clustering() -> None:
    """A morph depends on both contributors: its interval is the widest over clustering by unordered pair
    (reciprocal morphs together), by A and by B. Reciprocal pairs with one outcome each widen it past Wilson's;
    random pairing (every subject in two morphs) never collapses it to (0, 1) the way connected groups did."""
    reciprocal = [(i, i + 1) for i in range(0, 20, 2)] + [(i + 1, i) for i in range(0, 20, 2)]
    outcomes = np.array([i % 4 < 2 for i in range(10)] * 2)  # each reciprocal pair fooled or not together
    by_pair, by_a, by_b = contributor_clusterings(reciprocal)
    assert by_pair[0] == by_pair[10] and by_a[0] != by_a[10]
    lo, hi = multiway_interval(outcomes, [by_pair, by_a, by_b])
    w_lo, w_hi = wilson_interval(int(outcomes.sum()), len(outcomes))
    assert lo < w_lo and hi > w_hi
    chain = [(i, (i + 1) % 20) for i in range(20)]  # one connected ring of people
    ring = multiway_interval(np.arange(20) % 2 == 0, contributor_clusterings(chain))
    assert ring != (0.0, 1.0) and ring[1] - ring[0] < 0.6


def test_an_fmr_needs_enough_pairs_of_people_not_only_of_photos() -> None:
    """20 people at FMR 1e-3: 4,750 image pairs of 5 photos each but 190 pairs of people, fewer than the 1,000 that
    one expected false match between people needs; 46 people (1,035 pairs) are enough."""
    from facesec import protocols

    assert protocols.identity_pairs(20) == 190 and protocols.identity_pairs(1) == 0
    flag = protocols.people_flag(20, 1e-3, "data.identities")
    assert flag is not None and flag.startswith("FMR 0.001 rests on 190 pairs of people (20 identities; needs 1000")
    assert flag.endswith("raise data.identities")
    assert protocols.people_flag(46, 1e-3, "x") is None and protocols.people_flag(45, 1e-3, "x") is not None


def test_a_paired_difference_shows_what_separate_intervals_hide() -> None:
    """Two models on the same 200 genuine pairs of 50 people: the second rejects one more pair of each of 12
    people and nothing else. Their Wilson intervals overlap; the paired interval of the drop excludes 0."""
    people = np.repeat(np.arange(50), 4)
    before = np.ones(200, bool)
    before[::10] = False  # 20 pairs both models reject
    after = before.copy()
    after[[4 * k + 1 for k in range(12)]] = False
    drop = paired_difference(before, after, people)
    assert drop["difference"] == pytest.approx(12 / 200)
    lo, hi = drop["ci95_cluster"]
    assert 0 < lo < 12 / 200 < hi
    wb, wa = wilson_interval(int(before.sum()), 200), wilson_interval(int(after.sum()), 200)
    assert wa[1] > wb[0]  # separately, the two intervals overlap: no drop could be claimed
    same = paired_difference(before, before, people)
    assert same["difference"] == 0.0
    lo, hi = same["ci95_cluster"]  # agreeing on all 200 pairs still leaves room for a difference under ~4/200
    room = wilson_interval(0, 200)[1]
    assert room > 0 and lo == pytest.approx(-room) and hi == pytest.approx(room)
    with pytest.raises(ValueError):
        paired_difference(before, after[:10], people)
