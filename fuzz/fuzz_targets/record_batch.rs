//! Feeds arbitrary bytes to RecordBatch validation and, for batches that pass, to the
//! stored-header reader: neither may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(valid) = runnel::protocol::batch::validate(bytes::Bytes::copy_from_slice(data)) {
        let patched = runnel::protocol::batch::with_offset(&valid.bytes, 7, 0);
        assert!(runnel::protocol::batch::stored_header(&patched).is_some());
    }
});
