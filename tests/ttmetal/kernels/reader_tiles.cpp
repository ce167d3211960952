// Reader (data movement): tiles [start, start + count) of one DRAM-interleaved tensor -> circular buffer `cb`.
// Compile-time args: cb index, then the tensor's TensorAccessorArgs.  Runtime args: address, start, count.
#include <cstdint>
#include "api/dataflow/dataflow_api.h"

void kernel_main() {
    const uint32_t src_addr = get_arg_val<uint32_t>(0);
    const uint32_t start = get_arg_val<uint32_t>(1);
    const uint32_t count = get_arg_val<uint32_t>(2);

    constexpr uint32_t cb = get_compile_time_arg_val(0);
    constexpr auto src_args = TensorAccessorArgs<1>();
    const auto src = TensorAccessor(src_args, src_addr, get_tile_size(cb));

    for (uint32_t tile = start; tile < start + count; ++tile) {
        cb_reserve_back(cb, 1);
        noc_async_read_page(tile, src, get_write_ptr(cb));
        noc_async_read_barrier();
        cb_push_back(cb, 1);
    }
}
