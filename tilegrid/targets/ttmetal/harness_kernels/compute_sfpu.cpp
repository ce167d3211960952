// Compute (SFPU harness): for each case (an SFPU routine and its tiles), per tile: copy input k (circular buffer k)
// into DST[slot k], apply the routine, pack DST[OUT] to circular buffer 16.  The harness fills in the routines'
// definitions and the cases (the SFPU_* markers) and defines N_IN (inputs per tile, 1 to 4).
#include <cstdint>
#include "api/compute/common.h"
#include "api/compute/compute_kernel_hw_startup.h"
#include "api/compute/tile_move_copy.h"
#include "api/compute/pack.h"
#include "api/compute/reg_api.h"
#include "api/compute/cb_api.h"

// SFPU_DEFINITIONS

template <uint32_t S0, uint32_t S1, uint32_t S2, uint32_t S3, uint32_t OUT, typename Apply>
void run_case(uint32_t tiles, Apply apply) {
    constexpr uint32_t cb_out = 16;
    constexpr uint32_t slot[4] = {S0, S1, S2, S3};
    for (uint32_t i = 0; i < tiles; ++i) {
        for (uint32_t cb = 0; cb < N_IN; ++cb) cb_wait_front(cb, 1);
        tile_regs_acquire();
        for (uint32_t cb = 0; cb < N_IN; ++cb) {
            copy_init(cb);
            copy_tile(cb, 0, slot[cb]);
        }
        apply();
        tile_regs_commit();
        for (uint32_t cb = 0; cb < N_IN; ++cb) cb_pop_front(cb, 1);
        cb_reserve_back(cb_out, 1);
        tile_regs_wait();
        pack_tile(OUT, cb_out);
        tile_regs_release();
        cb_push_back(cb_out, 1);
    }
}

void kernel_main() {
    compute_kernel_hw_startup(0, 16);
    // SFPU_CASES
}
