//! Disk budget and LMDB map sizing.
//!
//! LMDB needs a map size fixed while transactions run. Runnel treats the map as the disk
//! budget (`storage.max_disk_bytes`, Kafka-style `log.max.disk.bytes`): appends may use the
//! map up to `soft = budget − reserve`; the reserve is kept for deletes (LMDB's deletes copy
//! pages too), so retention can always free space on a full disk. The map starts small and
//! doubles as needed, never past the budget, so a 32-bit process reserves address space only
//! as the data grows.
//!
//! On 32-bit targets (armv7) a process has about 1 GiB of address space it can map, so the
//! budget is capped at [`MAX_MAP_32BIT`]; data files are not portable between 32- and 64-bit.

use std::path::Path;

/// Map sizes are multiples of this: a multiple of every page size in use (4, 16, 64 KiB).
pub const GRANULE: u64 = 1024 * 1024;
/// Initial map size when the budget allows it.
const INITIAL_MAP: u64 = 64 * 1024 * 1024;
/// Largest map a 32-bit process can hold beside its own code and heap.
pub const MAX_MAP_32BIT: u64 = 1024 * 1024 * 1024;

/// The sizes the writer works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Hard limit: the map never grows past it.
    pub budget: u64,
    /// Limit for appends.
    pub soft: u64,
}

impl Budget {
    /// `configured` bytes, or 80% of the free space plus what `existing` already uses.
    pub fn new(configured: Option<u64>, dir: &Path, existing: u64) -> std::io::Result<Budget> {
        let raw = match configured {
            Some(b) => b,
            None => (free_space(dir)? + existing) / 10 * 8,
        };
        let capped = if cfg!(target_pointer_width = "32") {
            raw.min(MAX_MAP_32BIT)
        } else {
            raw
        };
        if configured.is_some() && capped < raw {
            tracing::warn!(
                configured = raw,
                used = capped,
                "storage.max_disk_bytes is larger than a 32-bit process can map; capped"
            );
        }
        Ok(Budget::from_bytes(capped))
    }

    pub fn from_bytes(bytes: u64) -> Budget {
        let budget = round_down(bytes).max(4 * GRANULE);
        let reserve = round_up((budget / 50).clamp(GRANULE, 64 * GRANULE));
        Budget {
            budget,
            soft: budget - reserve,
        }
    }

    /// The map size to open with, given the bytes the file already uses.
    pub fn initial_map(&self, used: u64) -> u64 {
        round_up(used.max(INITIAL_MAP.min(self.soft))).min(self.budget.max(round_up(used)))
    }

    /// The next map size for appends after `current` filled up, if there is one.
    pub fn grow_for_appends(&self, current: u64) -> Option<u64> {
        (current < self.soft).then(|| round_up(current.saturating_mul(2)).min(self.soft))
    }
}

pub fn round_up(bytes: u64) -> u64 {
    bytes.div_ceil(GRANULE).saturating_mul(GRANULE)
}

pub fn round_down(bytes: u64) -> u64 {
    bytes / GRANULE * GRANULE
}

/// Bytes available to this (unprivileged) process on the file system holding `dir`.
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable memory
    // of the right type; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    Ok(u64::from(stat.f_bavail) * u64::from(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_leaves_a_reserve_and_growth_stops_there() {
        let b = Budget::from_bytes(1000 * GRANULE);
        assert_eq!(b.budget, 1000 * GRANULE);
        assert_eq!(b.soft, 980 * GRANULE);
        assert_eq!(b.initial_map(0), 64 * GRANULE);
        assert_eq!(b.grow_for_appends(64 * GRANULE), Some(128 * GRANULE));
        assert_eq!(b.grow_for_appends(900 * GRANULE), Some(980 * GRANULE));
        assert_eq!(b.grow_for_appends(980 * GRANULE), None);
    }

    #[test]
    fn existing_data_larger_than_budget_still_opens() {
        let b = Budget::from_bytes(10 * GRANULE);
        assert_eq!(b.initial_map(50 * GRANULE + 1), 51 * GRANULE);
    }

    #[test]
    fn free_space_of_tmp_is_known() {
        assert!(free_space(Path::new("/tmp")).expect("statvfs") > 0);
    }
}
