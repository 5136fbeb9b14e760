#![no_main]

libfuzzer_sys::fuzz_target!(init: doorstep_fuzz_targets::quiet_caught_panics(), |data: &[u8]| doorstep_fuzz_targets::chip_qr(data));
