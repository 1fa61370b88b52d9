//! Integration tests: the product against the fake D1 (real SQLite behind it) and a real S3
//! server (SeaweedFS), run as a subprocess exactly as users and the Actions runner run it.

mod support;

mod action_env;
mod check;
mod contract;
mod encrypt;
mod engine;
mod export;
mod faults;
mod fleet;
mod hostile_store;
mod inputs;
mod local;
mod many;
mod restore;
mod retention;
mod roundtrip;
mod secrets;
mod signals;
mod signed;
mod store_suite;
