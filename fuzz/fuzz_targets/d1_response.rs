//! Fuzz the decoding of D1 API answers: any bytes, never a panic, and the streaming page
//! decoder gives the same answer however the body is split. See `../harness.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::decode_d1_response(data);
});
