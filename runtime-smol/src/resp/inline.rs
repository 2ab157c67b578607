//! Splitting an inline command line into arguments, with Redis's quoting rules
//!
//! Arguments are separated by spaces, tabs, `\r` or `\n`. A double-quoted argument
//! understands the escapes `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\a` and `\xHH` (any other
//! escaped byte stands for itself); a single-quoted one understands only `\'`. A closing
//! quote must be followed by a separator or the end of the line. A quote can also start in
//! the middle of an argument: `a"b c"` is the single argument `ab c`.
//!
//! Unlike Redis (which splits a C string), a NUL byte is an ordinary byte here.

/// The arguments of one inline line (without its `\n`), or `None` if its quotes are unbalanced
///
/// A line of only separators gives no arguments.
pub(crate) fn split_inline(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|b| is_space(*b)) {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let (arg, next) = split_one(line, i)?;
        args.push(arg);
        i = next;
    }
}

/// `isspace` in the C locale: the bytes skipped between arguments
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Whether a closing quote at `line[i]` is correctly followed by a separator or the end
fn closes_cleanly(line: &[u8], i: usize) -> bool {
    line.get(i + 1).is_none_or(|b| is_space(*b))
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[derive(Clone, Copy)]
enum Quote {
    None,
    Double,
    Single,
}

/// One argument starting at `line[start]` (not a separator); returns it and the next index
fn split_one(line: &[u8], start: usize) -> Option<(Vec<u8>, usize)> {
    let mut arg = Vec::new();
    let mut quote = Quote::None;
    let mut i = start;
    loop {
        let byte = line.get(i).copied();
        match (quote, byte) {
            // Running out of line inside quotes is the unbalanced case.
            (Quote::Double | Quote::Single, None) => return None,
            (Quote::None, None | Some(b' ' | b'\t' | b'\r' | b'\n')) => return Some((arg, i)),
            (Quote::None, Some(b'"')) => quote = Quote::Double,
            (Quote::None, Some(b'\'')) => quote = Quote::Single,
            (Quote::None, Some(other)) => arg.push(other),
            (Quote::Double, Some(b'\\')) => {
                let escaped = line.get(i + 1).copied();
                let hex = (line.get(i + 2).copied().and_then(hex_value))
                    .zip(line.get(i + 3).copied().and_then(hex_value));
                match (escaped, hex) {
                    (Some(b'x'), Some((high, low))) => {
                        arg.push(high * 16 + low);
                        i += 3;
                    }
                    (Some(escaped), _) => {
                        arg.push(match escaped {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                        i += 1;
                    }
                    (None, _) => return None,
                }
            }
            (Quote::Double, Some(b'"')) | (Quote::Single, Some(b'\'')) => {
                if !closes_cleanly(line, i) {
                    return None;
                }
                return Some((arg, i + 1));
            }
            (Quote::Single, Some(b'\\')) if line.get(i + 1) == Some(&b'\'') => {
                arg.push(b'\'');
                i += 1;
            }
            (Quote::Double | Quote::Single, Some(other)) => arg.push(other),
        }
        i += 1;
    }
}
