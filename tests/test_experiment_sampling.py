"""Orientation sampling of a frame: continuous rotation about the goniometer axis, precession cone."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from edwidgets.experiment.frames import Experiment
from edwidgets.physics.beams import rotation_matrix


def make_experiment(geometry, precession=0.0, half_width=0.5):
    centre = rotation_matrix((0.3, 1.0, 0.2), 0.7)
    refl = pd.DataFrame({"h": [1], "k": [0], "l": [0], "I": [1.0], "sigma": [0.1], "frame": [0]})
    return Experiment(cell=(5, 5, 5, 90, 90, 90), voltage_kv=200.0, orientations=centre[None], rotation_axis=np.array([1.0, 0, 0]),
                      half_width_deg=np.array([half_width]), frame_angle_deg=np.array([0.0]), reflections=refl,
                      geometry=geometry, precession_angle_deg=precession)


def test_precession_samples_tilt_the_beam_by_the_cone_angle_at_every_azimuth():
    exp = make_experiment("precession", precession=1.5)
    samples = exp.sample_orientations(0, 36)
    centre = exp.orientations[0]
    # beam direction in crystal coordinates for each sample: Rᵀ ẑ
    beams = samples.transpose(0, 2, 1) @ np.array([0, 0, 1.0])
    axis = centre.T @ np.array([0, 0, 1.0])
    angles = np.degrees(np.arccos(np.clip(beams @ axis, -1, 1)))
    np.testing.assert_allclose(angles, 1.5, atol=1e-9)
    # azimuths cover the full circle evenly: the mean beam lies along the cone axis
    mean = beams.mean(0)
    assert np.linalg.norm(np.cross(mean, axis)) < 1e-12


def test_continuous_samples_span_the_frame_about_the_axis():
    exp = make_experiment("continuous", half_width=0.5)
    samples = exp.sample_orientations(0, 10)
    rel = samples @ exp.orientations[0].T  # rotations relative to the centre, in the lab
    angles = np.array([math.degrees(math.atan2(r[2, 1], r[1, 1])) for r in rel])
    np.testing.assert_allclose(angles, np.linspace(-0.45, 0.45, 10), atol=1e-9)
    np.testing.assert_allclose(rel[:, 0, 0], 1.0, atol=1e-12)  # every rotation is about x
