//! Property tests: round trips through the encoder and parser, and the fuzz target

use proptest::prelude::*;

use super::{Outcome, run, run_chunks};
use crate::resp::{Protocol, Reply, RespLimits, encode};

/// Cuts `bytes` at the given points (taken modulo its length, in any order)
fn cut<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// Bytes that look like RESP often enough to reach deep parser states
fn protocol_ish_bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        2 => any::<u8>(),
        3 => proptest::sample::select(b"*$\r\n\r\n0123-9 \"'\\xaf".to_vec()),
    ];
    proptest::collection::vec(byte, 0..max_len)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Commands encoded as RESP arrays, pipelined and cut anywhere, come back exactly
    #[test]
    fn encoded_commands_round_trip_through_any_cuts(
        commands in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 1..6),
            1..6,
        ),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut wire = Vec::new();
        for command in &commands {
            let reply = Reply::Array(Some(command.iter().map(Reply::bulk).collect()));
            encode(&reply, Protocol::Resp2, &mut wire);
        }
        let outcome = run_chunks(RespLimits::default(), cut(&wire, &cuts));
        prop_assert_eq!(outcome, Outcome { commands, error: None });
    }

    /// The fuzz target: arbitrary bytes, in arbitrary chunks, never panic, never hold more
    /// than the buffer limit between chunks, and parse the same as when fed whole
    #[test]
    fn fuzz_arbitrary_bytes_never_panic(
        bytes in protocol_ish_bytes(600),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
        small_limits in any::<bool>(),
    ) {
        let limits = if small_limits {
            RespLimits { bulk_bytes_max: 24, args_max: 6, inline_bytes_max: 40, buffer_bytes_max: 96 }
        } else {
            RespLimits::default()
        };
        // run_chunks asserts the buffer bound after every chunk.
        let whole = run(limits, &bytes);
        prop_assert_eq!(run_chunks(limits, cut(&bytes, &cuts)), whole);
    }

    /// Valid pipelines with a few bytes overwritten reach the deep states of the array
    /// parser; they too never panic and parse the same however they are cut
    #[test]
    fn fuzz_mutated_commands_never_panic(
        commands in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 1..4),
            1..4,
        ),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut wire = Vec::new();
        for command in &commands {
            let reply = Reply::Array(Some(command.iter().map(Reply::bulk).collect()));
            encode(&reply, Protocol::Resp2, &mut wire);
        }
        for (at, byte) in edits {
            let len = wire.len();
            wire[at % len] = byte;
        }
        let limits = RespLimits { bulk_bytes_max: 8, args_max: 3, inline_bytes_max: 16, buffer_bytes_max: 48 };
        let whole = run(limits, &wire);
        prop_assert_eq!(run_chunks(limits, cut(&wire, &cuts)), whole);
    }
}
