//! Resident set size of this process, from `/proc/self/statm` (Linux only).

/// Page size assumed when converting `statm` pages to bytes.
///
/// NOTE: 4096 bytes is the page size of x86-64 Linux. On a kernel with
/// larger pages (some arm64 and ppc64 builds) the figures are too low.
const PAGE_BYTES: u64 = 4096;

/// Returns the resident set size in bytes.
///
/// # Errors
///
/// A message when `/proc/self/statm` cannot be read or parsed, as on
/// systems other than Linux.
pub fn resident_bytes() -> Result<u64, String> {
    let statm = std::fs::read_to_string("/proc/self/statm")
        .map_err(|error| format!("could not read /proc/self/statm: {error}"))?;
    // Fields: size resident shared text lib data dt, all in pages.
    let resident_pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| format!("unexpected /proc/self/statm content: {statm:?}"))?;
    Ok(resident_pages * PAGE_BYTES)
}
