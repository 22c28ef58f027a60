// The C library's dlsym, bypassing kiln's own override.
#pragma once

namespace kiln {
void* real_dlsym(void* handle, const char* name);
}
