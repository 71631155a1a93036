"""Section 3 / appendices A-B of the paper, checked against independent brute force.

The reference values here never come from ``speakerid.theory`` itself: path lengths come from a BFS on the
explicitly unrolled graph (or on the integers, for the change-making problem), divisor chains from a
separate recursive enumeration, and the paper's closed forms are typed in from the text.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from itertools import pairwise

import pytest

from speakerid.theory import (
    best_dilations_bruteforce,
    cyclic_graph,
    divisor_chains,
    exponential_dilations,
    mean_recurrent_edges,
    mean_recurrent_length,
    mean_recurrent_length_dilated_closed_form,
    mean_recurrent_length_dilated_corrected,
    mean_recurrent_length_divisor_chain,
    mean_recurrent_length_skip_closed_form,
    min_recurrent_edges,
    receptive_field,
    recurrent_edges_per_node,
    shortest_paths,
)

INF = math.inf


# --------------------------------------------------------------------------- independent brute force


def unrolled_bfs_paths(dilations: Sequence[int], m: int, architecture: str) -> list[float]:
    """``max_i d_i(n)``, ``n = 1..m``, by BFS on the unrolled graph, for every start ``i`` in one period.

    Nodes are ``(t, l)``, ``t = 0..2m``, ``l = 1..L``. Edges: input ``x_t -> (t, 1)`` (counted as one of the
    ``L`` layer edges), ``(t, l) -> (t, l + 1)``, recurrent ``(t, l) -> (t + s_l, l)`` and, for the skip
    RNN, ``(t, l) -> (t + 1, l)``. The output at time ``t`` is read off ``(t, L)``.
    """
    n_layers = len(dilations)
    horizon = 2 * m
    worst = [0.0] * (m + 1)
    for i in range(m):
        dist = {(i, 1): 1}  # the input edge x_i -> (i, 1)
        queue = deque([(i, 1)])
        while queue:
            t, l = queue.popleft()
            succ = [(t + dilations[l - 1], l)]
            if architecture == "skip":
                succ.append((t + 1, l))
            if l < n_layers:
                succ.append((t, l + 1))
            for v in succ:
                if v[0] <= horizon and v not in dist:
                    dist[v] = dist[(t, l)] + 1
                    queue.append(v)
        for n in range(1, m + 1):
            worst[n] = max(worst[n], dist.get((i + n, n_layers), INF))
    return worst[1:]


def coin_bfs(coins: Sequence[int], m: int) -> list[float]:
    """Fewest coins summing to ``n`` for ``n = 1..m``, by BFS over the integers (independent of the DP)."""
    dist = {0: 0}
    queue = deque([0])
    while queue:
        a = queue.popleft()
        for c in coins:
            if a + c <= m and a + c not in dist:
                dist[a + c] = dist[a] + 1
                queue.append(a + c)
    return [dist.get(n, INF) for n in range(1, m + 1)]


def dbar_by_coins(dilations: Sequence[int], m: int) -> float:
    """Mean recurrent length of a DilatedRNN from ``coin_bfs`` (eq. 5 with eq. 12)."""
    return sum(coin_bfs(dilations, m)) / m + len(dilations)


def chains(d: int, m: int) -> list[list[int]]:
    """Divisor chains ``1 = s_1 | ... | s_d = m`` by recursion (independent of ``divisor_chains``)."""
    if d == 1:
        return [[1]] if m == 1 else []

    def extend(prefix: list[int]) -> list[list[int]]:
        if len(prefix) == d - 1:
            return [prefix + [m]] if m % prefix[-1] == 0 else []
        out: list[list[int]] = []
        for k in range(prefix[-1], m + 1, prefix[-1]):
            if m % k == 0:
                out += extend(prefix + [k])
        return out

    return extend([1])


# --------------------------------------------------------------------------- shortest paths (sec. 3.1)

BFS_CASES = [
    ([1, 2, 4, 8], None, "dilated"),
    ([2**k for k in range(9)], None, "dilated"),  # 1..256
    ([1, 3, 9], None, "dilated"),
    ([1, 3, 4], None, "dilated"),  # not a divisor chain: greedy is not optimal
    ([1, 3, 4], 20, "dilated"),  # m beyond the largest dilation
    ([3, 5], 30, "dilated"),  # 1, 2, 4, 7 unreachable
    ([1, 1, 5], None, "dilated"),
    ([2, 4, 8], None, "dilated"),  # l0 = 1: odd spans unreachable
    ([4, 8, 16, 32], None, "dilated"),  # l0 = 2
    ([8, 8, 8, 8], None, "skip"),  # the regular skip RNN of appendix A
    ([1, 2, 4, 8], None, "skip"),
    ([2, 4, 8], None, "skip"),
    ([3, 5], 17, "skip"),
    ([64] * 7, None, "skip"),
]


@pytest.mark.parametrize("dilations,m,architecture", BFS_CASES)
def test_shortest_paths_match_unrolled_graph_bfs(dilations, m, architecture):
    period = max(dilations) if m is None else m
    expected = unrolled_bfs_paths(dilations, period, architecture)
    got = shortest_paths(dilations, m, architecture)
    assert got == expected
    expected_mean = sum(expected) / period
    got_mean = mean_recurrent_length(dilations, m, architecture)
    if math.isinf(expected_mean):
        assert math.isinf(got_mean)
    else:
        assert got_mean == pytest.approx(expected_mean, rel=1e-12)
    assert min_recurrent_edges(dilations, m, architecture) == [d - len(dilations) for d in expected]


def test_unreachable_spans_are_infinite_for_l0_positive():
    # eq. 4 with l0 = 1: without the final 1-by-M^l0 convolution odd spans cannot be covered.
    dils = exponential_dilations(3, M=2, l0=1)
    assert dils == [2, 4, 8]
    d = shortest_paths(dils)
    assert all(math.isinf(d[n - 1]) for n in range(1, 9, 2))
    assert d[1::2] == [4, 4, 5, 4]  # n = 2, 4, 6, 8
    assert math.isinf(mean_recurrent_length(dils))
    assert math.isinf(mean_recurrent_edges(dils))


def test_eq10_popcount_for_powers_of_two():
    for d in range(1, 11):
        dils = exponential_dilations(d)
        m = dils[-1]
        assert shortest_paths(dils) == [bin(n).count("1") + d for n in range(1, m + 1)]


def test_dp_is_exact_where_greedy_change_making_fails():
    # Greedy (appendix A, eq. 14) is only valid for divisor chains: 6 = 4 + 1 + 1 greedily, but 3 + 3.
    assert min_recurrent_edges([1, 3, 4], m=6)[5] == 2
    assert min_recurrent_edges([1, 3, 4], m=6) == coin_bfs([1, 3, 4], 6)
    for dils in ([1, 5, 7], [1, 6, 9, 20], [2, 3, 7, 11]):
        assert min_recurrent_edges(dils, m=100) == coin_bfs(dils, 100)


def test_paper_example_single_skip_of_period_10000():
    # Section 3.1: s(l) = m = 10,000 in eq. 2 gives d_i(n) = n for n < m and d_i(m) = 1 (recurrent edges).
    m = 10_000
    r = min_recurrent_edges([m], architecture="skip")
    assert r[: m - 1] == list(range(1, m))
    assert r[m - 1] == 1


def test_skip_rnn_with_exponential_skips_equals_dilated_rnn():
    # Section 3.1: with s(l) = 2^(l-1) the skip RNN is a strict superset and has exactly the same d_bar.
    for d in range(1, 10):
        dils = exponential_dilations(d)
        assert shortest_paths(dils, architecture="skip") == shortest_paths(dils)
        assert recurrent_edges_per_node("skip", dils) == 2 * recurrent_edges_per_node("dilated", dils)


# --------------------------------------------------------------------------- closed forms (eqs. 6, 7)

POWERS_OF_TWO = [2**k for k in range(10)]  # m = 1..512


@pytest.mark.parametrize("m", POWERS_OF_TWO)
def test_eq6_skip_closed_form_is_exact(m):
    d = int(math.log2(m)) + 1
    dp = mean_recurrent_length([m] * d, architecture="skip")
    assert dp == pytest.approx(mean_recurrent_length_skip_closed_form(m), rel=1e-12)
    # Typed in from eq. 6 independently of the implementation.
    assert dp == pytest.approx((m - 1) / 2 + math.log2(m) + 1 / m + 1, rel=1e-12)


def test_appendix_a_skip_expression_for_any_m_and_depth():
    # d_i(n) = n + d (n < m), 1 + d (n = m)  =>  d_bar = (m - 1)/2 + 1/m + d, for every m, d.
    for m in range(2, 513):
        for d in (1, 2, 5):
            dp = mean_recurrent_length([m] * d, architecture="skip")
            assert dp == pytest.approx((m - 1) / 2 + 1 / m + d, rel=1e-12)
            assert dp == pytest.approx(mean_recurrent_length_skip_closed_form(m, n_layers=d), rel=1e-12)


@pytest.mark.parametrize("m", POWERS_OF_TWO)
def test_eq7_dilated_closed_form_is_off_by_log2m_over_2m(m):
    d = int(math.log2(m)) + 1
    dils = exponential_dilations(d)
    exact = sum(unrolled_bfs_paths(dils, m, "dilated")) / m if m <= 64 else dbar_by_coins(dils, m)
    assert mean_recurrent_length(dils) == pytest.approx(exact, rel=1e-12)
    # The true value is 3/2 log2 m + 1/m + 1 ...
    assert exact == pytest.approx(1.5 * math.log2(m) + 1 / m + 1, rel=1e-12)
    assert mean_recurrent_length_dilated_corrected(m) == pytest.approx(exact, rel=1e-12)
    # ... while eq. 7 as printed, (3m - 1)/(2m) log2 m + 1/m + 1, is short by exactly log2(m) / (2m).
    printed = (3 * m - 1) / (2 * m) * math.log2(m) + 1 / m + 1
    assert mean_recurrent_length_dilated_closed_form(m) == pytest.approx(printed, rel=1e-12)
    assert exact - printed == pytest.approx(math.log2(m) / (2 * m), abs=1e-12)
    if m > 1:
        assert printed < exact


def test_eq7_discrepancy_by_hand():
    # m = 2, dilations [1, 2]: d(1) = d(2) = 1 + 2 layers, so d_bar = 3; eq. 7 says 2.75.
    assert shortest_paths([1, 2]) == [3, 3]
    assert mean_recurrent_length([1, 2]) == 3.0
    assert mean_recurrent_length_dilated_closed_form(2) == 2.75
    # m = 4, dilations [1, 2, 4]: r = 1, 1, 2, 1  => d_bar = 5/4 + 3 = 4.25; eq. 7 says 4.0.
    assert mean_recurrent_length([1, 2, 4]) == 4.25
    assert mean_recurrent_length_dilated_closed_form(4) == pytest.approx(4.0)


def test_eq15_bit_count_slip():
    # Eq. 15 uses (d - 1)(m - 1)/2 set bits over n = 1..m-1; the true count is (d - 1) m / 2.
    for k in range(1, 11):
        m, d = 2**k, k + 1
        bits = sum(bin(n).count("1") for n in range(1, m))
        assert bits == (d - 1) * m // 2
        assert bits != (d - 1) * (m - 1) / 2


@pytest.mark.parametrize("m", [12, 16, 36, 64, 72])
def test_divisor_chain_closed_form(m):
    for d in range(2, 6):
        for chain in chains(d, m):
            assert mean_recurrent_length_divisor_chain(chain) == pytest.approx(dbar_by_coins(chain, m))


def test_eq19_omits_the_one_over_m_term():
    # Eq. 19: r_bar = 1/2 (sum_i s_{i+1}/s_i - d + 1); the exact r_bar (eq. 17) is that plus 1/m.
    for m, d in [(16, 3), (16, 5), (64, 4), (36, 3), (72, 4)]:
        for chain in chains(d, m):
            eq19 = 0.5 * (sum(b // a for a, b in pairwise(chain)) - d + 1)
            exact = sum(coin_bfs(chain, m)) / m
            assert mean_recurrent_edges(chain) == pytest.approx(exact)
            assert exact - eq19 == pytest.approx(1 / m)


# --------------------------------------------------------------------------- N_r (eq. 8)


@pytest.mark.parametrize("dilations", [[1, 2, 4, 8], [1, 3, 9], [2, 4, 8], [1, 3, 4], [16, 16], [1]])
def test_recurrent_edges_per_node(dilations):
    assert recurrent_edges_per_node("dilated", dilations) == 1
    assert recurrent_edges_per_node("skip", dilations) == 2
    # Inspect the cyclic graph itself: every node has one recurrent out-edge (two for skip), of the right
    # sigma and target, plus one sigma = 0 edge upward except at the top layer.
    m, n_layers = max(dilations), len(dilations)
    for arch, steps in (("dilated", lambda s: [s]), ("skip", lambda s: [1, s])):
        nodes, edges = cyclic_graph(dilations, arch)
        assert sorted(nodes) == sorted((i, l) for i in range(m) for l in range(1, n_layers + 1))
        for i, l in nodes:
            out = sorted((v, sigma) for u, v, sigma in edges if u == (i, l))
            want = [(((i + s) % m, l), s) for s in steps(dilations[l - 1])]
            if l < n_layers:
                want.append(((i, l + 1), 0))
            assert out == sorted(want)


def test_recurrent_edges_per_node_defaults():
    assert recurrent_edges_per_node() == 1
    assert recurrent_edges_per_node("skip") == 2


# --------------------------------------------------------------------------- Theorem 3.1


@pytest.mark.parametrize("m,d", [(16, 3), (16, 5), (64, 3), (64, 4), (64, 7), (81, 3), (81, 5), (36, 3)])
def test_theorem_3_1(m, d):
    M = round(m ** (1 / (d - 1)))
    assert M ** (d - 1) == m
    candidates = chains(d, m)
    assert sorted(divisor_chains(d, m)) == sorted(candidates)
    scores = {tuple(c): dbar_by_coins(c, m) for c in candidates}
    best = min(scores.values())
    winners = [list(c) for c, v in scores.items() if v == pytest.approx(best)]
    expected = [M**k for k in range(d)]
    assert winners == [expected]  # unique minimiser, as AM-GM (eqs. 20-21) predicts
    chain, value = best_dilations_bruteforce(d, m)
    assert chain == expected
    assert value == pytest.approx(best)
    assert exponential_dilations(d, M) == expected


def test_theorem_3_1_needs_integer_M():
    # m = 8, d = 3: no integer M with M^2 = 8; [1, 2, 8] and [1, 4, 8] tie (ratio sums 2 + 4 = 4 + 2).
    scores = {tuple(c): dbar_by_coins(c, 8) for c in chains(3, 8)}
    best = min(scores.values())
    assert sorted(c for c, v in scores.items() if v == best) == [(1, 2, 8), (1, 4, 8)]
    chain, value = best_dilations_bruteforce(3, 8)
    assert chain == [1, 2, 8]
    assert value == pytest.approx(best)


# --------------------------------------------------------------------------- eq. 4 and section 3.3


def test_exponential_dilations():
    assert exponential_dilations(5) == [1, 2, 4, 8, 16]
    assert exponential_dilations(3, M=3) == [1, 3, 9]
    assert exponential_dilations(4, M=2, l0=3) == [8, 16, 32, 64]
    assert exponential_dilations(1, M=7, l0=2) == [49]


def conv_receptive_field(dilations: Sequence[int], kernel_size: int) -> int:
    """Stack causal dilated convolutions explicitly and count which past inputs reach one output."""
    offsets = {0}
    for s in dilations:
        offsets = {o + k * s for o in offsets for k in range(kernel_size)}
    return max(offsets) + 1


@pytest.mark.parametrize("dilations,k", [([1, 2, 4, 8], 2), ([1, 3, 9], 3), ([2, 2, 5], 2), ([1], 4)])
def test_receptive_field(dilations, k):
    assert receptive_field(dilations, k) == conv_receptive_field(dilations, k)


def test_receptive_field_is_two_cycles():
    # Section 3.3: dilations 2^(l-1), l = 1..d, kernel 2 -> receptive field 2^d = 2m.
    for d in range(1, 12):
        dils = exponential_dilations(d)
        assert receptive_field(dils) == 2**d == 2 * dils[-1]


# --------------------------------------------------------------------------- input validation


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        shortest_paths([])
    with pytest.raises(ValueError):
        shortest_paths([0, 1])
    with pytest.raises(ValueError):
        shortest_paths([1, 2], m=0)
    with pytest.raises(ValueError):
        shortest_paths([1, 2], architecture="lstm")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        mean_recurrent_length_dilated_closed_form(12)
    with pytest.raises(ValueError):
        mean_recurrent_length_divisor_chain([1, 3, 4])
    with pytest.raises(ValueError):
        best_dilations_bruteforce(1, 4)
