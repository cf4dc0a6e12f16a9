"""Reflection selection (Klar et al. 2023) on hand-made vectors."""
from __future__ import annotations

import math

import pytest
import torch

from edwidgets.errors import ExperimentError
from edwidgets.experiment.selection import (
    DSG_DEFAULT,
    RSG_MAX_DEFAULT,
    RSG_MAX_QUARTZ,
    delta_s_g,
    rsg,
    select_reflections,
)

F64 = torch.float64


def test_published_defaults():
    assert RSG_MAX_DEFAULT == 0.66
    assert RSG_MAX_QUARTZ == 0.9
    assert DSG_DEFAULT == 0.0015


def test_delta_s_g_lever_arm():
    axis = torch.tensor([0.0, 0.0, 2.0], dtype=F64)  # not unit length on purpose
    g = torch.tensor(
        [
            [1.0, 0.0, 0.0],  # lever arm 1
            [0.0, 0.0, 1.5],  # on the axis: lever arm 0
            [0.6, 0.8, 3.0],  # distance from z axis = 1
            [3.0, 4.0, -1.0],  # distance 5
        ],
        dtype=F64,
    )
    half = math.radians(0.5)
    d = delta_s_g(g, axis, half)
    assert d.tolist() == pytest.approx([half, 0.0, half, 5 * half], rel=1e-14, abs=1e-18)
    # an oblique axis: g = (1, 0, 0), â = (1, 1, 0)/√2 → |g × â| = 1/√2
    d2 = delta_s_g(torch.tensor([[1.0, 0.0, 0.0]], dtype=F64), torch.tensor([1.0, 1.0, 0.0], dtype=F64), 0.01)
    assert d2.item() == pytest.approx(0.01 / math.sqrt(2), rel=1e-14)
    # per-frame half widths broadcast
    d3 = delta_s_g(g[:1].expand(2, 3), axis, torch.tensor([0.01, 0.02], dtype=F64))
    assert d3.tolist() == pytest.approx([0.01, 0.02])


def test_select_by_hand():
    #            s_g      ΔS_g    R_Sg    ΔS_g − |S_g|   keep?
    # a:       0.001    0.005     0.2     0.004          yes
    # b:      -0.003    0.005     0.6     0.002          yes (sign does not matter)
    # c:       0.0034   0.005     0.68    0.0016         no (R_Sg ≥ 0.66)
    # d:       0.0      0.001     0.0     0.001          no (ΔS_g − |S_g| ≤ D_Sg)
    # e:       0.0      0.0       nan/inf  0             no (no sweep at all)
    # f:       0.0008   0.0025    0.32    0.0017         yes
    # g:       0.0011   0.0025    0.44    0.0014         no (D_Sg)
    s = torch.tensor([0.001, -0.003, 0.0034, 0.0, 0.0, 0.0008, 0.0011], dtype=F64)
    d = torch.tensor([0.005, 0.005, 0.005, 0.001, 0.0, 0.0025, 0.0025], dtype=F64)
    keep = select_reflections(s, d)
    assert keep.tolist() == [True, True, False, False, False, True, False]
    # quartz setting keeps c
    keep_q = select_reflections(s, d, rsg_max=RSG_MAX_QUARTZ)
    assert keep_q.tolist() == [True, True, True, False, False, True, False]
    # no D_Sg condition: d and f and g pass on R_Sg alone
    keep_nod = select_reflections(s, d, dsg=0.0)
    assert keep_nod.tolist() == [True, True, False, True, False, True, True]
    assert rsg(s[:3], d[:3]).tolist() == pytest.approx([0.2, 0.6, 0.68])


def test_end_to_end_with_vectors():
    axis = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    g = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.5, 0.0]], dtype=F64)  # lever arms 2 and 0.5
    d = delta_s_g(g, axis, math.radians(0.1))  # 0.00349, 0.00087
    keep = select_reflections(torch.tensor([0.001, 0.0001], dtype=F64), d)
    # first: R_Sg = 0.29, ΔS_g − |S_g| = 0.0025 → keep; second: 0.00077 < D_Sg → drop
    assert keep.tolist() == [True, False]


def test_bad_input():
    with pytest.raises(ExperimentError):
        select_reflections(torch.tensor([float("nan")]), torch.tensor([0.01]))
    with pytest.raises(ExperimentError):
        select_reflections(torch.tensor([0.0]), torch.tensor([-0.01]))
    with pytest.raises(ExperimentError):
        delta_s_g(torch.ones(2, 3), torch.zeros(3), 0.01)
    with pytest.raises(ExperimentError):
        delta_s_g(torch.ones(2, 2), torch.ones(3), 0.01)
    with pytest.raises(ExperimentError):
        delta_s_g(torch.ones(2, 3), torch.ones(3), -0.01)
