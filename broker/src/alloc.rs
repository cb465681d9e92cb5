//! A global allocator that keeps hostile array lengths from aborting the broker.
//!
//! `kafka-protocol` 0.18 pre-allocates `Vec::with_capacity(n)` from array lengths read off the
//! wire before checking that `n` elements can fit in the frame (upstream
//! kafka-protocol-rs#152). An 8-byte request can ask for hundreds of GiB; the system
//! allocator fails and Rust aborts the process — no `catch_unwind` helps. Our fuzz target
//! found this in seconds.
//!
//! This allocator serves every allocation of [`HUGE`] bytes or more from an anonymous
//! `MAP_NORESERVE` mapping: address space only, no memory committed until a page is touched.
//! The decoder then fails on the short frame after touching a few pages, the mapping is
//! unmapped, and the connection is closed with a logged reason. Smaller allocations go to
//! the system allocator unchanged. Legitimate allocations this large do not occur (requests
//! are capped by `server.max_request_size`), so the only cost is on the attack path.
//!
//! Limits: with `vm.overcommit_memory = 2` the kernel refuses such mappings and the
//! allocation fails as before; on 32-bit targets a request above `isize::MAX` already
//! panics with "capacity overflow", which the router catches. Remove this once the codec
//! bounds array lengths itself.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are served lazily from `mmap`.
pub const HUGE: usize = 256 * 1024 * 1024;

pub struct LazyHugeAlloc;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= page_size()
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions; failure is MAP_FAILED.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr.cast()
    }
}

// SAFETY: every pointer handed out is either from `System` (and returned to it) or from a
// fresh page-aligned anonymous mapping of at least `layout.size()` bytes (and unmapped with
// the same size); which one is decided by `is_huge(layout)`, which is the same at
// allocation and deallocation because Rust passes the allocation's layout back.
unsafe impl GlobalAlloc for LazyHugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: see `map`.
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Anonymous mappings are zero-filled.
            // SAFETY: see `map`.
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from `map(layout.size())`.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: both sides belong to `System`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate with our own rules, copy the common prefix, free the old block.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// How often [`trim_periodically`] hands free heap memory back to the kernel.
const TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Every [`TRIM_INTERVAL`], asks glibc to return free memory to the kernel (`malloc_trim`):
/// after a burst (a produce pipeline of 16 MiB per connection, an uplink draining a backlog)
/// glibc keeps the freed pages, and on a Raspberry Pi that is resident memory doing nothing.
/// A few milliseconds of CPU at most; a no-op outside glibc.
pub async fn trim_periodically(shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(TRIM_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim has no preconditions; it only releases free heap pages.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_allocations_are_lazy_and_usable() {
        let a = LazyHugeAlloc;
        let layout = Layout::from_size_align(64 * HUGE, 8).expect("layout");
        // SAFETY: the layout is non-zero; the block is written within bounds and freed once.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null(), "16 GiB of address space is reserved lazily");
            *p = 7;
            *p.add(layout.size() - 1) = 9;
            let q = a.realloc(p, layout, 1024);
            assert_eq!(*q, 7);
            a.dealloc(q, Layout::from_size_align(1024, 8).expect("layout"));
        }
    }
}
