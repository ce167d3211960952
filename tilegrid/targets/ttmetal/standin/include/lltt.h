// tilegrid stand-in for lltt.h ("low-level tt-insn"), a header of Tenstorrent's sfpi toolchain
// that tt-llk uses to record and replay Tensix instruction sequences (the REPLAY instruction).
// The real header issues REPLAY through an sfpi compiler builtin; this one writes the same
// instruction word to the TRISC's instruction-buffer MMIO window (__instrn_buffer, defined by
// tt-metal's linker scripts), which pushes it to the Tensix core just like `.ttinsn` does.
// REPLAY encoding (Tensix ISA, opcode 0x04): start << 14 | length << 4 | exec << 1 | load.
// Written by tilegrid (tilegrid/targets/ttmetal/standin); installed by tilegrid.targets.ttmetal.setup.
#pragma once

#include <cstdint>

extern volatile std::uint32_t __instrn_buffer[];

namespace lltt {

enum ExecBool : bool { NoExec = false, Exec = true };

// The REPLAY instruction word: replay (load=false) or record (load=true) `length` instructions
// starting at slot `start` of the replay buffer; exec=true also runs them while recording.
constexpr std::uint32_t replay_insn(unsigned start, unsigned length, bool exec = false, bool load = false) {
    return (0x04u << 24) | (std::uint32_t(start) << 14) | (std::uint32_t(length) << 4) |
           (std::uint32_t(exec) << 1) | std::uint32_t(load);
}

// Record the next `length` Tensix instructions this thread issues into slots [start, start+length).
template <ExecBool E = NoExec>
[[gnu::always_inline]] inline void record(unsigned start, unsigned length) {
    __instrn_buffer[0] = replay_insn(start, length, bool(E), true);
}

// Issue the `length` recorded instructions starting at slot `start`.
[[gnu::always_inline]] inline void replay(unsigned start, unsigned length) {
    __instrn_buffer[0] = replay_insn(start, length, false, false);
}

}  // namespace lltt
