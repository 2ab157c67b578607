//! One administrative call over the Redis protocol: `shale ctl` and the rebalance benchmark
//! send `SHALE ...` commands with it

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::reply::{Reply, ReplyReader};

/// How long a call waits to connect, and then for its reply
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A RESP array of bulk strings
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Sends `args` (after `AUTH password`, if given) to `addr` on a new connection and returns
/// the reply; an error reply to `AUTH` is an error
pub fn call(addr: SocketAddr, password: Option<&str>, args: &[&str]) -> Result<Reply, String> {
    call_waiting(addr, password, args, CALL_TIMEOUT)
}

/// [`call`], waiting up to `reply_timeout` for the reply (for commands whose work grows with
/// the data, such as `SHALE DIGEST`)
pub fn call_waiting(
    addr: SocketAddr,
    password: Option<&str>,
    args: &[&str],
    reply_timeout: Duration,
) -> Result<Reply, String> {
    let mut stream = TcpStream::connect_timeout(&addr, CALL_TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(reply_timeout));
    let mut request = Vec::new();
    if let Some(p) = password {
        request.extend(encode(&["AUTH", p]));
    }
    request.extend(encode(args));
    stream
        .write_all(&request)
        .map_err(|e| format!("cannot write to {addr}: {e}"))?;
    let mut reader = ReplyReader::new();
    let mut replies = Vec::new();
    let wanted = if password.is_some() { 2 } else { 1 };
    while replies.len() < wanted {
        match reader.next_reply() {
            Ok(Some(reply)) => replies.push(reply),
            Ok(None) => {
                let n = reader
                    .fill_from(&mut stream)
                    .map_err(|e| format!("no answer from {addr}: {e}"))?;
                if n == 0 {
                    return Err(format!("{addr} closed the connection"));
                }
            }
            Err(e) => return Err(format!("bad reply from {addr}: {e:?}")),
        }
    }
    let last = replies.pop().ok_or("no reply")?;
    if let Some(Reply::Error(e)) = replies.first() {
        return Err(format!("{addr}: {}", String::from_utf8_lossy(e)));
    }
    Ok(last)
}
