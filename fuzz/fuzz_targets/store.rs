#![no_main]
//! Property: see `mirrorgate_fuzz::store`.
libfuzzer_sys::fuzz_target!(init: mirrorgate_fuzz::seeds::write_if_asked(), |data: &[u8]| {
    mirrorgate_fuzz::store::check(data)
});
