"""Residuals of Methods 4.2: checked against numbers worked out here with plain Python loops."""
from __future__ import annotations

import math

import pytest
import torch

from edwidgets.errors import EdwidgetsError, ExperimentError
from edwidgets.experiment.residuals import (
    Observations,
    ResidualReport,
    apply_frame_scales,
    frame_means,
    frame_scales,
    prepare_observations,
    r_obs,
    r_obs_frame_factors,
    residual_report,
    wr2,
    wr_all,
    wr_f,
)

F64 = torch.float64

# A small hand example: one strong, one medium, one unobserved (I < 3σ but > 0.01σ),
# one negative (weak rule), one tiny positive (weak rule: 0.001 < 0.01 × 0.5).
I_OBS = [400.0, 50.0, 20.0, -3.0, 0.001]
SIGMA = [20.0, 10.0, 9.0, 4.0, 0.5]
I_CALC = [380.0, 60.0, 10.0, 2.0, 0.3]
FRAMES = [0, 1, 0, 1, 1]
U = 0.01


def loop_prepare(i_obs, sigma, u=U):
    """The paper's rules, written out reflection by reflection."""
    rows = []
    for i, s in zip(i_obs, sigma):
        if i < 0.01 * s:
            i_p, s_sqrt = 0.0, 5.0 * math.sqrt(s)
        else:
            i_p, s_sqrt = i, s / (2.0 * math.sqrt(i))
        w = 1.0 / math.sqrt(s_sqrt**2 + (u * math.sqrt(i_p)) ** 2)
        rows.append((i_p, s_sqrt, w, i_p > 3.0 * s))
    return rows


def loop_wr(rows, i_calc, pick=None):
    num = den = 0.0
    for k, ((i_o, _, w, _), i_c) in enumerate(zip(rows, i_calc)):
        if pick is not None and not pick(k):
            continue
        num += (w * abs(i_o - i_c)) ** 2
        den += (w * i_o) ** 2
    return math.sqrt(num / den), num, den


def loop_r(rows, i_calc, pick=None):
    num = den = 0.0
    n = 0
    for k, ((i_o, _, _, is_obs), i_c) in enumerate(zip(rows, i_calc)):
        if not is_obs or (pick is not None and not pick(k)):
            continue
        num += abs(math.sqrt(i_o) - math.sqrt(i_c))
        den += math.sqrt(i_o)
        n += 1
    return num / den, n


def loop_wrf(rows, i_calc):
    num = den = 0.0
    for (i_o, s_sqrt, _, _), i_c in zip(rows, i_calc):
        wf = 1.0 / s_sqrt**2
        num += wf * (math.sqrt(i_o) - math.sqrt(i_c)) ** 2
        den += wf * i_o
    return math.sqrt(num / den)


@pytest.fixture()
def obs() -> Observations:
    return prepare_observations(
        torch.tensor(I_OBS, dtype=F64), torch.tensor(SIGMA, dtype=F64), frame_index=torch.tensor(FRAMES)
    )


def test_prepare_applies_weak_rule_and_weights(obs):
    rows = loop_prepare(I_OBS, SIGMA)
    assert obs.weak.tolist() == [False, False, False, True, True]
    assert obs.i_obs.tolist() == pytest.approx([r[0] for r in rows], abs=0)
    assert obs.i_obs[3] == 0 and obs.i_obs[4] == 0
    assert obs.sigma_sqrt[3].item() == pytest.approx(5.0 * 2.0)  # 5 √4
    assert obs.sigma_sqrt[0].item() == pytest.approx(20.0 / (2 * 20.0))  # σ/(2√I) = 0.5
    assert obs.weight.tolist() == pytest.approx([r[2] for r in rows], rel=1e-14)
    assert obs.observed.tolist() == [True, True, False, False, False]
    assert (obs.n_obs, obs.n_all) == (2, 5)


