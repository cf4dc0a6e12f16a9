"""Physical constants (CODATA 2018) and relativistic electron kinematics."""
from __future__ import annotations

import math

PLANCK_H = 6.62607015e-34  # J s
SPEED_OF_LIGHT = 299_792_458.0  # m / s
ELEMENTARY_CHARGE = 1.602176634e-19  # C
ELECTRON_MASS = 9.1093837015e-31  # kg


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength λ (Å) for an accelerating voltage in kV."""
    if not (voltage_kv > 0 and math.isfinite(voltage_kv)):
        raise ValueError(f"accelerating voltage must be a positive number of kV, got {voltage_kv!r}")
    energy = ELEMENTARY_CHARGE * voltage_kv * 1e3
    momentum_c = math.sqrt(energy * (2.0 * ELECTRON_MASS * SPEED_OF_LIGHT**2 + energy))
    return PLANCK_H * SPEED_OF_LIGHT / momentum_c * 1e10


def relativistic_gamma(voltage_kv: float) -> float:
    """Lorentz factor γ = 1 + eE / (m0 c²)."""
    return 1.0 + ELEMENTARY_CHARGE * voltage_kv * 1e3 / (ELECTRON_MASS * SPEED_OF_LIGHT**2)


def voltage_from_wavelength(wavelength: float) -> float:
    """Inverse of :func:`electron_wavelength` (kV), for data files that store only λ."""
    if not (wavelength > 0 and math.isfinite(wavelength)):
        raise ValueError(f"wavelength must be a positive number of Å, got {wavelength!r}")
    p = PLANCK_H / (wavelength * 1e-10)  # momentum, kg m/s
    mc2 = ELECTRON_MASS * SPEED_OF_LIGHT**2
    energy = math.sqrt((p * SPEED_OF_LIGHT) ** 2 + mc2**2) - mc2
    return energy / ELEMENTARY_CHARGE / 1e3


def potential_prefactor(voltage_kv: float, cell_volume: float) -> float:
    """Factor turning an electron structure factor F_g (Å) into U_g (Å⁻²): U_g = γ F_g / (π Ω)."""
    return relativistic_gamma(voltage_kv) / (math.pi * cell_volume)
