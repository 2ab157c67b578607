//! Well-formed input: arrays, inline commands, quoting, pipelining and skipped input

use super::{args, commands, run, run_chunks};
use crate::resp::{RespLimits, RespParser};

#[test]
fn array_of_bulk_strings() {
    assert_eq!(commands(b"*1\r\n$4\r\nPING\r\n"), [args(&["PING"])]);
    assert_eq!(
        commands(b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"),
        [args(&["SET", "key", "value"])]
    );
}

#[test]
fn bulk_strings_are_binary_safe() {
    let input = b"*2\r\n$0\r\n\r\n$6\r\na\r\n\0\x01b\r\n";
    assert_eq!(
        commands(input),
        [vec![b"".to_vec(), b"a\r\n\0\x01b".to_vec()]]
    );
}

#[test]
fn inline_commands() {
    assert_eq!(commands(b"PING\r\n"), [args(&["PING"])]);
    assert_eq!(commands(b"set a b\n"), [args(&["set", "a", "b"])]);
    assert_eq!(commands(b"  get \t  a  \r\n"), [args(&["get", "a"])]);
}

#[test]
fn inline_double_quotes_and_escapes() {
    let input = b"SET \"a key\" \"q\\\" b\\\\ n\\n r\\r t\\t x\\x41\\x7a b\\b a\\a z\\z\"\r\n";
    let value = "q\" b\\ n\n r\r t\t xAz b\x08 a\x07 zz";
    assert_eq!(commands(input), [args(&["SET", "a key", value])]);
    // `\x` without two hex digits is just `x`.
    assert_eq!(commands(b"\"\\x4g\"\n"), [args(&["x4g"])]);
    assert_eq!(commands(b"\"\"\n"), [args(&[""])]);
}

#[test]
fn inline_single_quotes() {
    let input = b"SET 'it\\'s' 'no \\n \"escapes\"'\n";
    assert_eq!(
        commands(input),
        [args(&["SET", "it's", "no \\n \"escapes\""])]
    );
}

#[test]
fn inline_quote_inside_an_argument_joins() {
    assert_eq!(commands(b"a\"b c\" d\n"), [args(&["ab c", "d"])]);
}

#[test]
fn inline_nul_byte_is_ordinary() {
    assert_eq!(commands(b"a\0b\n"), [vec![b"a\0b".to_vec()]]);
}

#[test]
fn empty_lines_and_empty_arrays_are_skipped() {
    assert_eq!(commands(b"\r\n\n   \r\n\t\n"), Vec::<Vec<Vec<u8>>>::new());
    assert_eq!(
        commands(b"*0\r\n*-1\r\n*-7\r\n"),
        Vec::<Vec<Vec<u8>>>::new()
    );
    assert_eq!(commands(b"\n*0\r\nPING\n*-1\r\n"), [args(&["PING"])]);
}

#[test]
fn pipelined_commands_come_out_in_order() {
    let input = b"*1\r\n$4\r\nPING\r\nECHO hi\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\r\nQUIT\n";
    let expected = [
        args(&["PING"]),
        args(&["ECHO", "hi"]),
        args(&["GET", "k"]),
        args(&["QUIT"]),
    ];
    assert_eq!(commands(input), expected);
}

#[test]
fn every_example_split_everywhere_when_concatenated() {
    let examples: [&[u8]; 6] = [
        b"*1\r\n$4\r\nPING\r\n",
        b"PING\r\n",
        b"set a b\n",
        b"*0\r\n",
        b"SET \"x y\" 'z'\r\n",
        b"*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n",
    ];
    let all: Vec<u8> = examples.concat();
    let expected: Vec<_> = examples
        .iter()
        .flat_map(|e| run(RespLimits::default(), e).commands)
        .collect();
    assert_eq!(commands(&all), expected);
}

#[test]
fn poll_asks_for_more_until_complete() {
    let mut parser = RespParser::default();
    for byte in b"*1\r\n$4\r\nPIN" {
        parser.handle_bytes(&[*byte]);
        assert_eq!(parser.poll_command(), Ok(None));
    }
    parser.handle_bytes(b"G\r");
    assert_eq!(parser.poll_command(), Ok(None));
    parser.handle_bytes(b"\n");
    assert_eq!(parser.poll_command(), Ok(Some(args(&["PING"]))));
    assert_eq!(parser.poll_command(), Ok(None));
    assert_eq!(parser.buffered_bytes(), 0);
    assert!(!parser.is_failed());
}

#[test]
fn limits_are_inclusive() {
    let limits = RespLimits {
        bulk_bytes_max: 3,
        args_max: 2,
        inline_bytes_max: 7,
        ..RespLimits::default()
    };
    let outcome = run_chunks(
        limits,
        [&b"*2\r\n$3\r\nabc\r\n$0\r\n\r\nPING a\r\nPING b\n"[..]],
    );
    assert_eq!(outcome.error, None);
    assert_eq!(
        outcome.commands,
        [
            args(&["abc", ""]),
            args(&["PING", "a"]),
            args(&["PING", "b"])
        ]
    );
    // The whole of this 20-byte command fits a 20-byte buffer.
    let limits = RespLimits {
        buffer_bytes_max: 20,
        ..RespLimits::default()
    };
    let outcome = run(limits, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.commands, [args(&["GET", "k"])]);
}

#[test]
fn claimed_lengths_allocate_nothing_until_bytes_arrive() {
    let mut parser = RespParser::default();
    parser.handle_bytes(b"*1048576\r\n$67108864\r\nabc");
    assert_eq!(parser.poll_command(), Ok(None));
    assert_eq!(parser.buffered_bytes(), 3);
}
