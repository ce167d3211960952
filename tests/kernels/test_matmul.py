"""tilegrid.kernels.gemm against float64: square and non-square, bf16 and fp32, with and without multicast."""

import numpy as np
import pytest
from helpers import assert_close, rand

from tilegrid import TilegridError
from tilegrid.device import WORMHOLE
from tilegrid.kernels.gemm import matmul, plan_matmul

SHAPES = [(64, 64, 64, (2, 2)), (128, 96, 64, (4, 2)), (64, 256, 192, (2, 3)), (256, 64, 256, (8, 8)), (96, 32, 320, (3, 5))]


@pytest.mark.parametrize("mcast", [False, True])
@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("m,k,n,grid", SHAPES)
def test_matmul(m, k, n, grid, dtype, mcast, rng):
    a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
    c = matmul(a, b, grid=grid, mcast=mcast)
    assert c.dtype == a.dtype
    assert_close(c, a.astype(np.float64) @ b.astype(np.float64), dtype)


@pytest.mark.parametrize("seed", range(4))
def test_multicast_matmul_under_random_schedules(seed, rng):
    a, b = rand(rng, (128, 64)), rand(rng, (64, 128))
    c = matmul(a, b, grid=(4, 4), mcast=True, bk=1, schedule="random", seed=seed)
    assert_close(c, a.astype(np.float64) @ b.astype(np.float64), "f32")


def test_multi_tile_blocks_and_k_loop():
    plan = plan_matmul(512, 1024, 512, (2, 2), WORMHOLE)
    assert plan.grid == (2, 2) and (plan.bm, plan.bn) == (8, 8) and 1024 // 32 % plan.bk == 0


def test_bad_shapes_are_clear_errors(rng):
    with pytest.raises(TilegridError, match="do not multiply"):
        matmul(rand(rng, (64, 32)), rand(rng, (64, 32)))
    with pytest.raises(TilegridError, match="multiples of 32"):
        matmul(rand(rng, (48, 32)), rand(rng, (32, 32)))


@pytest.mark.parametrize("mcast", [False, True])
def test_one_array_as_both_operands(mcast, rng):
    """matmul(a, a): one array passed twice is legal (each operand reads it in its own blocks)."""
    a = rand(rng, (128, 128))
    out = matmul(a, a, grid=(2, 2), mcast=mcast)
    assert_close(out, a.astype(np.float64) @ a.astype(np.float64), "f32")
