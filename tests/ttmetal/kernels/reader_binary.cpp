// Reader (data movement) for an elementwise binary op: tile i of A -> cb_in0 and tile i of B -> cb_in1, for
// i in [start, start + count).  Compile-time args: cb_in0, cb_in1, A's TensorAccessorArgs, B's TensorAccessorArgs.
// Runtime args: A's address, B's address, start, count.
#include <cstdint>
#include "api/dataflow/dataflow_api.h"

void kernel_main() {
    const uint32_t a_addr = get_arg_val<uint32_t>(0);
    const uint32_t b_addr = get_arg_val<uint32_t>(1);
    const uint32_t start = get_arg_val<uint32_t>(2);
    const uint32_t count = get_arg_val<uint32_t>(3);

    constexpr uint32_t cb_in0 = get_compile_time_arg_val(0);
    constexpr uint32_t cb_in1 = get_compile_time_arg_val(1);
    constexpr auto a_args = TensorAccessorArgs<2>();
    constexpr auto b_args = TensorAccessorArgs<a_args.next_compile_time_args_offset()>();
    const auto a = TensorAccessor(a_args, a_addr, get_tile_size(cb_in0));
    const auto b = TensorAccessor(b_args, b_addr, get_tile_size(cb_in1));

    for (uint32_t tile = start; tile < start + count; ++tile) {
        cb_reserve_back(cb_in0, 1);
        cb_reserve_back(cb_in1, 1);
        noc_async_read_page(tile, a, get_write_ptr(cb_in0));
        noc_async_read_page(tile, b, get_write_ptr(cb_in1));
        noc_async_read_barrier();
        cb_push_back(cb_in0, 1);
        cb_push_back(cb_in1, 1);
    }
}