def test_hand_computed_residuals(obs):
    rows = loop_prepare(I_OBS, SIGMA)
    ic = torch.tensor(I_CALC, dtype=F64)
    expected_wr, _, _ = loop_wr(rows, I_CALC)
    expected_r, n_obs = loop_r(rows, I_CALC)
    res = wr_all(ic, obs)
    assert res.value.item() == pytest.approx(expected_wr, rel=1e-12)
    assert res.n == 5
    r = r_obs(ic, obs)
    assert r.value.item() == pytest.approx(expected_r, rel=1e-12)
    assert r.n == n_obs == 2
    assert wr_f(ic, obs).value.item() == pytest.approx(loop_wrf(rows, I_CALC), rel=1e-12)
    # A literal number, so that a shared mistake between loop and code would still show:
    # R_obs = (|20 − √380| + |√50 − √60|) / (20 + √50)
    lit = (abs(20 - math.sqrt(380)) + abs(math.sqrt(50) - math.sqrt(60))) / (20 + math.sqrt(50))
    assert r.value.item() == pytest.approx(lit, rel=1e-12)


def test_per_frame_values_and_sums_are_consistent(obs):
    rows = loop_prepare(I_OBS, SIGMA)
    ic = torch.tensor(I_CALC, dtype=F64)
    per = wr_all(ic, obs, per_frame=True)
    assert per.value.shape == (2,)
    assert per.n.tolist() == [2, 3]
    total_num = total_den = 0.0
    for f in range(2):
        wr_f_loop, num, den = loop_wr(rows, I_CALC, pick=lambda k, f=f: FRAMES[k] == f)
        assert per.value[f].item() == pytest.approx(wr_f_loop, rel=1e-12)
        total_num += per.value[f].item() ** 2 * den
        total_den += den
    assert math.sqrt(total_num / total_den) == pytest.approx(wr_all(ic, obs).value.item(), rel=1e-12)
    r_per = r_obs(ic, obs, per_frame=True)
    assert r_per.n.tolist() == [1, 1]
    for f in range(2):
        assert r_per.value[f].item() == pytest.approx(loop_r(rows, I_CALC, pick=lambda k, f=f: FRAMES[k] == f)[0])
    assert wr_f(ic, obs, per_frame=True).value.shape == (2,)


def test_empty_frame_gives_zero_not_nan():
    o = prepare_observations(torch.tensor([10.0, 20.0], dtype=F64), torch.tensor([1.0, 1.0], dtype=F64),
                             frame_index=torch.tensor([0, 2]), n_frames=4)
    ic = torch.tensor([9.0, 21.0], dtype=F64, requires_grad=True)
    v = wr_all(ic, o, per_frame=True)
    assert torch.isfinite(v.value).all() and v.value[1] == 0 and v.value[3] == 0
    assert v.n.tolist() == [1, 0, 1, 0]
    v.value.sum().backward()
    assert torch.isfinite(ic.grad).all()


def test_perfect_data_gives_zero(obs):
    ic = obs.i_obs.clone()
    assert wr_all(ic, obs).value.item() == 0.0
    assert r_obs(ic, obs).value.item() == 0.0
    assert wr_f(ic, obs).value.item() == 0.0


