//! A small seeded random number generator (SplitMix64), so that a run is replayable from the
//! seed it prints, without a dependency.

/// SplitMix64: fast, good enough for choosing operations and faults, and tiny.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The seed of a run: `ORGPLANE_FAULTS_SEED` to replay one, else fresh from the clock.
pub fn seed_from_env() -> u64 {
    match std::env::var("ORGPLANE_FAULTS_SEED") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("ORGPLANE_FAULTS_SEED={text:?} is not a number")),
        Err(_) => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            nanos.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}
