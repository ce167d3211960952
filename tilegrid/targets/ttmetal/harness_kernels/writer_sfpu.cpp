// Writer (data movement) for the SFPU harness: circular buffer 16 -> tiles [start, start + count) of the output.
// Compile-time args: the output's TensorAccessorArgs.  Runtime args: address, start, count.  Writes are flushed
// (the L1 page may be reused) tile by tile and waited for once, at the end.
#include <cstdint>
#include "api/dataflow/dataflow_api.h"

void kernel_main() {
    constexpr uint32_t cb_out = 16;
    const auto out = TensorAccessor(TensorAccessorArgs<0>(), get_arg_val<uint32_t>(0), get_tile_size(cb_out));
    const uint32_t start = get_arg_val<uint32_t>(1);
    const uint32_t end = start + get_arg_val<uint32_t>(2);
    for (uint32_t tile = start; tile != end; ++tile) {
        cb_wait_front(cb_out, 1);
        noc_async_write_page(tile, out, get_read_ptr(cb_out));
        noc_async_writes_flushed();
        cb_pop_front(cb_out, 1);
    }
    noc_async_write_barrier();
}
