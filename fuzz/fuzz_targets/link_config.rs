#![no_main]
//! Property: see `mirrorgate_fuzz::link_config`.
libfuzzer_sys::fuzz_target!(init: mirrorgate_fuzz::seeds::write_if_asked(), |data: &[u8]| {
    mirrorgate_fuzz::link_config::check(data)
});
