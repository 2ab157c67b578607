//! Tests of the RESP parser and encoder, with helpers shared by the test files

mod encode;
mod errors;
mod parse;
mod prop;

use super::{RespError, RespLimits, RespParser};

/// Everything a parser produced from one input: the commands, then the error if any
#[derive(Debug, PartialEq)]
struct Outcome {
    commands: Vec<Vec<Vec<u8>>>,
    error: Option<RespError>,
}

/// Feeds `chunks` one at a time, draining the parser after each, as a connection task does
fn run_chunks<'a>(limits: RespLimits, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut parser = RespParser::new(limits);
    let mut commands = Vec::new();
    for chunk in chunks {
        parser.handle_bytes(chunk);
        loop {
            match parser.poll_command() {
                Ok(Some(command)) => commands.push(command),
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        commands,
                        error: Some(error),
                    };
                }
            }
        }
        assert!(parser.buffered_bytes() <= limits.buffer_bytes_max);
    }
    Outcome {
        commands,
        error: None,
    }
}

/// Feeds `bytes` in one chunk
fn run(limits: RespLimits, bytes: &[u8]) -> Outcome {
    run_chunks(limits, [bytes])
}

/// Asserts that cutting `bytes` at any one point, or into single bytes, changes nothing
fn assert_split_invariant(limits: RespLimits, bytes: &[u8]) -> Outcome {
    let whole = run(limits, bytes);
    for cut in 0..=bytes.len() {
        let (head, tail) = bytes.split_at(cut);
        assert_eq!(
            run_chunks(limits, [head, tail]),
            whole,
            "cut at {cut} of {bytes:?}"
        );
    }
    assert_eq!(
        run_chunks(limits, bytes.chunks(1)),
        whole,
        "byte by byte: {bytes:?}"
    );
    whole
}

/// The commands of an input that must parse without error
fn commands(bytes: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let outcome = assert_split_invariant(RespLimits::default(), bytes);
    assert_eq!(outcome.error, None, "input {bytes:?}");
    outcome.commands
}

/// The error an input must end with, after `before` commands
fn error_after(limits: RespLimits, bytes: &[u8], before: usize) -> RespError {
    let outcome = assert_split_invariant(limits, bytes);
    assert_eq!(outcome.commands.len(), before, "input {bytes:?}");
    outcome
        .error
        .unwrap_or_else(|| panic!("no error for {bytes:?}"))
}

/// An argument list from string literals
fn args(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|a| a.as_bytes().to_vec()).collect()
}
