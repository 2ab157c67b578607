//! A small incremental reader of RESP2 server replies
//!
//! The load generator only reads what servers answer, so this covers the reply side of RESP2:
//! simple strings (`+OK`), errors (`-ERR …`), integers (`:1`), bulk strings (`$3\r\nabc`),
//! null bulk (`$-1`) and arrays (`*2\r\n…`, null array `*-1`).
//!
//! Bytes arrive in whatever pieces the socket hands out: [`ReplyReader::feed`] appends them and
//! [`ReplyReader::next_reply`] returns a reply once one is complete, keeping partial input for
//! later. Every length a server sends is checked against a named limit before anything is
//! allocated, so a broken or hostile server cannot make the client allocate without bound.
//!
//! ```
//! use shale_runtime_smol::bench::reply::{Reply, ReplyReader};
//!
//! let mut reader = ReplyReader::new();
//! reader.feed(b"$5\r\nhel");
//! assert_eq!(reader.next_reply(), Ok(None));
//! reader.feed(b"lo\r\n+OK\r\n");
//! assert_eq!(reader.next_reply(), Ok(Some(Reply::Bulk(b"hello".to_vec()))));
//! assert_eq!(reader.next_reply(), Ok(Some(Reply::Simple(b"OK".to_vec()))));
//! assert_eq!(reader.next_reply(), Ok(None));
//! ```

use std::fmt;
use std::io::{self, Read};

/// Largest bulk string accepted, in bytes (the Redis protocol's own limit)
pub const BULK_BYTES_MAX: usize = 512 * 1024 * 1024;

/// Longest header or simple-string/error/integer line accepted, in bytes (without `\r\n`)
pub const LINE_BYTES_MAX: usize = 64 * 1024;

/// Most elements one array may announce
pub const ARRAY_LEN_MAX: usize = 1024 * 1024;

/// Deepest nesting of arrays accepted (a top-level array has depth 1)
pub const ARRAY_DEPTH_MAX: usize = 8;

/// Bytes of a status or error line quoted by [`Reply::describe`]
const DESCRIBE_BYTES_MAX: usize = 48;

/// Bytes read from the socket per [`ReplyReader::fill_from`] call
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// One reply from a RESP server
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+…`: a status line such as `OK`
    Simple(Vec<u8>),
    /// `-…`: an error line such as `ERR wrong number of arguments`
    Error(Vec<u8>),
    /// `:…`: a signed 64-bit integer
    Integer(i64),
    /// `$n`: a binary-safe string
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`: no value (a `GET` of a missing key)
    Null,
    /// `*n`: a sequence of replies
    Array(Vec<Reply>),
}

impl Reply {
    /// A one-line description for error messages, at most about 80 characters long
    pub fn describe(&self) -> String {
        let text = |bytes: &[u8]| {
            let shown = &bytes[..bytes.len().min(DESCRIBE_BYTES_MAX)];
            let ellipsis = if bytes.len() > shown.len() { "…" } else { "" };
            format!("{}{ellipsis}", String::from_utf8_lossy(shown))
        };
        match self {
            Self::Simple(line) => format!("simple string {:?}", text(line)),
            Self::Error(line) => format!("error {:?}", text(line)),
            Self::Integer(n) => format!("integer {n}"),
            Self::Bulk(bytes) => format!("bulk string of {} bytes", bytes.len()),
            Self::Null => "nil".into(),
            Self::Array(items) => format!("array of {} elements", items.len()),
        }
    }
}

