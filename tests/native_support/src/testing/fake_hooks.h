// Routes the interposer's mapping wrappers (interposer/hooks_mappings.cpp) to the stand-in
// driver, as the real driver's cuGetProcAddress would bind them to libcuda: a CPU test then
// calls the exported wrappers and each forwards to the stand-in.
#pragma once

namespace kiln::testing {

// Binds each mapping wrapper's real slot to the installed stand-in's function.
void route_mapping_hooks_to_fake();
// Forgets those bindings (a later call finds no driver, as in a process without libcuda).
void unroute_mapping_hooks();

}  // namespace kiln::testing
