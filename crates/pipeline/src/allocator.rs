//! How the process's allocator treats freed memory.

/// Makes glibc's allocator keep freed memory for reuse instead of handing
/// it back to the kernel at once. Each archive flush builds and drops tens
/// of megabytes of Arrow and Parquet buffers; by default glibc returns them
/// (trim, munmap) and the next flush faults every page in again, zeroed:
/// page faults were 6-7 % of the pipeline's CPU in a 4,000-visit bench
/// profile (2026-11-30), and setting these two limits cut its CPU per visit
/// by about a tenth (five alternating runs). Memory above the trim limit
/// still goes back, and allocations above the mmap limit still come from
/// the kernel. Process-wide: call it once, first thing, from a binary that
/// runs the pipeline. A no-op where the C library is not glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD_BYTES: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD_BYTES: libc::c_int = 256 << 20;
        // SAFETY: mallopt only changes allocator parameters; glibc takes
        // its own lock, and valid values cannot break existing allocations.
        let ok = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
        };
        if !ok {
            tracing::warn!("mallopt refused the allocator limits; running with glibc's defaults");
        }
    }
}
