"""Memory-capacity theory of Dilated RNNs (Chang et al., NeurIPS 2017, section 3 and appendices A/B).

Pure-Python (no torch) implementations of the paper's graph measures:

* ``d_i(n)``: shortest path from the input at time ``i`` to the output at time ``i + n`` (section 3.1),
  decomposed as ``d_i(n) = r_i(n) + L`` (eq. 12), where ``r_i(n)`` is the minimum number of recurrent
  (time-travelling) edges and ``L`` the number of layer-crossing edges;
* the mean recurrent length ``d_bar`` (Definition 3.2, eq. 5) and its closed forms (eqs. 6, 7/11);
* the number of recurrent edges per node ``N_r`` (Definition 3.3, eq. 8), counted on an explicit cyclic
  graph (Definition 3.1);
* Theorem 3.1 (optimality of ``s_l = M^(l-1)`` among divisor chains), checked by brute force;
* the receptive field of a dilated CNN (section 3.3).

Graph conventions (shared by every function here, and the ones the tests check against a BFS):

* Layers are ``1..L``. The input ``x_t`` enters layer 1 through one edge, layer ``l`` feeds layer ``l + 1``
  through one edge and the output is read off the top layer, so every input-to-output path has exactly
  ``L`` layer-crossing edges; this is the ``d`` in eq. 12.
* ``architecture="dilated"`` (eq. 1): layer ``l`` has the single recurrent edge ``t -> t + s_l``.
* ``architecture="skip"`` (eq. 2): layer ``l`` has both ``t -> t + 1`` and ``t -> t + s_l``.

There are no downward edges, so a path climbs the layers monotonically, taking some number of recurrent
steps in each. The order of the steps does not change the time span covered, so ``r(n)`` is exactly the
unbounded minimum-coin change-making problem (eqs. 13 and 16) with coins ``{s_l}`` (dilated) or
``{1} U {s_l}`` (skip). These graphs are time-invariant, so ``d_i(n)`` does not depend on ``i`` and the
``max_i`` of eq. 5 is a no-op (appendix B makes the same remark).

**Discrepancy with the paper (eq. 7 / 11 / 15).** The exact mean recurrent length of the standard
DilatedRNN with ``M = 2``, ``d = log2(m) + 1`` layers is

    d_bar = 3/2 * log2(m) + 1/m + 1,

not ``(3m - 1)/(2m) * log2(m) + 1/m + 1`` as printed; the printed form is too small by exactly
``log2(m) / (2m)`` (e.g. ``m = 2``: dilations ``[1, 2]`` give ``d(1) = d(2) = 3`` so ``d_bar = 3``, while
eq. 7 gives 2.75). The slip is in the first step of eq. 15: the number of set bits among
``n = 1..m-1`` is ``(d - 1) * m / 2`` (each of the ``d - 1`` low bits is set for exactly half of
``0..m-1``), not ``(d - 1) * (m - 1) / 2``. The paper's own eq. 19, with ``s_{i+1}/s_i = 2``, agrees with
the corrected value once the ``1/m`` it states in words (the single use of ``s_d`` for ``n = m``) is added
back; eq. 19 as printed omits that ``1/m``. Neither slip affects Theorem 3.1, since the ``1/m`` is a
constant over the candidate set. Eq. 6 (regular skip RNN) is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import combinations_with_replacement, pairwise
from typing import Literal

Architecture = Literal["dilated", "skip"]
_ARCHITECTURES: tuple[str, ...] = ("dilated", "skip")

__all__ = [
    "Architecture",
    "best_dilations_bruteforce",
    "cyclic_graph",
    "divisor_chains",
    "exponential_dilations",
    "mean_recurrent_edges",
    "mean_recurrent_length",
    "mean_recurrent_length_dilated_closed_form",
    "mean_recurrent_length_dilated_corrected",
    "mean_recurrent_length_divisor_chain",
    "mean_recurrent_length_skip_closed_form",
    "min_recurrent_edges",
    "receptive_field",
    "recurrent_edges_per_node",
    "shortest_paths",
]


def _check_dilations(dilations: Sequence[int]) -> list[int]:
    ds = [int(s) for s in dilations]
    if not ds:
        raise ValueError("dilations must be non-empty")
    if any(s < 1 or s != d for s, d in zip(ds, dilations, strict=True)):
        raise ValueError(f"dilations must be positive integers, got {list(dilations)}")
    return ds


def _check_architecture(architecture: str) -> None:
    if architecture not in _ARCHITECTURES:
        raise ValueError(f"architecture must be one of {_ARCHITECTURES}, got {architecture!r}")


def _period(dilations: Sequence[int], m: int | None) -> int:
    if m is None:
        return max(dilations)
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    return m


def _is_power_of_two(m: int) -> bool:
    return m >= 1 and m & (m - 1) == 0


def exponential_dilations(n_layers: int, M: int = 2, l0: int = 0) -> list[int]:
    """Dilations ``s(l) = M^(l - 1 + l0)`` for ``l = 1..n_layers`` (eq. 4; eq. 3 is the case ``l0 = 0``)."""
    if n_layers < 1 or M < 1 or l0 < 0:
        raise ValueError(f"need n_layers >= 1, M >= 1, l0 >= 0; got {n_layers}, {M}, {l0}")
    return [M ** (l - 1 + l0) for l in range(1, n_layers + 1)]


def min_recurrent_edges(
    dilations: Sequence[int], m: int | None = None, architecture: Architecture = "dilated"
) -> list[int | float]:
    """``r(n)`` for ``n = 1..m``: the fewest recurrent edges on an input-to-output path spanning ``n`` steps.

    This is the change-making problem of eqs. 13/16, solved exactly by dynamic programming (unbounded coin
    change, minimum coin count) with coins ``{s_l}`` for ``"dilated"`` and ``{1} U {s_l}`` for ``"skip"``.
    Unlike the greedy algorithm of appendix A (eq. 14), which is only optimal when the dilations divide
    each other, this is exact for any positive dilations (e.g. ``[1, 3, 4]``: ``r(6) = 2`` via ``3 + 3``,
    greedy gives 3). A span that no combination of coins reaches (e.g. odd ``n`` with dilations
    ``[2, 4, 8]``, the ``l0 > 0`` case of eq. 4 without the final convolution) gets ``math.inf``.

    ``m`` defaults to the largest dilation (the period ``M^(d-1)`` used by the paper).
    """
    _check_architecture(architecture)
    ds = _check_dilations(dilations)
    m = _period(ds, m)
    coins = sorted(set(ds) | ({1} if architecture == "skip" else set()))
    best: list[int | float] = [0] + [math.inf] * m
    for n in range(1, m + 1):
        for c in coins:
            if c > n:
                break
            if best[n - c] + 1 < best[n]:
                best[n] = best[n - c] + 1
    return best[1:]


def shortest_paths(
    dilations: Sequence[int], m: int | None = None, architecture: Architecture = "dilated"
) -> list[int | float]:
    """``d(n) = max_i d_i(n)`` for ``n = 1..m`` (section 3.1), via ``d_i(n) = r_i(n) + L`` (eq. 12).

    ``L = len(dilations)`` counts the layer-crossing edges (input -> layer 1, then layer ``l`` -> ``l + 1``;
    the output is read off the top layer). Unreachable spans are ``math.inf`` (see
    :func:`min_recurrent_edges`). For divisor chains starting at 1 this equals eq. 10: with ``M = 2`` it is
    the number of set bits of ``n`` plus ``L``.
    """
    n_layers = len(_check_dilations(dilations))
    return [r + n_layers for r in min_recurrent_edges(dilations, m, architecture)]


def mean_recurrent_edges(
    dilations: Sequence[int], m: int | None = None, architecture: Architecture = "dilated"
) -> float:
    """``r_bar = (1/m) sum_{n=1}^{m} max_i r_i(n)`` (eq. 17); ``math.inf`` if some span is unreachable."""
    rs = min_recurrent_edges(dilations, m, architecture)
    return sum(rs) / len(rs)


def mean_recurrent_length(
    dilations: Sequence[int], m: int | None = None, architecture: Architecture = "dilated"
) -> float:
    """Mean recurrent length ``d_bar = (1/m) sum_{n=1}^{m} max_i d_i(n)`` (Definition 3.2, eq. 5).

    Computed exactly from :func:`shortest_paths`; ``math.inf`` if some span ``n <= m`` is unreachable
    (as for a dilated CNN beyond its receptive field, section 3.3). ``m`` defaults to the largest dilation.
    """
    ds = shortest_paths(dilations, m, architecture)
    return sum(ds) / len(ds)


def mean_recurrent_length_skip_closed_form(m: int, n_layers: int | None = None) -> float:
    """Eq. 6: ``d_bar = (m - 1)/2 + log2(m) + 1/m + 1`` for the regular skip RNN with every ``s(l) = m``.

    Appendix A: ``d_i(n) = n + d`` for ``n < m`` and ``1 + d`` for ``n = m``, so
    ``d_bar = (m - 1)/2 + 1/m + d``; the paper substitutes ``d = log2(m) + 1`` (``m = 2^(d-1)``), which is
    the default here. Pass ``n_layers`` to get the same expression for any ``m`` and layer count. This
    formula is exact (verified against the DP and a BFS on the unrolled graph).
    """
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    d = math.log2(m) + 1 if n_layers is None else n_layers
    return (m - 1) / 2 + 1 / m + d


def mean_recurrent_length_dilated_closed_form(m: int) -> float:
    """Eq. 7 / eq. 11 **as printed**: ``(3m - 1)/(2m) * log2(m) + 1/m + 1``.

    Meant for the DilatedRNN with ``s(l) = 2^(l-1)``, ``d = log2(m) + 1`` layers, ``m`` a power of two.
    This printed value is **too small by exactly** ``log2(m) / (2m)``; the true value is
    :func:`mean_recurrent_length_dilated_corrected`. The error is in eq. 15, which counts
    ``(d - 1)(m - 1)/2`` set bits over ``n = 1..m-1`` instead of ``(d - 1) m / 2`` (see the module
    docstring). Kept verbatim so the discrepancy stays testable.
    """
    if not _is_power_of_two(m):
        raise ValueError(f"eq. 7 assumes m = 2^(d-1); got m={m}")
    return (3 * m - 1) / (2 * m) * math.log2(m) + 1 / m + 1


def mean_recurrent_length_dilated_corrected(m: int) -> float:
    """Exact ``d_bar`` of the ``M = 2`` DilatedRNN with period ``m = 2^(d-1)``: ``3/2 log2(m) + 1/m + 1``.

    From eq. 10: ``sum_{n=1}^{m} popcount(n) = (d - 1) m / 2 + 1``, so
    ``d_bar = (d - 1)/2 + 1/m + d``. Equals eq. 7 plus ``log2(m) / (2m)``; the two agree only at ``m = 1``.
    """
    if not _is_power_of_two(m):
        raise ValueError(f"the M = 2 DilatedRNN has m = 2^(d-1); got m={m}")
    return 1.5 * math.log2(m) + 1 / m + 1


def mean_recurrent_length_divisor_chain(dilations: Sequence[int]) -> float:
    """Exact ``d_bar`` (period ``m = s_L``) for a divisor chain ``1 = s_1 | s_2 | ... | s_L`` (eq. 9).

    Greedy change-making is optimal for such chains and writes ``n in 0..m-1`` in the mixed radix
    ``(s_2/s_1, ..., s_L/s_{L-1})``, each digit uniform over ``0..s_{i+1}/s_i - 1`` (eq. 18). Replacing
    ``n = 0`` (no edges) by ``n = m`` (one ``s_L`` edge) gives

        d_bar = L + 1/2 * sum_{i=1}^{L-1} (s_{i+1}/s_i - 1) + 1/m.

    The paper's eq. 19 is this ``r_bar`` without the ``+ 1/m`` term (a constant, so Theorem 3.1 is
    unaffected).
    """
    ds = _check_dilations(dilations)
    if ds[0] != 1 or any(b % a for a, b in pairwise(ds)):
        raise ValueError(f"need a divisor chain starting at 1, got {ds}")
    m = ds[-1]
    return len(ds) + 0.5 * sum(b // a - 1 for a, b in pairwise(ds)) + 1 / m


def cyclic_graph(
    dilations: Sequence[int], architecture: Architecture = "dilated", m: int | None = None
) -> tuple[list[tuple[int, int]], list[tuple[tuple[int, int], tuple[int, int], int]]]:
    """The cyclic graph ``G_C = (V_C, E_C)`` of Definition 3.1 for the hidden (cell) nodes.

    Nodes are ``(i, l)`` with ``i`` the time index modulo the period ``m`` and ``l`` the layer (1-based).
    Edges are ``(u, v, sigma)`` with ``sigma`` the number of time steps travelled: recurrent edges
    ``((i, l), ((i + s) mod m, l), s)`` for ``s = s_l`` (and also ``s = 1`` for ``"skip"``, eq. 2), and
    layer edges ``((i, l), (i, l + 1), 0)``. Input/output nodes are left out, as in the paper's count
    behind ``N_r`` (eq. 8). ``m`` defaults to the largest dilation, as everywhere in this module (the
    edges are time-invariant, so any ``m >= 1`` gives a valid periodic folding).
    """
    _check_architecture(architecture)
    ds = _check_dilations(dilations)
    m = _period(ds, m)
    nodes = [(i, l) for l in range(1, len(ds) + 1) for i in range(m)]
    edges: list[tuple[tuple[int, int], tuple[int, int], int]] = []
    for l, s in enumerate(ds, start=1):
        steps = [s] if architecture == "dilated" else [1, s]
        for i in range(m):
            edges.extend(((i, l), ((i + step) % m, l), step) for step in steps)
            if l < len(ds):
                edges.append(((i, l), (i, l + 1), 0))
    return nodes, edges


def recurrent_edges_per_node(
    architecture: Architecture = "dilated", dilations: Sequence[int] | None = None, m: int | None = None
) -> float:
    """``N_r = Card{e in E_C : sigma != 0} / Card{V_C}`` (Definition 3.3, eq. 8).

    Counted on the explicit :func:`cyclic_graph` (default dilations ``[1, 2, 4, 8]``). The paper states
    ``N_r = 1`` for the DilatedRNN and ``N_r = 2`` for the regular skip RNN (section 3.2).
    """
    ds = exponential_dilations(4) if dilations is None else dilations
    nodes, edges = cyclic_graph(ds, architecture, m)
    return sum(1 for _, _, sigma in edges if sigma != 0) / len(nodes)


def divisor_chains(d: int, m: int) -> Iterator[list[int]]:
    """All chains ``1 = s_1 | s_2 | ... | s_d = m`` (each divides the next; repeats allowed), per eq. 9."""
    if d < 1 or m < 1:
        raise ValueError(f"need d >= 1 and m >= 1, got d={d}, m={m}")
    if d == 1:
        if m == 1:
            yield [1]
        return
    divisors = [k for k in range(1, m + 1) if m % k == 0]
    for middle in combinations_with_replacement(divisors, d - 2):
        chain = [1, *middle, m]
        if all(b % a == 0 for a, b in pairwise(chain)):
            yield chain


def best_dilations_bruteforce(d: int, m: int) -> tuple[list[int], float]:
    """Brute-force Theorem 3.1: the divisor chain of :func:`divisor_chains` with the smallest ``d_bar``.

    Returns ``(dilations, d_bar)``, ``d_bar`` computed exactly by :func:`mean_recurrent_length` with period
    ``m``. Ties are broken by the lexicographically smallest chain. When ``m = M^(d-1)`` for an integer
    ``M`` the theorem says the unique minimiser is ``[M^0, ..., M^(d-1)]`` (AM-GM, eqs. 20-21); otherwise
    several chains can tie (e.g. ``d = 3, m = 8``: ``[1, 2, 8]`` and ``[1, 4, 8]``).
    """
    best: tuple[list[int], float] | None = None
    for chain in divisor_chains(d, m):
        value = mean_recurrent_length(chain, m)
        if best is None or value < best[1] - 1e-12:
            best = (chain, value)
    if best is None:
        raise ValueError(f"no divisor chain of length {d} ends at {m}")
    return best


def receptive_field(dilations: Sequence[int], kernel_size: int = 2) -> int:
    """Receptive field of a stack of causal dilated convolutions (section 3.3): ``1 + (k - 1) sum_l s_l``.

    With ``k = 2`` and ``s_l = 2^(l-1)``, ``l = 1..d``, this is ``2^d``, i.e. two cycles of ``m = 2^(d-1)``,
    as stated in section 3.3; a DilatedRNN's recurrent paths are unbounded in time.
    """
    ds = _check_dilations(dilations)
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    return 1 + (kernel_size - 1) * sum(ds)
