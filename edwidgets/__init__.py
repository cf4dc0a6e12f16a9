"""edwidgets: quantitative 3D electron diffraction with a differentiable Bloch-wave simulator."""
__version__ = "0.1.0"
