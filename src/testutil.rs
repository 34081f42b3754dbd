//! Helpers shared by the unit tests: a fixed-seed random source and an input mutator, so the
//! parser and the chunked decoder are thrown many inputs without a crate.

/// xorshift64: a fixed-seed source of test inputs.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One or two mutations of `seed`: a bit flip, an inserted byte from `inserts`, a truncation, a
/// copied line or a removed byte.
pub fn mutate(rng: &mut Rng, seed: &[u8], inserts: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(2) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if at < v.len() => v[at] ^= 1 << rng.below(8),
            1 => v.insert(at, inserts[rng.below(inserts.len())]),
            2 => v.truncate(at),
            3 => {
                let start = v[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let end = v[at..].iter().position(|&b| b == b'\n').map_or(v.len(), |i| at + i + 1);
                let line = v[start..end].to_vec();
                v.splice(end..end, line);
            }
            _ if at < v.len() => {
                v.remove(at);
            }
            _ => {}
        }
    }
    v
}
