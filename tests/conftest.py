from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# frames run on parallel threads (ForwardModel workers), one torch intra-op thread each
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real datasets (../shared/data); the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """Batches of small eigendecompositions run faster on one thread than on two shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def quartz_model():
    """α-quartz P3₂21 from the shipped structure (published coordinates; no shared data needed)."""
    from edwidgets.crystal import load_structure

    return load_structure("quartz_P3221")
