#![no_main]
//! Property: see `mirrorgate_fuzz::scram`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrorgate_fuzz::scram::check(data));
