import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TILEGRID_VERIFY", "each")  # every pass's output verifies in every test compile


@pytest.fixture
def rng(request):
    """A fresh seed per test, printed so a failure can be replayed (TILEGRID_SEED=...)."""
    seed = int(os.environ.get("TILEGRID_SEED", np.random.SeedSequence().entropy % 2**32))
    print(f"seed: TILEGRID_SEED={seed}")
    return np.random.default_rng(seed)
