#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| doorstep_fuzz_targets::form_definition(data));
