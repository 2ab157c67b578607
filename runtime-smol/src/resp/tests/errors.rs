//! Every protocol error, each limit, and what the parser does after an error

use super::{args, error_after, run, run_chunks};
use crate::resp::{RespError, RespLimits, RespParser};

fn default_error(bytes: &[u8]) -> RespError {
    error_after(RespLimits::default(), bytes, 0)
}

#[test]
fn invalid_multibulk_length() {
    for input in [
        &b"*x\r\n"[..],
        b"*\r\n",
        b"*1x\r\n",
        b"*01\r\n",
        b"*+1\r\n",
        b"*1 \r\n",
        b"*1\rx",
    ] {
        assert_eq!(
            default_error(input),
            RespError::InvalidMultibulkLength,
            "{input:?}"
        );
    }
    assert_eq!(
        default_error(b"*99999999999999999999\r\n"),
        RespError::InvalidMultibulkLength
    );
    let error = default_error(b"*1048577\r\n");
    assert_eq!(
        error.to_string(),
        "Protocol error: invalid multibulk length"
    );
    let limits = RespLimits {
        args_max: 2,
        ..RespLimits::default()
    };
    assert_eq!(
        error_after(limits, b"*3\r\n", 0),
        RespError::InvalidMultibulkLength
    );
}

#[test]
fn invalid_bulk_length() {
    for input in [
        &b"*1\r\n$-1\r\n"[..],
        b"*1\r\n$x\r\n",
        b"*1\r\n$\r\n",
        b"*1\r\n$01\r\n",
        b"*1\r\n$2\rx",
    ] {
        assert_eq!(
            default_error(input),
            RespError::InvalidBulkLength,
            "{input:?}"
        );
    }
    let error = default_error(b"*1\r\n$67108865\r\n");
    assert_eq!(error.to_string(), "Protocol error: invalid bulk length");
    let limits = RespLimits {
        bulk_bytes_max: 3,
        ..RespLimits::default()
    };
    assert_eq!(
        error_after(limits, b"*1\r\n$4\r\n", 0),
        RespError::InvalidBulkLength
    );
}

#[test]
fn expected_dollar() {
    let error = default_error(b"*1\r\nx\r\n");
    assert_eq!(error, RespError::ExpectedDollar(b'x'));
    assert_eq!(error.to_string(), "Protocol error: expected '$', got 'x'");
    let error = default_error(b"*1\r\n\r\n");
    assert_eq!(
        error.to_string(),
        "Protocol error: expected '$', got '\\x0d'"
    );
}

#[test]
fn nested_arrays_are_refused() {
    let error = default_error(b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\nk\r\n");
    assert_eq!(error, RespError::ExpectedDollar(b'*'));
    assert_eq!(RespLimits::NESTING_DEPTH_MAX, 1);
}

#[test]
fn too_big_inline_request() {
    let limits = RespLimits {
        inline_bytes_max: 4,
        ..RespLimits::default()
    };
    let error = error_after(limits, b"PING\nPINGS\n", 1);
    assert_eq!(error, RespError::TooBigInlineRequest);
    assert_eq!(error.to_string(), "Protocol error: too big inline request");
    // Known as soon as the fifth byte arrives without a line end.
    assert_eq!(
        run(limits, b"abcde").error,
        Some(RespError::TooBigInlineRequest)
    );
    // The `\r` before `\n` counts.
    assert_eq!(
        run(limits, b"PING\r\n").error,
        Some(RespError::TooBigInlineRequest)
    );
}

#[test]
fn too_big_count_strings() {
    let limits = RespLimits {
        inline_bytes_max: 4,
        ..RespLimits::default()
    };
    let error = error_after(limits, b"*12345", 0);
    assert_eq!(
        error.to_string(),
        "Protocol error: too big mbulk count string"
    );
    let error = error_after(limits, b"*1\r\n$12345", 0);
    assert_eq!(
        error.to_string(),
        "Protocol error: too big bulk count string"
    );
    // A header line of 4 bytes is fine.
    assert_eq!(run(limits, b"*123\r\n$3\r\n").error, None);
}

#[test]
fn unbalanced_quotes() {
    for input in [
        &b"SET \"a\n"[..],
        b"SET 'a\n",
        b"SET \"a\"b\n",
        b"SET 'a'b\n",
        b"\"a\\\"\n",
    ] {
        let error = error_after(RespLimits::default(), input, 0);
        assert_eq!(error, RespError::UnbalancedQuotes, "{input:?}");
    }
    assert_eq!(
        RespError::UnbalancedQuotes.to_string(),
        "Protocol error: unbalanced quotes in request"
    );
}

#[test]
fn bulk_not_terminated() {
    assert_eq!(
        default_error(b"*1\r\n$1\r\nab\r\n"),
        RespError::BulkNotTerminated
    );
    assert_eq!(
        default_error(b"*1\r\n$1\r\na\n\r"),
        RespError::BulkNotTerminated
    );
}

#[test]
fn buffer_full() {
    let limits = RespLimits {
        buffer_bytes_max: 19,
        ..RespLimits::default()
    };
    let full = RespError::BufferFull {
        buffer_bytes_max: 19,
    };
    // 20 bytes: found at the last bulk's header, before its data arrives.
    assert_eq!(error_after(limits, b"*2\r\n$3\r\nGET\r\n$1\r\n", 0), full);
    // Inline lines and headers are held to it too.
    assert_eq!(
        error_after(limits, b"PING\nGET 0123456789abcdef\n", 1),
        full
    );
    assert_eq!(error_after(limits, b"*1\r\n$15\r\n", 0), full);
    assert_eq!(
        full.to_string(),
        "Protocol error: command longer than 19 bytes"
    );
}

#[test]
fn feeding_without_draining_is_bounded() {
    let limits = RespLimits {
        buffer_bytes_max: 8,
        ..RespLimits::default()
    };
    let mut parser = RespParser::new(limits);
    parser.handle_bytes(b"PING\nPING\n");
    parser.handle_bytes(b"PING\n");
    assert!(parser.is_failed());
    assert_eq!(parser.buffered_bytes(), 0);
    assert_eq!(
        parser.poll_command(),
        Err(RespError::BufferFull {
            buffer_bytes_max: 8
        })
    );
}

#[test]
fn commands_before_an_error_come_out_first() {
    let outcome = run(
        RespLimits::default(),
        b"PING\n*1\r\n$4\r\nECHO\r\n\"x\nPING\n",
    );
    assert_eq!(outcome.commands, [args(&["PING"]), args(&["ECHO"])]);
    assert_eq!(outcome.error, Some(RespError::UnbalancedQuotes));
}

#[test]
fn a_failed_parser_stays_failed() {
    let mut parser = RespParser::default();
    parser.handle_bytes(b"*x\r\n");
    let error = parser.poll_command().unwrap_err();
    assert!(parser.is_failed());
    assert!(error.closes_connection());
    parser.handle_bytes(b"PING\r\n");
    assert_eq!(parser.buffered_bytes(), 0);
    assert_eq!(parser.poll_command(), Err(error));
    let outcome = run_chunks(RespLimits::default(), [&b"*x"[..], b"\r\nPING\n"]);
    assert_eq!(outcome.commands.len(), 0);
}
