#![no_main]
//! Property: see `mirrorgate_fuzz::fillers`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrorgate_fuzz::fillers::check(data));
