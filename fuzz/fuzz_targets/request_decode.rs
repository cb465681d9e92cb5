//! Feeds arbitrary frame bodies to the broker's request decoder: it must return a request or
//! an error, never panic, abort or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: runnel::alloc::LazyHugeAlloc = runnel::alloc::LazyHugeAlloc;

fuzz_target!(|data: &[u8]| {
    let _ = runnel::server::router::decode(bytes::Bytes::copy_from_slice(data));
});
