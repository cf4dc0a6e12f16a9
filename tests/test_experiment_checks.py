"""Consistency checks of experiment and model (cell, bad reflections, empty frames) and the
preparation cache."""
from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np
import pytest
import torch

from edwidgets.crystal import Crystal
from edwidgets.errors import EdwidgetsError, ExperimentError, InputFileError
from edwidgets.experiment.forward import ForwardModel
from edwidgets.experiment.pets import EmptyFramesWarning, read_pets, write_pets
from edwidgets.experiment.pets_experiment import experiment_from_pets
from edwidgets.experiment.preparation import PreparationResult, prepare, thickness_grid, thickness_search
from edwidgets.experiment.synthetic import make_synthetic_dataset

SMALL = dict(angle_range=(-6.0, 6.0), step_deg=3.0, half_width_deg=1.5, resolution=1.2, n_samples=4,
             thickness_mean=400.0, profile="constant", seed=1)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset_file(quartz_model, tmp_path_factory):
    dataset = make_synthetic_dataset(quartz_model, **SMALL)
    return dataset, dataset.write(tmp_path_factory.mktemp("synthetic") / "small.cif_pets")


def scaled_cell(crystal: Crystal, factor: float) -> Crystal:
    a, b, c, al, be, ga = crystal.cell
    return Crystal((a * factor, b * factor, c, al, be, ga), crystal.space_group, crystal.sites, name="scaled")


