// tilegrid stand-in wrapper around the host's libstdc++ <bits/c++config.h>.
// Tenstorrent's sfpi toolchain ships a freestanding libstdc++ for its RISC-V cores; Debian's
// gcc-riscv64-unknown-elf ships none, so the stand-in compiler uses the host's libstdc++-12
// headers (only the header-only parts: <cstdint>, <type_traits>, <array>, <utility>, ...).
// Their configuration describes x86-64 glibc with threads; this wrapper switches off what a
// bare-metal, single-threaded core lacks (threads, futexes, clocks, sleeping, /dev/random).
// Written by tilegrid (tilegrid/targets/ttmetal/standin); installed by tilegrid.targets.ttmetal.setup.
#include_next <bits/c++config.h>

#undef _GLIBCXX_HAS_GTHREADS
#undef _GLIBCXX_HAVE_LINUX_FUTEX
#undef _GLIBCXX_USE_NANOSLEEP
#undef _GLIBCXX_USE_SCHED_YIELD
#undef _GLIBCXX_USE_CLOCK_MONOTONIC
#undef _GLIBCXX_USE_CLOCK_REALTIME
#undef _GLIBCXX_USE_GETTIMEOFDAY
#undef _GLIBCXX_USE_DEV_RANDOM
#undef _GLIBCXX_USE_RANDOM_TR1
#undef _GLIBCXX_USE_PTHREAD_COND_CLOCKWAIT
#undef _GLIBCXX_USE_PTHREAD_MUTEX_CLOCKLOCK
#undef _GLIBCXX_USE_PTHREAD_RWLOCK_CLOCKLOCK
#undef _GLIBCXX_USE_PTHREAD_RWLOCK_T
