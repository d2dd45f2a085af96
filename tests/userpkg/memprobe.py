"""Page faults of reusing freed memory, for the allocator tests (no torch: cheap to import)."""

import ctypes
import resource

# Each block is under fedrun's 32 MiB mmap threshold; together they exceed glibc's largest
# default trim threshold (2 x 32 MiB), so under glibc's defaults the memory always goes back.
BLOCK, BLOCKS = 30 << 20, 3
PAGES = BLOCK * BLOCKS // resource.getpagesize()
PR_SET_THP_DISABLE = 41  # <linux/prctl.h>


def refaults() -> tuple[int, int]:
    """Minor page faults of two passes that each allocate, fill and free BLOCKS blocks: glibc's
    defaults hand the memory back and the second pass faults it in again; `retain` reuses it."""
    libc = ctypes.CDLL(None)
    # with transparent huge pages one fault maps 2 MiB, not a page: count in pages only
    libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    faults = []
    for _ in range(2):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [libc.malloc(BLOCK) for _ in range(BLOCKS)]
        for b in blocks:
            ctypes.memset(b, 1, BLOCK)
        for b in blocks:
            libc.free(b)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return faults[0], faults[1]
