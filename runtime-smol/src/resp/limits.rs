//! Named bounds on what one client may make the parser hold

/// Bounds the [`RespParser`](super::RespParser) enforces on every client command
///
/// Every field is a maximum, named with its unit last. Going over any of them is a protocol
/// error, and the connection is closed after the error reply, as Redis does.
///
/// Client commands are flat: an array of bulk strings, or one inline line. The nesting depth
/// is therefore fixed at [`NESTING_DEPTH_MAX`](Self::NESTING_DEPTH_MAX) and is not a field: an
/// array inside a command array is answered with `Protocol error: expected '$', got '*'`.
///
/// ```
/// use shale_runtime_smol::resp::RespLimits;
///
/// let limits = RespLimits { bulk_bytes_max: 1024, ..RespLimits::default() };
/// assert_eq!(limits.args_max, 1024 * 1024);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RespLimits {
    /// Longest bulk string (one argument), in bytes; default 64 MiB
    ///
    /// Redis allows 512 MiB (`proto-max-bulk-len`). Shale stores every value in a Raft log
    /// entry that is replicated, fsynced and kept until the next snapshot, so a single value
    /// of hundreds of MiB would stall a whole group; 64 MiB is still far above any sensible
    /// value and caps what one connection can make a node buffer.
    pub bulk_bytes_max: usize,
    /// Most arguments in one command array, command name included; default 1024 × 1024
    ///
    /// A larger count is answered with `Protocol error: invalid multibulk length`. Inline
    /// commands are bounded by [`inline_bytes_max`](Self::inline_bytes_max) instead.
    pub args_max: usize,
    /// Longest inline command line, and longest `*<count>` or `$<len>` header line, in bytes,
    /// without the final `\n`; default 64 KiB (Redis's `PROTO_INLINE_MAX_SIZE`)
    pub inline_bytes_max: usize,
    /// Most raw bytes one command may span on the wire, headers included; default 128 MiB
    ///
    /// This is also the bound on the parser's buffer, as long as the caller drains
    /// [`poll_command`](super::RespParser::poll_command) before each
    /// [`handle_bytes`](super::RespParser::handle_bytes): the parser then never holds more
    /// than this plus one chunk. The default fits one maximal bulk string twice, so a `SET`
    /// with a maximal value (and a long key) always fits.
    pub buffer_bytes_max: usize,
}

impl RespLimits {
    /// How deeply a client command may nest arrays: 1, the command array itself
    pub const NESTING_DEPTH_MAX: usize = 1;
}

impl Default for RespLimits {
    fn default() -> Self {
        Self {
            bulk_bytes_max: 64 * 1024 * 1024,
            args_max: 1024 * 1024,
            inline_bytes_max: 64 * 1024,
            buffer_bytes_max: 128 * 1024 * 1024,
        }
    }
}
