from .geometry import excitation_errors, frame_angles, frame_orientations, rotation_axis
from .pets import EmptyFramesWarning, PetsData, read_hkl, read_pets, write_pets
