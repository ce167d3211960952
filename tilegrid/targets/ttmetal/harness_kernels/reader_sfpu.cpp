// Reader (data movement) for the SFPU harness: tile i of each of N_IN tensors -> circular buffers 0 .. N_IN-1,
// for i in [start, start + count).  Define: N_IN (1 to 4).  Compile-time args: the tensors' TensorAccessorArgs,
// one after another.  Runtime args: the N_IN addresses, start, count.
#include <cstdint>
#include "api/dataflow/dataflow_api.h"

void kernel_main() {
    const uint32_t start = get_arg_val<uint32_t>(N_IN);
    const uint32_t count = get_arg_val<uint32_t>(N_IN + 1);
    constexpr auto a0 = TensorAccessorArgs<0>();
    const auto t0 = TensorAccessor(a0, get_arg_val<uint32_t>(0), get_tile_size(0));
#if N_IN > 1
    constexpr auto a1 = TensorAccessorArgs<a0.next_compile_time_args_offset()>();
    const auto t1 = TensorAccessor(a1, get_arg_val<uint32_t>(1), get_tile_size(1));
#endif
#if N_IN > 2
    constexpr auto a2 = TensorAccessorArgs<a1.next_compile_time_args_offset()>();
    const auto t2 = TensorAccessor(a2, get_arg_val<uint32_t>(2), get_tile_size(2));
#endif
#if N_IN > 3
    constexpr auto a3 = TensorAccessorArgs<a2.next_compile_time_args_offset()>();
    const auto t3 = TensorAccessor(a3, get_arg_val<uint32_t>(3), get_tile_size(3));
#endif
    for (uint32_t tile = start; tile < start + count; ++tile) {
        for (uint32_t cb = 0; cb < N_IN; ++cb) cb_reserve_back(cb, 1);
        noc_async_read_page(tile, t0, get_write_ptr(0));
#if N_IN > 1
        noc_async_read_page(tile, t1, get_write_ptr(1));
#endif
#if N_IN > 2
        noc_async_read_page(tile, t2, get_write_ptr(2));
#endif
#if N_IN > 3
        noc_async_read_page(tile, t3, get_write_ptr(3));
#endif
        noc_async_read_barrier();
        for (uint32_t cb = 0; cb < N_IN; ++cb) cb_push_back(cb, 1);
    }
}
