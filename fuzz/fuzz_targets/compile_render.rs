//! Fuzz target: any bytes as a template (plus an optional JSON context after
//! a 0xFF separator) must compile or fail cleanly, and render within limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outflow_template::fuzzing::check_one;

fuzz_target!(|data: &[u8]| {
    check_one(data);
});
