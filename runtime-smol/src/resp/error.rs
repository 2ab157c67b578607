//! Protocol errors found while parsing client input

use core::fmt;

use super::encode::Reply;

/// A client sent bytes that are not a valid command, or a command over a [`RespLimits`] bound
///
/// Every variant is fatal for the connection: the byte stream can no longer be framed, so
/// the server sends [`to_reply`](Self::to_reply) and then closes, as Redis does
/// ([`closes_connection`](Self::closes_connection) says so for each variant). `Display` gives
/// Redis's own wording where Redis has the same error.
///
/// [`RespLimits`]: super::RespLimits
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespError {
    /// `*<count>` is not an integer, or counts more than `args_max` arguments
    InvalidMultibulkLength,
    /// `$<len>` is not an integer, is negative, or is over `bulk_bytes_max`
    InvalidBulkLength,
    /// An argument of a command array does not start with `$` (the byte it starts with)
    ///
    /// This is also the error for a nested array (`*`), since client commands are flat.
    ExpectedDollar(u8),
    /// A `*<count>` line has no `\r` within `inline_bytes_max` bytes
    TooBigMultibulkCount,
    /// A `$<len>` line has no `\r` within `inline_bytes_max` bytes
    TooBigBulkCount,
    /// An inline command line is longer than `inline_bytes_max` bytes
    TooBigInlineRequest,
    /// An inline command has a quote that is not closed, or a closing quote not followed by a
    /// space or the end of the line
    UnbalancedQuotes,
    /// A bulk string's data is not followed by `\r\n` (Redis does not check this)
    BulkNotTerminated,
    /// One command spans more than `buffer_bytes_max` bytes (Redis closes such a client
    /// without a reply; we send this error first)
    BufferFull {
        /// The limit that was exceeded, in bytes
        buffer_bytes_max: usize,
    },
}

impl RespError {
    /// Whether the connection must be closed after replying: always, for a protocol error
    #[must_use]
    pub fn closes_connection(&self) -> bool {
        true
    }

    /// The error reply to send before closing: `-ERR Protocol error: ...`
    #[must_use]
    pub fn to_reply(&self) -> Reply {
        Reply::Error(format!("ERR {self}"))
    }
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match self {
            Self::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            Self::InvalidBulkLength => f.write_str("invalid bulk length"),
            Self::ExpectedDollar(got) if got.is_ascii_graphic() || *got == b' ' => {
                write!(f, "expected '$', got '{}'", char::from(*got))
            }
            Self::ExpectedDollar(got) => write!(f, "expected '$', got '\\x{got:02x}'"),
            Self::TooBigMultibulkCount => f.write_str("too big mbulk count string"),
            Self::TooBigBulkCount => f.write_str("too big bulk count string"),
            Self::TooBigInlineRequest => f.write_str("too big inline request"),
            Self::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            Self::BulkNotTerminated => f.write_str("bulk string not followed by CRLF"),
            Self::BufferFull { buffer_bytes_max } => {
                write!(f, "command longer than {buffer_bytes_max} bytes")
            }
        }
    }
}

impl std::error::Error for RespError {}
