#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_runtime::fuzzing::changelog(data));
