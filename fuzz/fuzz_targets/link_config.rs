#![no_main]
//! Property: see `mirrorgate_fuzz::link_config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mirrorgate_fuzz::link_config::check(data));
