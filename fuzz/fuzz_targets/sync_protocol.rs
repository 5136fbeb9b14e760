#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| doorstep_fuzz_targets::sync_protocol(data));
