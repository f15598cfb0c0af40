#![no_main]
//! Property: see `mirrorgate_fuzz::frames`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrorgate_fuzz::frames::check(data));
