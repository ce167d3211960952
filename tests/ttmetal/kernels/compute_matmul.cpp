// Compute: C = A @ B, one output tile at a time, accumulating the K loop in DST (matmul_tiles adds into DST).
// Compile-time args: cb_in0 (A tiles), cb_in1 (B tiles), cb_out.  Runtime args: Mt, Kt, Nt.
#include <cstdint>
#include "api/compute/compute_kernel_hw_startup.h"
#include "api/compute/matmul.h"
#include "api/compute/pack.h"
#include "api/compute/reg_api.h"
#include "api/compute/cb_api.h"

void kernel_main() {
    const uint32_t Mt = get_arg_val<uint32_t>(0);
    const uint32_t Kt = get_arg_val<uint32_t>(1);
    const uint32_t Nt = get_arg_val<uint32_t>(2);
    constexpr uint32_t cb_in0 = get_compile_time_arg_val(0);
    constexpr uint32_t cb_in1 = get_compile_time_arg_val(1);
    constexpr uint32_t cb_out = get_compile_time_arg_val(2);

    // Matmul feeds in0 to SrcB and in1 to SrcA: the hardware start-up must know (SrcOrder::Reverse).
    compute_kernel_hw_startup<ckernel::SrcOrder::Reverse>(cb_in0, cb_in1, cb_out);
    matmul_init(cb_in0, cb_in1);
    for (uint32_t mt = 0; mt < Mt; ++mt) {
        for (uint32_t nt = 0; nt < Nt; ++nt) {
            tile_regs_acquire();
            for (uint32_t kt = 0; kt < Kt; ++kt) {
                cb_wait_front(cb_in0, 1);
                cb_wait_front(cb_in1, 1);
                matmul_tiles(cb_in0, cb_in1, 0, 0, 0);  // DST[0] += A[mt, kt] @ B[kt, nt]
                cb_pop_front(cb_in0, 1);
                cb_pop_front(cb_in1, 1);
            }
            tile_regs_commit();

            cb_reserve_back(cb_out, 1);
            tile_regs_wait();
            pack_tile(0, cb_out);
            tile_regs_release();
            cb_push_back(cb_out, 1);
        }
    }
}
