//! The request mix: a seeded generator choosing keys and kinds, and RESP request encoding

use std::io::Write;

/// What a request does, so its reply can be checked and counted
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `GET key:<n>`
    Read,
    /// `SET key:<n> <value>`
    Write,
}

impl Kind {
    /// The command this kind sends
    pub(crate) fn command(self) -> &'static str {
        match self {
            Self::Read => "GET",
            Self::Write => "SET",
        }
    }
}

/// A splitmix64 generator: tiny, fast, and the same sequence for the same seed everywhere
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence depends only on `seed`
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 uniformly distributed bits
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, bound)` by multiply-and-shift; the bias is below `bound / 2^64`
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A number in `[0.0, 1.0)` with 53 random bits
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws requests for one client and encodes them as RESP arrays of bulk strings
#[derive(Debug)]
pub(crate) struct Workload {
    rng: SplitMix64,
    keyspace: u64,
    read_ratio: f64,
    value: Vec<u8>,
}

impl Workload {
    /// The request stream of client `index` of a run with the given knobs
    pub(crate) fn new(
        seed: u64,
        index: usize,
        keyspace: u64,
        read_ratio: f64,
        value_bytes: usize,
    ) -> Self {
        assert!(keyspace > 0);
        assert!((0.0..=1.0).contains(&read_ratio));
        Self {
            rng: SplitMix64::new(seed.wrapping_add(index as u64)),
            keyspace,
            read_ratio,
            // Printable filler that still differs between clients.
            value: (0..value_bytes)
                .map(|i| b'a' + ((i + index) % 26) as u8)
                .collect(),
        }
    }

    /// Appends the next request to `out` and returns its kind
    pub(crate) fn encode_next(&mut self, out: &mut Vec<u8>) -> Kind {
        let kind = if self.rng.unit() < self.read_ratio {
            Kind::Read
        } else {
            Kind::Write
        };
        let key = self.rng.below(self.keyspace);
        let key = format!("key:{key}");
        match kind {
            Kind::Read => encode(out, &[b"GET", key.as_bytes()]),
            Kind::Write => encode(out, &[b"SET", key.as_bytes(), &self.value]),
        }
        kind
    }
}

/// Appends `args` to `out` as one RESP array of bulk strings
pub(crate) fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", args.len());
    for arg in args {
        let _ = write!(out, "${}\r\n", arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}
