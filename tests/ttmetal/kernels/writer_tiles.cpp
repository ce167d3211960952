// Writer (data movement): circular buffer `cb` -> tiles [start, start + count) of one DRAM-interleaved tensor.
// Compile-time args: cb index, then the tensor's TensorAccessorArgs.  Runtime args: address, start, count.
#include <cstdint>
#include "api/dataflow/dataflow_api.h"

void kernel_main() {
    const uint32_t dst_addr = get_arg_val<uint32_t>(0);
    const uint32_t start = get_arg_val<uint32_t>(1);
    const uint32_t count = get_arg_val<uint32_t>(2);

    constexpr uint32_t cb = get_compile_time_arg_val(0);
    constexpr auto dst_args = TensorAccessorArgs<1>();
    const auto dst = TensorAccessor(dst_args, dst_addr, get_tile_size(cb));

    for (uint32_t tile = start; tile < start + count; ++tile) {
        cb_wait_front(cb, 1);
        noc_async_write_page(tile, dst, get_read_ptr(cb));
        noc_async_write_barrier();
        cb_pop_front(cb, 1);
    }
}