def test_frame_scales_closed_form_and_scale_invariance(obs):
    rows = loop_prepare(I_OBS, SIGMA)
    ic = torch.tensor(I_CALC, dtype=F64)
    k = frame_scales(ic, obs)
    for f in range(2):
        num = sum(rows[j][2] ** 2 * rows[j][0] * I_CALC[j] for j in range(5) if FRAMES[j] == f)
        den = sum(rows[j][2] ** 2 * I_CALC[j] ** 2 for j in range(5) if FRAMES[j] == f)
        assert k[f].item() == pytest.approx(num / den, rel=1e-12)
    wr1 = wr_all(apply_frame_scales(ic, k, obs.frame_index), obs).value
    c = torch.tensor([3.7, 0.002], dtype=F64)  # a different factor per frame
    ic2 = ic * c[obs.frame_index]
    wr2 = wr_all(apply_frame_scales(ic2, frame_scales(ic2, obs), obs.frame_index), obs).value
    assert wr2.item() == pytest.approx(wr1.item(), rel=1e-12)
    # the closed form is the minimum of each frame's wR: nudging k either way makes it worse
    per = wr_all(apply_frame_scales(ic, k, obs.frame_index), obs, per_frame=True).value
    for eps in (1e-3, -1e-3):
        worse = wr_all(apply_frame_scales(ic, k * (1 + eps), obs.frame_index), obs, per_frame=True).value
        assert (worse > per).all()
    # scaled perfect data: wR = 0
    ic3 = obs.i_obs * c[obs.frame_index]
    assert wr_all(apply_frame_scales(ic3, frame_scales(ic3, obs), obs.frame_index), obs).value.item() < 1e-14


def test_global_scale_and_zero_frame_is_safe():
    o = prepare_observations(torch.tensor([10.0, 20.0, 5.0], dtype=F64), torch.tensor([1.0, 2.0, 1.0], dtype=F64))
    ic = torch.tensor([1.0, 2.0, 0.5], dtype=F64)
    k = frame_scales(ic, o)
    assert k.shape == (1,) and k.item() == pytest.approx(10.0)
    zeros = torch.zeros(3, dtype=F64, requires_grad=True)
    k0 = frame_scales(zeros, o, frame_index=torch.tensor([0, 0, 1]), n_frames=3)
    assert k0.tolist() == [1.0, 1.0, 1.0]
    k0.sum().backward()
    assert torch.isfinite(zeros.grad).all()


def test_gradcheck(obs):
    ic = torch.tensor(I_CALC, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: wr_all(x, obs).value, (ic,))
    assert torch.autograd.gradcheck(lambda x: wr_all(x, obs, per_frame=True).value, (ic,))
    assert torch.autograd.gradcheck(lambda x: r_obs(x, obs).value, (ic,))
    assert torch.autograd.gradcheck(lambda x: wr_f(x, obs).value, (ic,))
    assert torch.autograd.gradcheck(lambda x: frame_scales(x, obs), (ic,))

    def scaled_wr(x):
        return wr_all(apply_frame_scales(x, frame_scales(x, obs), obs.frame_index), obs).value

    assert torch.autograd.gradcheck(scaled_wr, (ic,))


def test_r_obs_gradient_finite_at_zero_calc(obs):
    ic = torch.tensor([0.0, 50.0, 0.0, 0.0, 0.0], dtype=F64, requires_grad=True)
    r_obs(ic, obs).value.backward()
    assert torch.isfinite(ic.grad).all()


@pytest.mark.parametrize(
    "i_obs, sigma, fragment",
    [
        ([1.0, float("nan"), 3.0], [1.0, 1.0, 1.0], "index 1"),
        ([1.0, 2.0, 3.0], [1.0, float("inf"), 1.0], "sigma"),
        ([1.0, 2.0, 3.0], [1.0, 1.0, -0.5], "negative"),
        ([0.0, 2.0], [0.0, 1.0], "zero"),
        ([1.0, 2.0], [1.0], "equal length"),
    ],
)
def test_bad_input_rejected(i_obs, sigma, fragment):
    with pytest.raises(ExperimentError, match=fragment):
        prepare_observations(torch.tensor(i_obs, dtype=F64), torch.tensor(sigma, dtype=F64))
    assert issubclass(ExperimentError, EdwidgetsError)


