//! The Redis protocol (RESP) at Shale's front door: client commands in, replies out
//!
//! This module does no IO. A connection task reads whatever the socket gives, hands the
//! bytes to a [`RespParser`] and drains complete commands from it; it encodes each reply
//! with [`encode`] into a buffer it then writes. The parser accepts RESP arrays of bulk
//! strings (what client libraries send) and inline commands (what a human types), enforces
//! the bounds in [`RespLimits`], and produces the same commands however the stream is cut.
//!
//! ```
//! use shale_runtime_smol::resp::{Protocol, Reply, RespParser, encode};
//!
//! let mut parser = RespParser::default();
//! // Two pipelined commands, cut in the middle of the first one's argument.
//! parser.handle_bytes(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv");
//! assert_eq!(parser.poll_command(), Ok(None));
//! parser.handle_bytes(b"1\r\nGET k\r\n");
//! assert_eq!(parser.poll_command(), Ok(Some(vec![b"SET".to_vec(), b"k".to_vec(), b"v1".to_vec()])));
//! assert_eq!(parser.poll_command(), Ok(Some(vec![b"GET".to_vec(), b"k".to_vec()])));
//! assert_eq!(parser.poll_command(), Ok(None));
//!
//! let mut out = Vec::new();
//! encode(&Reply::ok(), Protocol::Resp2, &mut out);
//! encode(&Reply::bulk("v1"), Protocol::Resp2, &mut out);
//! encode(&Reply::Null, Protocol::Resp3, &mut out);
//! assert_eq!(out, b"+OK\r\n$2\r\nv1\r\n_\r\n");
//!
//! // A protocol error is replied to, then the connection is closed.
//! parser.handle_bytes(b"*1\r\n*1\r\n");
//! let error = parser.poll_command().unwrap_err();
//! assert!(error.closes_connection());
//! out.clear();
//! encode(&error.to_reply(), Protocol::Resp2, &mut out);
//! assert_eq!(out, b"-ERR Protocol error: expected '$', got '*'\r\n");
//! ```

mod encode;
mod error;
mod inline;
mod limits;
mod parse;
#[cfg(test)]
mod tests;

pub use encode::{Protocol, Reply, encode};
pub use error::RespError;
pub use limits::RespLimits;
pub use parse::RespParser;
