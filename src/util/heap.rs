//! The heap between the stages of a run: memory the allocator holds but no one uses.

/// Give the heap's free memory back to the system between the stages of one backup. The
/// dump leaves its recycled page and SQL blocks free in the allocator's per-thread arenas;
/// without this, verification (whose SQLite and download buffers land in other arenas)
/// peaks on top of them instead of in their place.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the heap to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
