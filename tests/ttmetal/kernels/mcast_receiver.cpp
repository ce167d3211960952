// Multicast receiver (data movement, on each receiver core): reserve a slot in `cb`, tell the sender we are ready
// (increment its "ready" semaphore over the NoC), wait for the sender to set our "valid" semaphore, publish the tile.
// Compile-time args: cb.  Runtime args: sender NoC x, sender NoC y, ready semaphore id, valid semaphore id.
#include <cstdint>
#include "api/dataflow/dataflow_api.h"

void kernel_main() {
    const uint32_t sender_x = get_arg_val<uint32_t>(0);
    const uint32_t sender_y = get_arg_val<uint32_t>(1);
    const uint32_t ready_sem = get_semaphore(get_arg_val<uint32_t>(2));
    const uint32_t valid_sem = get_semaphore(get_arg_val<uint32_t>(3));
    constexpr uint32_t cb = get_compile_time_arg_val(0);

    cb_reserve_back(cb, 1);
    volatile tt_l1_ptr uint32_t* valid = reinterpret_cast<volatile tt_l1_ptr uint32_t*>(valid_sem);
    noc_semaphore_set(valid, 0);
    noc_semaphore_inc(get_noc_addr(sender_x, sender_y, ready_sem), 1);
    noc_semaphore_wait(valid, 1);
    cb_push_back(cb, 1);
}
