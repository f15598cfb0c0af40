#![no_main]
//! Property: see `mirrorgate_fuzz::codecs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrorgate_fuzz::codecs::check(data));
