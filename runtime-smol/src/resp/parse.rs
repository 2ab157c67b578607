//! The incremental, IO-free parser of client commands

use super::error::RespError;
use super::inline::split_inline;
use super::limits::RespLimits;

/// Empty buffers with more capacity than this, in bytes, give the excess back
const BUFFER_RETAIN_BYTES_MAX: usize = 64 * 1024;

/// Turns the bytes a client sends into commands, one argument list at a time
///
/// - [`handle_bytes`](Self::handle_bytes) takes each chunk read from the socket, whatever
///   its size or where it cuts the stream.
/// - [`poll_command`](Self::poll_command) then yields the complete commands in order, until
///   `Ok(None)` asks for more bytes. Drain it before the next `handle_bytes`.
///
/// Both RESP arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what client
/// libraries send) and inline commands (`GET k\r\n`, what `telnet` sends) are accepted.
/// Empty inline lines and empty or null arrays (`*0`, `*-1`) are skipped.
///
/// The result never depends on how the stream was cut into chunks: every decision, limits
/// included, is made from the bytes of the current command only, and a limit is reported as
/// soon as the bytes seen prove it will be exceeded. Nothing is allocated from a length the
/// client claims; only bytes that arrived are stored.
///
/// After an error the parser is closed: it drops its buffer, ignores further input, and
/// returns the same error from every `poll_command`.
#[derive(Debug, Default)]
pub struct RespParser {
    limits: RespLimits,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`
    pos: usize,
    /// Bytes after `pos` already searched for a line end without finding one
    scanned: usize,
    /// Bytes the command being parsed has consumed so far
    command_bytes: usize,
    /// The command array being parsed, once its `*<count>` line is consumed
    array: Option<PartialArray>,
    failed: Option<RespError>,
}

#[derive(Debug)]
struct PartialArray {
    args_left: usize,
    args: Vec<Vec<u8>>,
    /// Total length of `args`, in bytes
    args_bytes: usize,
    /// Length of the next argument, once its `$<len>` line is consumed
    bulk_len: Option<usize>,
}

/// What one parsing step found
enum Step {
    Command(Vec<Vec<u8>>),
    /// Bytes consumed without a command: an empty line, `*0`, or one array argument
    Progress,
    NeedMore,
}

impl RespParser {
    /// A parser enforcing `limits`
    #[must_use]
    pub fn new(limits: RespLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The limits this parser enforces
    #[must_use]
    pub fn limits(&self) -> &RespLimits {
        &self.limits
    }

    /// Bytes held for commands not yet complete (raw, plus arguments already parsed)
    #[must_use]
    pub fn buffered_bytes(&self) -> usize {
        let args: usize = self
            .array
            .as_ref()
            .map_or(0, |a| a.args.iter().map(Vec::len).sum());
        self.buf.len() - self.pos + args
    }

    /// Whether a protocol error closed this parser (and the connection must close)
    #[must_use]
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Appends a chunk read from the client
    ///
    /// Ignored once the parser has failed. If the caller keeps feeding without draining
    /// [`poll_command`](Self::poll_command) and more than `buffer_bytes_max` bytes pile up,
    /// the parser fails with [`RespError::BufferFull`] rather than grow further.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        if self.failed.is_some() || bytes.is_empty() {
            return;
        }
        if self.buf.len() - self.pos > self.limits.buffer_bytes_max {
            let buffer_bytes_max = self.limits.buffer_bytes_max;
            self.fail(RespError::BufferFull { buffer_bytes_max });
            return;
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete command as its argument list, `Ok(None)` if more bytes are needed
    ///
    /// The first argument is the command name, as sent (not case-folded). On `Err` the
    /// caller sends [`RespError::to_reply`] and closes the connection; commands returned
    /// before the error are valid and should be answered first.
    pub fn poll_command(&mut self) -> Result<Option<Vec<Vec<u8>>>, RespError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        loop {
            match self.step() {
                Ok(Step::Command(args)) => {
                    self.command_bytes = 0;
                    return Ok(Some(args));
                }
                Ok(Step::Progress) => {}
                Ok(Step::NeedMore) => {
                    self.release_consumed();
                    return Ok(None);
                }
                Err(error) => return Err(self.fail(error)),
            }
        }
    }

    fn fail(&mut self, error: RespError) -> RespError {
        self.failed = Some(error.clone());
        self.buf = Vec::new();
        self.pos = 0;
        self.array = None;
        error
    }

    fn release_consumed(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if self.buf.capacity() > BUFFER_RETAIN_BYTES_MAX {
                self.buf.shrink_to(BUFFER_RETAIN_BYTES_MAX);
            }
        }
    }

    fn unconsumed(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Bytes the current command may still span before it breaks `buffer_bytes_max`
    fn budget(&self) -> usize {
        self.limits
            .buffer_bytes_max
            .saturating_sub(self.command_bytes)
    }

    fn buffer_full(&self) -> RespError {
        RespError::BufferFull {
            buffer_bytes_max: self.limits.buffer_bytes_max,
        }
    }

    fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.buf.len() - self.pos);
        debug_assert!(n <= self.budget());
        self.pos += n;
        self.command_bytes += n;
        self.scanned = 0;
    }

    fn step(&mut self) -> Result<Step, RespError> {
        if self.array.is_some() {
            return self.step_array();
        }
        match self.unconsumed().first() {
            None => Ok(Step::NeedMore),
            Some(b'*') => self.step_array_header(),
            Some(_) => self.step_inline(),
        }
    }

    /// Finds the end of the line at `pos`: the index of `end` (`\n`, or `\r` which must then
    /// be followed by `\n`), relative to `pos`
    ///
    /// The line, without its end, may be `inline_bytes_max` long (else `too_big`), and with
    /// its end must fit the command's budget (else [`RespError::BufferFull`]).
    fn find_line_end(&mut self, end: u8, too_big: RespError) -> Result<Option<usize>, RespError> {
        let line_max = self.limits.inline_bytes_max;
        let budget = self.budget();
        let terminator_bytes = if end == b'\r' { 2 } else { 1 };
        let available = self.buf.len() - self.pos;
        let window = available.min(line_max.saturating_add(1)).min(budget);
        let from = self.scanned.min(window);
        let found = self.unconsumed()[from..window]
            .iter()
            .position(|b| *b == end);
        let Some(at) = found.map(|i| from + i) else {
            self.scanned = window;
            return if window > line_max {
                Err(too_big)
            } else if window == budget {
                Err(self.buffer_full())
            } else {
                Ok(None)
            };
        };
        if at + terminator_bytes > budget {
            return Err(self.buffer_full());
        }
        if at + terminator_bytes > available {
            self.scanned = at;
            return Ok(None);
        }
        Ok(Some(at))
    }

    fn step_inline(&mut self) -> Result<Step, RespError> {
        let Some(at) = self.find_line_end(b'\n', RespError::TooBigInlineRequest)? else {
            return Ok(Step::NeedMore);
        };
        let mut line = &self.unconsumed()[..at];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        let args = split_inline(line).ok_or(RespError::UnbalancedQuotes)?;
        self.consume(at + 1);
        if args.is_empty() {
            self.command_bytes = 0;
            return Ok(Step::Progress);
        }
        Ok(Step::Command(args))
    }

    /// The number on a `\r\n`-ended header line at `pos`, after its one-byte type prefix;
    /// `invalid` if it is not a number or the line does not end in `\r\n`
    fn header_number(
        &mut self,
        too_big: RespError,
        invalid: RespError,
    ) -> Result<Option<i64>, RespError> {
        let Some(at) = self.find_line_end(b'\r', too_big)? else {
            return Ok(None);
        };
        let line = self.unconsumed();
        if line[at + 1] != b'\n' {
            return Err(invalid);
        }
        let number = parse_i64(&line[1..at]).ok_or(invalid)?;
        self.consume(at + 2);
        Ok(Some(number))
    }

    fn step_array_header(&mut self) -> Result<Step, RespError> {
        let too_big = RespError::TooBigMultibulkCount;
        let Some(count) = self.header_number(too_big, RespError::InvalidMultibulkLength)? else {
            return Ok(Step::NeedMore);
        };
        if count <= 0 {
            // Redis ignores empty and null arrays (any negative count) from clients.
            self.command_bytes = 0;
            return Ok(Step::Progress);
        }
        let count = usize::try_from(count).map_err(|_| RespError::InvalidMultibulkLength)?;
        if count > self.limits.args_max {
            return Err(RespError::InvalidMultibulkLength);
        }
        // Reserve only a little: the count is a claim, not bytes received.
        let args = Vec::with_capacity(count.min(16));
        self.array = Some(PartialArray {
            args_left: count,
            args,
            args_bytes: 0,
            bulk_len: None,
        });
        Ok(Step::Progress)
    }

    fn step_array(&mut self) -> Result<Step, RespError> {
        let bulk_len = self.array.as_ref().and_then(|a| a.bulk_len);
        let Some(len) = bulk_len else {
            return self.step_bulk_header();
        };
        let needed = len.saturating_add(2);
        debug_assert!(needed <= self.budget(), "checked with the header");
        let available = self.unconsumed();
        if available.len() < needed {
            return Ok(Step::NeedMore);
        }
        if &available[len..needed] != b"\r\n" {
            return Err(RespError::BulkNotTerminated);
        }
        let arg = available[..len].to_vec();
        self.consume(needed);
        let Some(array) = self.array.as_mut() else {
            unreachable!("step_array runs only inside an array");
        };
        array.args_bytes += arg.len();
        array.args.push(arg);
        array.bulk_len = None;
        array.args_left -= 1;
        if array.args_left > 0 {
            return Ok(Step::Progress);
        }
        let args = core::mem::take(&mut array.args);
        self.array = None;
        Ok(Step::Command(args))
    }

    fn step_bulk_header(&mut self) -> Result<Step, RespError> {
        if self.budget() == 0 {
            // Even the `$` would be past the limit: do not look at it.
            return Err(self.buffer_full());
        }
        match self.unconsumed().first() {
            None => return Ok(Step::NeedMore),
            Some(b'$') => {}
            Some(other) => return Err(RespError::ExpectedDollar(*other)),
        }
        let invalid = RespError::InvalidBulkLength;
        let Some(len) = self.header_number(RespError::TooBigBulkCount, invalid.clone())? else {
            return Ok(Step::NeedMore);
        };
        let len = usize::try_from(len).map_err(|_| invalid.clone())?;
        if len > self.limits.bulk_bytes_max {
            return Err(invalid);
        }
        if len.saturating_add(2) > self.budget() {
            return Err(self.buffer_full());
        }
        if let Some(array) = self.array.as_mut() {
            array.bulk_len = Some(len);
        }
        Ok(Step::Progress)
    }
}

/// A decimal integer as Redis's `string2ll` reads it: optional `-`, digits, no `+`, no
/// leading zeros, no spaces, no overflow
fn parse_i64(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, digits),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut value: i64 = 0;
    for &byte in digits {
        let digit = i64::from(char::from(byte).to_digit(10)?);
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some(value)
}
