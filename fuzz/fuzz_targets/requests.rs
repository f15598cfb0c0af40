#![no_main]
//! Property: see `mirrorgate_fuzz::requests`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrorgate_fuzz::requests::check(data));
