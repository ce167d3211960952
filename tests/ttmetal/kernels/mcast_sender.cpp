// Multicast sender (data movement, on the sender core): read one tile from DRAM into `cb`, wait until every
// receiver has reserved room for it (each increments our "ready" semaphore), multicast the tile into the same CB
// slot on the receivers, then multicast "valid" = 1 into their "valid" semaphore.
// Compile-time args: cb, the source tensor's TensorAccessorArgs.
// Runtime args: source address, receiver rectangle in NoC coordinates (x_start, y_start, x_end, y_end),
// number of receivers, ready semaphore id, valid semaphore id.
#include <cstdint>
#include "api/dataflow/dataflow_api.h"

void kernel_main() {
    const uint32_t src_addr = get_arg_val<uint32_t>(0);
    const uint32_t x_start = get_arg_val<uint32_t>(1);
    const uint32_t y_start = get_arg_val<uint32_t>(2);
    const uint32_t x_end = get_arg_val<uint32_t>(3);
    const uint32_t y_end = get_arg_val<uint32_t>(4);
    const uint32_t num_receivers = get_arg_val<uint32_t>(5);
    const uint32_t ready_sem = get_semaphore(get_arg_val<uint32_t>(6));
    const uint32_t valid_sem = get_semaphore(get_arg_val<uint32_t>(7));

    constexpr uint32_t cb = get_compile_time_arg_val(0);
    constexpr auto src_args = TensorAccessorArgs<1>();
    const uint32_t tile_bytes = get_tile_size(cb);
    const auto src = TensorAccessor(src_args, src_addr, tile_bytes);

    cb_reserve_back(cb, 1);
    const uint32_t l1_tile = get_write_ptr(cb);
    noc_async_read_page(0, src, l1_tile);
    noc_async_read_barrier();

    // Handshake: all receivers have reserved the slot we are about to write into.
    volatile tt_l1_ptr uint32_t* ready = reinterpret_cast<volatile tt_l1_ptr uint32_t*>(ready_sem);
    noc_semaphore_wait(ready, num_receivers);
    noc_semaphore_set(ready, 0);

    // The CB has the same L1 address on every core of the program, so the tile lands in the receivers' slot.
    noc_async_write_multicast(l1_tile, get_noc_multicast_addr(x_start, y_start, x_end, y_end, l1_tile), tile_bytes,
                              num_receivers);
    volatile tt_l1_ptr uint32_t* valid = reinterpret_cast<volatile tt_l1_ptr uint32_t*>(valid_sem);
    *valid = 1;
    noc_semaphore_set_multicast(valid_sem, get_noc_multicast_addr(x_start, y_start, x_end, y_end, valid_sem),
                                num_receivers);
    noc_async_write_barrier();
    cb_push_back(cb, 1);  // the sender keeps its own copy too
}
