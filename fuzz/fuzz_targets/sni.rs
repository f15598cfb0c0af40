#![no_main]
//! Property: see `mirrorgate_fuzz::sni`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrorgate_fuzz::sni::check(data));