def test_shape_mismatch_and_missing_frames_rejected(obs):
    with pytest.raises(ExperimentError):
        wr_all(torch.ones(4, dtype=F64), obs)
    plain = prepare_observations(torch.tensor([1.0, 2.0], dtype=F64), torch.tensor([0.1, 0.1], dtype=F64))
    with pytest.raises(ExperimentError, match="frame"):
        wr_all(torch.ones(2, dtype=F64), plain, per_frame=True)
    with pytest.raises(ExperimentError, match="n_frames"):
        prepare_observations(torch.ones(2, dtype=F64), torch.ones(2, dtype=F64), frame_index=torch.tensor([0, 5]), n_frames=3)


def test_zero_sigma_positive_intensity_uses_u():
    o = prepare_observations(torch.tensor([100.0], dtype=F64), torch.tensor([0.0], dtype=F64))
    assert o.weight.item() == pytest.approx(1.0 / (0.01 * 10.0))


def test_report(obs):
    ic = torch.tensor(I_CALC, dtype=F64)
    rep = residual_report(ic, obs)
    assert isinstance(rep, ResidualReport)
    d = rep.to_dict()
    assert set(d) == {"R_obs", "wR_all", "N_obs", "N_all", "wR_F", "R_obs_frame_mean", "wR_all_frame_mean"}
    assert d["N_obs"] == 2 and d["N_all"] == 5
    assert d["wR_all"] == pytest.approx(wr_all(ic, obs).value.item())
    text = str(rep)
    assert f"{100 * rep.wr_all:.2f} %" in text and "R_obs" in text and "(5 all)" in text


def test_weak_rule_boundary_and_observed_boundary():
    # I = 0.01σ exactly is not weak (strict <); I = 3σ exactly is not observed (strict >)
    o = prepare_observations(torch.tensor([0.01, 0.0099, 30.0, 30.0001], dtype=F64),
                             torch.tensor([1.0, 1.0, 10.0, 10.0], dtype=F64))
    assert o.weak.tolist() == [False, True, False, False]
    assert o.sigma_sqrt[0].item() == pytest.approx(1.0 / (2 * 0.1))
    assert o.observed.tolist() == [False, False, False, True]


def test_subset_keeps_frames(obs):
    sub = obs.subset(torch.tensor([True, False, True, True, False]))
    assert sub.n_all == 3 and sub.frame_index.tolist() == [0, 0, 1] and sub.n_frames == 2
    assert sub.weight.tolist() == pytest.approx([obs.weight[i].item() for i in (0, 2, 3)])
    with pytest.raises(ExperimentError):
        obs.subset(torch.tensor([True]))


def test_float32_calc_works(obs):
    ic = torch.tensor(I_CALC, dtype=torch.float32)
    assert wr_all(ic, obs).value.dtype == torch.float32
    assert wr_all(ic, obs).value.item() == pytest.approx(wr_all(ic.double(), obs).value.item(), rel=1e-5)


def test_r_obs_frame_factor_is_the_weighted_median_worked_by_hand():
    # frame 0: √I_o = 1, 2, 3 and √I_c = 1, 1, 1 → ratios 1, 2, 3 with equal weights: s = 2, c = 4,
    # R = (|1−2| + 0 + |3−2|) / 6 = 1/3. Frame 1: one reflection, matched exactly by its factor.
    # Frame 2: nothing observed (I < 3σ) → factor 1 and left out of the frame mean.
    i_obs = torch.tensor([1.0, 4.0, 9.0, 25.0, 1.0], dtype=F64)
    sigma = torch.tensor([0.01, 0.01, 0.01, 0.01, 1.0], dtype=F64)
    frames = torch.tensor([0, 0, 0, 1, 2])
    obs = prepare_observations(i_obs, sigma, frame_index=frames)
    i_calc = torch.tensor([1.0, 1.0, 1.0, 4.0, 7.0], dtype=F64)
    c = r_obs_frame_factors(i_calc, obs)
    assert c.tolist() == pytest.approx([4.0, 25.0 / 4.0, 1.0])
    r_mean, wr_mean = frame_means(i_calc, obs)
    assert r_mean == pytest.approx((1.0 / 3.0 + 0.0) / 2)
    per_frame_wr = wr_all(i_calc, obs, per_frame=True).value
    assert wr_mean == pytest.approx(per_frame_wr.mean().item())  # every frame has reflections for wR


