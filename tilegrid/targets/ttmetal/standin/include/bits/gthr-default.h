// tilegrid stand-in for libstdc++'s <bits/gthr-default.h> (normally the POSIX-threads binding),
// used with the host's libstdc++-12 headers on a bare-metal, single-threaded RISC-V core: it
// selects libstdc++'s own single-threaded binding, as a target without threads would.
// Written by tilegrid (tilegrid/targets/ttmetal/standin); installed by tilegrid.targets.ttmetal.setup.
#include <bits/gthr-single.h>
