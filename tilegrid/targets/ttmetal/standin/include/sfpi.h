// tilegrid stand-in for sfpi.h, the vector (SFPU) C++ library of Tenstorrent's sfpi toolchain.
// The real header defines sfpi::vFloat, vInt, ... on top of compiler builtins (__builtin_rvtt_*)
// that only sfpi's GCC fork has, so no stand-in compiler can provide it.  This file is
// deliberately empty: headers that merely include sfpi.h compile, and any kernel that really
// uses sfpi types (the SFPU kernel API: exp_tile, recip_tile, ...) fails to compile with an
// error naming the missing sfpi:: name.  The SFPU is still reachable through tt-llk's TTI_SFP*
// instruction macros, which emit raw Tensix instructions.
// Written by tilegrid (tilegrid/targets/ttmetal/standin); installed by tilegrid.targets.ttmetal.setup.
#pragma once
