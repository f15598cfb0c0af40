#![no_main]
//! Property: see `mirrorgate_fuzz::responses`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrorgate_fuzz::responses::check(data));
