"""Handing large freed buffers back to the system at once (glibc's malloc)."""

from __future__ import annotations

import ctypes

import structlog

log = structlog.get_logger(__name__)

_M_MMAP_THRESHOLD = -3  # mallopt parameter, glibc's malloc.h
# Allocations from this size up get their own mapping, unmapped when freed.
MMAP_THRESHOLD_BYTES = 4 * 2**20


def return_large_frees_to_the_system() -> bool:
    """Fix glibc's mmap threshold so that large blocks are unmapped as soon as they are freed.

    Pillow holds a decoded image in 16 MiB blocks. By default glibc raises its mmap threshold
    to the size of the first such block freed, and from then on serves them from per-thread
    arenas that keep the memory after `free`: each decode thread would keep its last large
    image resident, so resident memory grew to threads x image size whatever the decode
    budget admits (four 10,000 x 10,000 PNGs, admitted one at a time: 942 MB instead of
    526 MB). True when set; False where the C library has no `mallopt` (musl ignores it).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    log.debug("malloc_mmap_threshold", bytes=MMAP_THRESHOLD_BYTES, applied=applied)
    return applied
