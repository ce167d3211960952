// tilegrid stand-in for libstdc++'s <bits/os_defines.h>, used with the host's libstdc++-12
// headers on a bare-metal RISC-V core with picolibc (see bits/c++config.h beside this file).
// The host's version is glibc/Linux-specific (it includes <features.h> and tests glibc versions);
// picolibc needs none of that, like libstdc++'s generic "newlib" OS configuration.
// Written by tilegrid (tilegrid/targets/ttmetal/standin); installed by tilegrid.targets.ttmetal.setup.
#ifndef _GLIBCXX_OS_DEFINES
#define _GLIBCXX_OS_DEFINES 1
#ifndef __GLIBC_PREREQ
#define __GLIBC_PREREQ(maj, min) 0
#endif
#endif