def test_cell_2_percent_off_warns_6_percent_refuses(quartz_model, dataset_file):
    _, path = dataset_file
    experiment = experiment_from_pets(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        experiment.check_cell(quartz_model.cell)  # identical cell: silent
    with pytest.warns(UserWarning, match=r"2\.0 %.*data's cell is used"):
        ForwardModel(experiment, scaled_cell(quartz_model, 1.02), g_max=1.0, n_samples=2, selection=None)
    with pytest.raises(ExperimentError, match="small.cif_pets") as info:
        ForwardModel(experiment, scaled_cell(quartz_model, 1.06), g_max=1.0, n_samples=2, selection=None)
    assert "6.0 %" in str(info.value) and "more than 5 %" in str(info.value)


def test_cell_check_on_real_quartz_names_the_file(shared_data):
    experiment = experiment_from_pets(shared_data / "quartz" / "quartz.cif_pets")
    model = Crystal.from_cif(shared_data / "quartz" / "enantiomer_1.cif")
    with pytest.raises(ExperimentError, match="quartz.cif_pets"):
        experiment.check_cell(scaled_cell(model, 0.94).cell)


def _rewrite_reflections(dataset, path, change) -> None:
    refl = change(dataset.pets.reflections.copy())
    write_pets(dataclasses.replace(dataset.pets, reflections=refl), path)


@pytest.mark.parametrize("bad, problem", [(float("nan"), "non-finite|nan|NaN|not a number"), (-2.0, "negative")])
def test_bad_sigma_in_file_names_file_and_line(dataset_file, tmp_path, bad, problem):
    dataset, _ = dataset_file
    path = tmp_path / "bad.cif_pets"
    _rewrite_reflections(dataset, path, lambda r: r.assign(sigma=np.where(np.arange(len(r)) == 3, bad, r["sigma"])))
    with pytest.raises(InputFileError, match=problem) as info:
        experiment_from_pets(path)
    assert "bad.cif_pets" in str(info.value)
    assert info.value.line is not None or info.value.tag is not None


@pytest.mark.parametrize("bad, problem", [(float("nan"), "non-finite"), (-1.0, "negative sigma")])
def test_bad_sigma_in_experiment_is_refused(dataset_file, bad, problem):
    dataset, _ = dataset_file
    experiment = dataset.experiment
    refl = experiment.reflections.copy()
    refl.loc[5, "sigma"] = bad
    with pytest.raises(ExperimentError, match=f"{problem}.*\\[5\\]"):
        dataclasses.replace(experiment, reflections=refl)


def test_empty_frames(dataset_file, tmp_path):
    dataset, _ = dataset_file
    path = tmp_path / "gap.cif_pets"
    _rewrite_reflections(dataset, path, lambda r: r[r["frame"] != 2])
    with pytest.warns(EmptyFramesWarning, match="gap.cif_pets"):
        data = read_pets(path)
    with pytest.raises(InputFileError, match="gap.cif_pets"):
        read_pets(path, empty_frames="error")
    experiment = experiment_from_pets(data)
    assert experiment.reflections_per_frame()[1] == 0
    forward = ForwardModel(experiment, dataset.truth, g_max=1.2, n_samples=2, selection=None)
    assert len(forward.plans[1].rows) == 0 and forward.n_reflections == len(experiment.reflections)
    # a file whose reflections are all gone, and an experiment without frames, are refused
    with pytest.raises(EdwidgetsError):
        experiment_from_pets(dataclasses.replace(data, reflections=data.reflections.iloc[:0]))
    with pytest.raises(ExperimentError, match="no frames"):
        dataclasses.replace(experiment, orientations=np.zeros((0, 3, 3)), half_width_deg=np.zeros(0),
                            frame_angle_deg=np.zeros(0))


def test_preparation_cache_and_progress(dataset_file, tmp_path):
    dataset, _ = dataset_file
    forward = ForwardModel(dataset.experiment, dataset.truth, g_max=1.2, n_samples=4, selection=None)
    calls = []

    def progress(iterable, **kw):
        calls.append(kw.get("desc"))
        return iterable

    grid = thickness_grid(100.0, 1000.0, 20.0)
    start = time.perf_counter()
    first = prepare(forward, grid=grid, cache_dir=tmp_path, progress=progress, frames=[0, 2])
    cold = time.perf_counter() - start
    assert "thickness search" in calls and "orientation refinement" in calls
    cached = list(tmp_path.glob("prep-*.npz"))
    assert len(cached) == 1
    # the truth is a constant 400 Å: the search finds it (grid step 20 Å)
    assert first.global_thickness == pytest.approx(400.0, abs=20.0)
    calls.clear()
    start = time.perf_counter()
    second = prepare(forward, grid=grid, cache_dir=tmp_path, progress=progress, frames=[0, 2])
    warm = time.perf_counter() - start
    assert calls == [] and warm < 0.2 * cold
    for name in ("rotations", "thickness", "wr_before", "wr_after"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert second.global_thickness == first.global_thickness and second.settings == first.settings
    # other settings → another cache entry
    prepare(forward, grid=grid, cache_dir=tmp_path, refine_orientation=False)
    assert len(list(tmp_path.glob("prep-*.npz"))) == 2
    # another precision → another cache entry (a float64 result is not reused for float32)
    single = ForwardModel(dataset.experiment, dataset.truth, g_max=1.2, n_samples=4, selection=None, dtype=torch.float32)
    prepare(single, grid=grid, cache_dir=tmp_path, refine_orientation=False)
    assert len(list(tmp_path.glob("prep-*.npz"))) == 3
    loaded = PreparationResult.load(cached[0])
    np.testing.assert_array_equal(loaded.rotations, first.rotations)


def test_two_level_thickness_search_finds_the_full_grid_optimum(dataset_file):
    dataset, _ = dataset_file
    forward = ForwardModel(dataset.experiment, dataset.truth, g_max=1.2, n_samples=4, selection=None)
    grid = thickness_grid(100.0, 1100.0, 2.0)  # 501 points: the default search goes coarse then fine
    full = thickness_search(forward, grid, coarse_stride=1)
    fast = thickness_search(forward, grid)
    assert np.isinf(fast.curve).any()  # the fast search really skipped grid points
    np.testing.assert_array_equal(fast.per_frame, full.per_frame)
    np.testing.assert_allclose(fast.per_frame_wr, full.per_frame_wr, rtol=1e-12)
    assert fast.global_thickness == full.global_thickness


def test_thickness_window_over_all_frames_gives_the_global_optimum(dataset_file):
    """A window that holds every frame pools them all: each frame gets the dataset's best thickness,
    in the full-grid and in the two-level search."""
    dataset, _ = dataset_file
    forward = ForwardModel(dataset.experiment, dataset.truth, g_max=1.2, n_samples=4, selection=None)
    grid = thickness_grid(100.0, 1100.0, 2.0)
    for stride in (1, None):
        alone = thickness_search(forward, grid, coarse_stride=stride)
        pooled = thickness_search(forward, grid, coarse_stride=stride, window_deg=90.0)
        np.testing.assert_array_equal(pooled.per_frame, np.full(dataset.experiment.n_frames, alone.global_thickness))
        assert pooled.global_thickness == alone.global_thickness
    with pytest.raises(ExperimentError, match="thickness window"):
        thickness_search(forward, grid, window_deg=float("nan"))


def test_thickness_window_recovers_a_noisy_profile(quartz_model):
    """At a dynamic range of 10² a frame keeps ~3 reflections and its own grid optimum lands on
    random Pendellösung branches; pooling ±4° of frames recovers the smooth truth far better."""
    dataset = make_synthetic_dataset(quartz_model, angle_range=(-20.0, 20.0), step_deg=1.0, resolution=1.5,
                                     n_samples=3, thickness_mean=700.0, dynamic_range=1e2, seed=3)
    forward = ForwardModel(dataset.experiment, dataset.truth, g_max=1.5, n_samples=3, selection=None)
    grid = thickness_grid(100.0, 1500.0, 5.0)
    error = {}
    for window in (0.0, 4.0):
        search = thickness_search(forward, grid, coarse_stride=1, window_deg=window)
        error[window] = float(np.sqrt(np.mean((search.per_frame - dataset.thickness) ** 2)))
    assert error[4.0] < 0.35 * error[0.0], error  # measured: 408 → 79 Å
    assert error[4.0] < 120.0, error
