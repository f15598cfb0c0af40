#![no_main]
//! Property: see `mirrorgate_fuzz::store`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrorgate_fuzz::store::check(data));