def test_r_obs_frame_factor_minimises_each_frame_against_a_scan():
    gen = torch.Generator().manual_seed(3)
    n, n_frames = 300, 7
    frames = torch.randint(0, n_frames, (n,), generator=gen)
    i_true = torch.rand(n, generator=gen, dtype=F64) ** 3 * 1e4
    sigma = torch.sqrt(i_true + 4.0)
    i_obs = i_true + sigma * torch.randn(n, generator=gen, dtype=F64)
    obs = prepare_observations(i_obs, sigma, frame_index=frames, n_frames=n_frames)
    # calculated intensities off by a frame-dependent scale and some model error
    i_calc = i_true * (0.3 + frames.to(F64)) * (1 + 0.2 * torch.rand(n, generator=gen, dtype=F64))
    c = r_obs_frame_factors(i_calc, obs)
    best = r_obs(apply_frame_scales(i_calc, c, frames), obs, per_frame=True).value
    for f in range(n_frames):
        scan = c[f] * torch.linspace(0.8, 1.25, 901, dtype=F64)
        pick = frames == f
        values = []
        for factor in scan:
            scaled = torch.where(pick, i_calc * factor, i_calc)
            values.append(r_obs(scaled, obs, per_frame=True).value[f])
        values = torch.stack(values)
        assert best[f] <= values.min() + 1e-12  # nothing on the scan beats it
        assert best[f] >= values.min() - 1e-3 * values.min()  # and the scan's best is next to it
    # the frame mean does not depend on the scale i_calc came with
    r1, _ = frame_means(i_calc, obs)
    r2, _ = frame_means(i_calc * 17.0, obs)
    assert r1 == pytest.approx(r2, rel=1e-12)
    # own-scale R is never worse than R at the wR-optimal scale
    k = frame_scales(i_calc, obs)
    at_wr_scale = r_obs(apply_frame_scales(i_calc, k, frames), obs, per_frame=True).value
    assert torch.all(best <= at_wr_scale + 1e-12)


def test_report_without_frames_has_no_frame_means():
    obs = prepare_observations(torch.tensor(I_OBS, dtype=F64), torch.tensor(SIGMA, dtype=F64))
    rep = residual_report(torch.tensor(I_CALC, dtype=F64), obs)
    assert math.isnan(rep.r_obs_frame_mean) and math.isnan(rep.wr_all_frame_mean)
    assert "means over frames" not in str(rep)


def test_wr2_by_hand_and_zero_sigma_refused(obs):
    ic = torch.tensor(I_CALC, dtype=F64)
    num = sum(((i - c) / s) ** 2 for i, c, s in zip(I_OBS, I_CALC, SIGMA))  # measured I_o, negatives kept
    den = sum((i / s) ** 2 for i, s in zip(I_OBS, SIGMA))
    assert wr2(ic, obs).value.item() == pytest.approx(math.sqrt(num / den), rel=1e-12)
    k = frame_scales(ic, obs, weighting="sigma")
    for f in (0, 1):
        pick = [j for j, g in enumerate(FRAMES) if g == f]
        expected = (sum(I_OBS[j] * I_CALC[j] / SIGMA[j] ** 2 for j in pick)
                    / sum(I_CALC[j] ** 2 / SIGMA[j] ** 2 for j in pick))
        assert k[f].item() == pytest.approx(expected, rel=1e-12)
    zero = prepare_observations(torch.tensor([5.0, 2.0], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64))
    with pytest.raises(ExperimentError, match="σ-weighted wR2 needs σ > 0"):
        wr2(torch.tensor([5.0, 2.0], dtype=F64), zero)
    with pytest.raises(ExperimentError, match="unknown weighting"):
        frame_scales(ic, obs, weighting="unit")
