// Compute (SFPU harness): per tile, copy input k (circular buffer k) into DST[DST_k], apply the SFPU routine under
// test, pack DST[OUT_DST] to circular buffer 16.  The harness fills in the routine's definitions and call (the
// SFPU_* markers) and defines N_IN, DST_0 .. DST_3 and OUT_DST.  Runtime args: count (tiles).
#include <cstdint>
#include "api/compute/common.h"
#include "api/compute/compute_kernel_hw_startup.h"
#include "api/compute/tile_move_copy.h"
#include "api/compute/pack.h"
#include "api/compute/reg_api.h"
#include "api/compute/cb_api.h"

// SFPU_DEFINITIONS

void kernel_main() {
    const uint32_t count = get_arg_val<uint32_t>(0);
    constexpr uint32_t cb_out = 16;
    constexpr uint32_t dst[4] = {DST_0, DST_1, DST_2, DST_3};
    compute_kernel_hw_startup(0, cb_out);
    // SFPU_INIT
    for (uint32_t i = 0; i < count; ++i) {
        for (uint32_t cb = 0; cb < N_IN; ++cb) cb_wait_front(cb, 1);
        tile_regs_acquire();
        for (uint32_t cb = 0; cb < N_IN; ++cb) {
            copy_init(cb);
            copy_tile(cb, 0, dst[cb]);
        }
        // SFPU_CALL
        tile_regs_commit();
        for (uint32_t cb = 0; cb < N_IN; ++cb) cb_pop_front(cb, 1);
        cb_reserve_back(cb_out, 1);
        tile_regs_wait();
        pack_tile(OUT_DST, cb_out);
        tile_regs_release();
        cb_push_back(cb_out, 1);
    }
}
