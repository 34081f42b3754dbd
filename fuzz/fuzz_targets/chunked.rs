//! `ChunkedDecoder` never panics on input split at a point taken from the first byte; it never
//! decodes more than `max_body`, and uses all it is given unless it is done (or the connection
//! would wait for bytes it already has).
#![no_main]

#[allow(dead_code)]
#[path = "../../src/http/chunked.rs"]
mod chunked;

use chunked::ChunkedDecoder;
use libfuzzer_sys::fuzz_target;

const MAX_BODY: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let (head, tail) = input.split_at(usize::from(first).min(input.len()));
    let (mut decoder, mut body, mut pending) =
        (ChunkedDecoder::new(MAX_BODY), Vec::new(), Vec::new());
    for piece in [head, tail] {
        pending.extend_from_slice(piece);
        let Ok(used) = decoder.decode(&pending, &mut body) else {
            return;
        };
        assert!(used <= pending.len());
        assert!(used == pending.len() || decoder.is_done());
        assert!(body.len() <= MAX_BODY);
        pending.drain(..used);
    }
});
