//! A minimal client front door for the blocking runtime: postcard requests in
//! length-prefixed frames over TCP
//!
//! Each connection gets its own session (exactly-once for its operations). A request is a
//! [`FrontRequest`] in one frame ([`shale_core::wire::write_frame`]); the answer is a
//! [`FrontResponse`] in one frame. The smol runtime's Redis-protocol front door supersedes this
//! for users; this one serves tests and the `shale-std-node` example binary.

use std::io::{BufReader, BufWriter};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use embedded_io::Write as _;
use embedded_io_adapters::std::FromStd;
use serde::{Deserialize, Serialize};
use shale_core::shard::{KvError, KvOp, KvResult};
use shale_core::wire::{read_frame, write_frame};

use super::driver::{NodeHandle, NodeStatus};

/// Largest request or response frame, in bytes
pub const MAX_FRONT_FRAME_BYTES: usize = 8 << 20;

/// What a client asks
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrontRequest {
    /// Run a key-value operation (linearizable)
    Op(KvOp),
    /// Report the node's status
    Status,
}

/// What the node answers
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrontResponse {
    /// The operation's result
    Op(Result<KvResult, KvError>),
    /// The node's status
    Status(NodeStatus),
    /// The request could not be served (bad frame, node stopping)
    Error(String),
}

/// Accepts client connections on `listener` forever (a thread per connection), serving them
/// through `node`; returns when accepting fails
pub fn serve_clients(listener: TcpListener, node: NodeHandle) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            return;
        };
        let node = node.clone();
        let _ = std::thread::Builder::new()
            .name("shale-client".to_owned())
            .spawn(move || serve_connection(&stream, &node));
    }
}

fn serve_connection(stream: &TcpStream, node: &NodeHandle) {
    let _ = stream.set_nodelay(true);
    let Ok(session) = node.open_session() else {
        return;
    };
    let mut reader = FromStd::new(BufReader::new(stream));
    let mut writer = FromStd::new(BufWriter::new(stream));
    let mut buf = Vec::new();
    while read_frame(&mut reader, &mut buf, MAX_FRONT_FRAME_BYTES).is_ok() {
        let response = match postcard::from_bytes::<FrontRequest>(&buf) {
            Ok(FrontRequest::Op(op)) => match node.op(session, op) {
                Ok(result) => FrontResponse::Op(result),
                Err(e) => FrontResponse::Error(e.to_string()),
            },
            Ok(FrontRequest::Status) => match node.status() {
                Ok(status) => FrontResponse::Status(status),
                Err(e) => FrontResponse::Error(e.to_string()),
            },
            Err(e) => FrontResponse::Error(format!("bad request: {e}")),
        };
        let bytes = postcard::to_allocvec(&response).unwrap_or_default();
        if write_frame(&mut writer, &bytes).is_err() || writer.flush().is_err() {
            break;
        }
        if matches!(response, FrontResponse::Error(_)) {
            break;
        }
    }
    node.close_session(session);
}

/// A blocking client of [`serve_clients`]
#[derive(Debug)]
pub struct FrontClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl FrontClient {
    /// Connects to `addr`; every later call waits at most `timeout`
    pub fn connect(addr: impl ToSocketAddrs, timeout: Duration) -> std::io::Result<FrontClient> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        let first = addrs.first().ok_or(std::io::ErrorKind::InvalidInput)?;
        let stream = TcpStream::connect_timeout(first, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(FrontClient {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends `request` and waits for the answer
    pub fn call(&mut self, request: &FrontRequest) -> std::io::Result<FrontResponse> {
        let bytes = postcard::to_allocvec(request).map_err(std::io::Error::other)?;
        write_frame(&mut FromStd::new(&self.stream), &bytes).map_err(std::io::Error::other)?;
        read_frame(
            &mut FromStd::new(&self.stream),
            &mut self.buf,
            MAX_FRONT_FRAME_BYTES,
        )
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        postcard::from_bytes(&self.buf).map_err(std::io::Error::other)
    }
}
