//! Server replies and their encoding in RESP2 and RESP3

/// Which protocol version a connection speaks (`HELLO 3` switches to RESP3)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2, the default of every new connection
    #[default]
    Resp2,
    /// RESP3, with maps, sets, doubles, booleans and a single null
    Resp3,
}

/// A reply from the server, in RESP3's terms; [`encode`] degrades it for RESP2 clients
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK`: a short status line; `\r` and `\n` are sent as spaces
    Simple(String),
    /// `-ERR message`: starts with an upper-case code by convention; `\r` and `\n` are sent
    /// as spaces
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc`: binary-safe bytes; `None` is the null bulk string
    Bulk(Option<Vec<u8>>),
    /// `*2` followed by the elements; `None` is the null array
    Array(Option<Vec<Reply>>),
    /// RESP3 `_`; `$-1` in RESP2
    Null,
    /// RESP3 `%`, key-value pairs in order; in RESP2 a flat array `k1 v1 k2 v2 ...`
    Map(Vec<(Reply, Reply)>),
    /// RESP3 `~`; an array in RESP2
    Set(Vec<Reply>),
    /// RESP3 `,`; a bulk string of the same text in RESP2
    Double(f64),
    /// RESP3 `#t`/`#f`; the integer 1 or 0 in RESP2
    Boolean(bool),
    /// RESP3 `=`, text with a three-letter format such as `txt` or `mkd`; a plain bulk
    /// string of the text in RESP2
    Verbatim {
        /// The format, e.g. `*b"txt"`
        format: [u8; 3],
        /// The text, without the format prefix
        text: Vec<u8>,
    },
    /// RESP3 `>`, an out-of-band message such as a pub/sub delivery; an array in RESP2
    Push(Vec<Reply>),
}

impl Reply {
    /// `+OK`
    #[must_use]
    pub fn ok() -> Self {
        Self::Simple("OK".to_owned())
    }

    /// A bulk string holding a copy of `bytes`
    #[must_use]
    pub fn bulk(bytes: impl AsRef<[u8]>) -> Self {
        Self::Bulk(Some(bytes.as_ref().to_vec()))
    }

    /// An error reply; `message` should start with a code, as in `"ERR unknown command"`
    #[must_use]
    pub fn error(message: impl Into<String>) -> Self {
        Self::Error(message.into())
    }
}

/// Appends `reply`, encoded for `protocol`, to `out`
///
/// RESP3-only types degrade for RESP2 as Redis does: [`Reply::Null`] becomes `$-1`, a map a
/// flat array, a set or push an array, a double a bulk string, a boolean `:1`/`:0`, a
/// verbatim string a bulk string. In RESP3 both null bulk and null array are `_`.
pub fn encode(reply: &Reply, protocol: Protocol, out: &mut Vec<u8>) {
    let resp3 = protocol == Protocol::Resp3;
    match reply {
        Reply::Simple(text) => push_line(out, b'+', text),
        Reply::Error(text) => push_line(out, b'-', text),
        Reply::Integer(n) => push_header(out, b':', *n),
        Reply::Bulk(Some(bytes)) => push_bulk(out, b'$', bytes),
        Reply::Bulk(None) | Reply::Null if resp3 => out.extend_from_slice(b"_\r\n"),
        Reply::Bulk(None) | Reply::Null => out.extend_from_slice(b"$-1\r\n"),
        Reply::Array(None) if resp3 => out.extend_from_slice(b"_\r\n"),
        Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
        Reply::Array(Some(items)) => push_aggregate(out, b'*', items, protocol),
        Reply::Set(items) => push_aggregate(out, if resp3 { b'~' } else { b'*' }, items, protocol),
        Reply::Push(items) => push_aggregate(out, if resp3 { b'>' } else { b'*' }, items, protocol),
        Reply::Map(pairs) => {
            let (prefix, count) = if resp3 {
                (b'%', pairs.len())
            } else {
                (b'*', pairs.len() * 2)
            };
            push_header(out, prefix, len_i64(count));
            for (key, value) in pairs {
                encode(key, protocol, out);
                encode(value, protocol, out);
            }
        }
        Reply::Double(value) if resp3 => {
            out.push(b',');
            push_double(out, *value);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Double(value) => {
            let mut text = Vec::new();
            push_double(&mut text, *value);
            push_bulk(out, b'$', &text);
        }
        Reply::Boolean(value) if resp3 => {
            out.extend_from_slice(if *value { b"#t\r\n" } else { b"#f\r\n" });
        }
        Reply::Boolean(value) => push_header(out, b':', i64::from(*value)),
        Reply::Verbatim { format, text } if resp3 => {
            push_header(out, b'=', len_i64(text.len().saturating_add(4)));
            out.extend_from_slice(format);
            out.push(b':');
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Verbatim { text, .. } => push_bulk(out, b'$', text),
    }
}

fn len_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// `+text\r\n` or `-text\r\n`, with line breaks in `text` sent as spaces
fn push_line(out: &mut Vec<u8>, prefix: u8, text: &str) {
    out.push(prefix);
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

fn push_bulk(out: &mut Vec<u8>, prefix: u8, bytes: &[u8]) {
    push_header(out, prefix, len_i64(bytes.len()));
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

fn push_aggregate(out: &mut Vec<u8>, prefix: u8, items: &[Reply], protocol: Protocol) {
    push_header(out, prefix, len_i64(items.len()));
    for item in items {
        encode(item, protocol, out);
    }
}

/// `<prefix><n>\r\n`, formatting `n` without allocating
fn push_header(out: &mut Vec<u8>, prefix: u8, n: i64) {
    out.push(prefix);
    let mut digits = [0u8; 20];
    let mut rest = n.unsigned_abs();
    let mut start = digits.len();
    loop {
        start -= 1;
        // The remainder is below 10, so the cast keeps it exactly.
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[start..]);
    out.extend_from_slice(b"\r\n");
}

/// A double as Redis writes it: shortest round-trip digits, `inf`, `-inf` or `nan`, and an
/// exponent (`1e+300`) outside `1e-5 ..= 1e17`
fn push_double(out: &mut Vec<u8>, value: f64) {
    let text = if value.is_nan() {
        "nan".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else if value == 0.0 || (1e-5..1e17).contains(&value.abs()) {
        format!("{value}")
    } else {
        let text = format!("{value:e}");
        match text.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                format!("{mantissa}e+{exponent}")
            }
            _ => text,
        }
    };
    out.extend_from_slice(text.as_bytes());
}