/// Why the bytes a server sent are not a RESP reply
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// The first byte of a reply is not one of `+ - : $ *`
    UnknownType(u8),
    /// A line has no `\r\n` within [`LINE_BYTES_MAX`] bytes
    LineTooLong,
    /// An integer or length is not a decimal number
    BadNumber,
    /// A bulk string announces more than [`BULK_BYTES_MAX`] bytes
    BulkTooLong(i64),
    /// An array announces more than [`ARRAY_LEN_MAX`] elements
    ArrayTooLong(i64),
    /// Arrays nest deeper than [`ARRAY_DEPTH_MAX`]
    TooDeep,
    /// A bulk string is not followed by `\r\n`
    MissingCrlf,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownType(b) => write!(f, "unknown reply type byte 0x{b:02x}"),
            Self::LineTooLong => write!(f, "reply line longer than {LINE_BYTES_MAX} bytes"),
            Self::BadNumber => write!(f, "reply length or integer is not a decimal number"),
            Self::BulkTooLong(n) => {
                write!(f, "bulk reply of {n} bytes exceeds {BULK_BYTES_MAX}")
            }
            Self::ArrayTooLong(n) => {
                write!(f, "array reply of {n} elements exceeds {ARRAY_LEN_MAX}")
            }
            Self::TooDeep => write!(f, "arrays nested deeper than {ARRAY_DEPTH_MAX}"),
            Self::MissingCrlf => write!(f, "bulk reply not terminated by CRLF"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Buffers bytes from a server and cuts them into [`Reply`]s
#[derive(Debug, Default)]
pub struct ReplyReader {
    /// Received bytes; everything before `start` has been returned as replies
    buf: Vec<u8>,
    /// Offset of the first byte not yet part of a returned reply
    start: usize,
}

impl ReplyReader {
    /// An empty reader
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the server
    pub fn feed(&mut self, bytes: &[u8]) {
        // Drop consumed bytes before growing, so the buffer holds at most one partial reply
        // plus the newest input.
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Reads once from `src` into the buffer, returning how many bytes arrived (0 = closed)
    pub fn fill_from<R: Read>(&mut self, src: &mut R) -> io::Result<usize> {
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        let n = src.read(&mut chunk)?;
        self.feed(&chunk[..n]);
        Ok(n)
    }

    /// Bytes received but not yet returned as part of a reply
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete reply, `Ok(None)` if more bytes are needed first
    ///
    /// After an error the stream cannot be resynchronised; the caller should drop the
    /// connection.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        match parse(&self.buf[self.start..], 0)? {
            Some((reply, used)) => {
                self.start += used;
                debug_assert!(self.start <= self.buf.len());
                Ok(Some(reply))
            }
            None => Ok(None),
        }
    }
}

/// Parses one reply at the start of `input`, returning it and the bytes it took
fn parse(input: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, ReplyError> {
    let Some(&kind) = input.first() else {
        return Ok(None);
    };
    let Some((line, header_len)) = line(&input[1..])? else {
        return Ok(None);
    };
    let after_header = 1 + header_len;
    let reply = match kind {
        b'+' => Reply::Simple(line.to_vec()),
        b'-' => Reply::Error(line.to_vec()),
        b':' => Reply::Integer(number(line)?),
        b'$' => return bulk(input, after_header, number(line)?),
        b'*' => return array(input, after_header, number(line)?, depth + 1),
        other => return Err(ReplyError::UnknownType(other)),
    };
    Ok(Some((reply, after_header)))
}

/// The body of a bulk string whose header ends at `at`
fn bulk(input: &[u8], at: usize, len: i64) -> Result<Option<(Reply, usize)>, ReplyError> {
    if len == -1 {
        return Ok(Some((Reply::Null, at)));
    }
    let len = usize::try_from(len).map_err(|_| ReplyError::BadNumber)?;
    if len > BULK_BYTES_MAX {
        return Err(ReplyError::BulkTooLong(len as i64));
    }
    let end = at + len;
    if input.len() < end + 2 {
        return Ok(None);
    }
    if &input[end..end + 2] != b"\r\n" {
        return Err(ReplyError::MissingCrlf);
    }
    Ok(Some((Reply::Bulk(input[at..end].to_vec()), end + 2)))
}

/// The elements of an array whose header ends at `at`
fn array(
    input: &[u8],
    at: usize,
    len: i64,
    depth: usize,
) -> Result<Option<(Reply, usize)>, ReplyError> {
    if len == -1 {
        return Ok(Some((Reply::Null, at)));
    }
    let len = usize::try_from(len).map_err(|_| ReplyError::BadNumber)?;
    if len > ARRAY_LEN_MAX {
        return Err(ReplyError::ArrayTooLong(len as i64));
    }
    if depth > ARRAY_DEPTH_MAX {
        return Err(ReplyError::TooDeep);
    }
    // Capacity grows with elements actually received, not with the announced length.
    let mut items = Vec::with_capacity(len.min(64));
    let mut pos = at;
    for _ in 0..len {
        match parse(&input[pos..], depth)? {
            Some((item, used)) => {
                items.push(item);
                pos += used;
            }
            None => return Ok(None),
        }
    }
    Ok(Some((Reply::Array(items), pos)))
}

/// The line at the start of `input` without `\r\n`, and its length including `\r\n`
fn line(input: &[u8]) -> Result<Option<(&[u8], usize)>, ReplyError> {
    let window = &input[..input.len().min(LINE_BYTES_MAX + 2)];
    match window.windows(2).position(|pair| pair == b"\r\n") {
        Some(end) => Ok(Some((&input[..end], end + 2))),
        None if window.len() >= LINE_BYTES_MAX + 2 => Err(ReplyError::LineTooLong),
        None => Ok(None),
    }
}

/// A decimal `i64` such as `-1` or `42`
fn number(digits: &[u8]) -> Result<i64, ReplyError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(ReplyError::BadNumber)
}
