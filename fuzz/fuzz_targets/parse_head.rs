//! `parse_head` and `validate` never panic, under a few limits; a `Complete` head lies within
//! the input and the limits.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/http/parse.rs"]
mod parse;

use libfuzzer_sys::fuzz_target;
use parse::{parse_head, validate, HeadLimits, Status};

const LIMITS: [HeadLimits; 3] = [
    HeadLimits {
        max_head: 8192,
        max_headers: 100,
    },
    HeadLimits {
        max_head: 256,
        max_headers: 4,
    },
    HeadLimits {
        max_head: 16,
        max_headers: 0,
    },
];

fuzz_target!(|data: &[u8]| {
    for limits in &LIMITS {
        if let Ok(Status::Complete(head)) = parse_head(data, limits) {
            assert!(head.len <= data.len() && head.len <= limits.max_head);
            assert!(head.headers.len() <= limits.max_headers);
            let _ = validate(&head);
        }
    }
});
