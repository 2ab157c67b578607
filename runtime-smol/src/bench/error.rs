//! Why a bench run stopped without a report

use std::fmt;
use std::io;
use std::net::SocketAddr;

use super::reply::ReplyError;

/// Why [`run`](super::run) could not produce a report
///
/// Any failing connection fails the whole run: a report that silently lost some clients would
/// overstate per-client numbers and understate load, so the error names the address instead.
#[derive(Debug)]
pub enum BenchError {
    /// The configuration is out of range; the message says which knob and what it accepts
    Config(String),
    /// A client could not connect
    Connect {
        /// The target it dialled
        addr: SocketAddr,
        /// What the OS said
        source: io::Error,
    },
    /// The server refused `AUTH <password>`
    Auth {
        /// The target that refused
        addr: SocketAddr,
        /// The server's error line
        message: String,
    },
    /// An established connection failed or was closed by the server during the run
    Broken {
        /// The target whose connection broke
        addr: SocketAddr,
        /// What the OS said (`UnexpectedEof` when the server closed it)
        source: io::Error,
    },
    /// The server sent something that is not a valid reply to what was asked
    Protocol {
        /// The target that misbehaved
        addr: SocketAddr,
        /// What was wrong
        detail: String,
    },
    /// A client thread could not be started
    Thread(io::Error),
}

impl BenchError {
    /// A protocol error at `addr` caused by unparseable bytes
    pub(crate) fn malformed(addr: SocketAddr, err: ReplyError) -> Self {
        Self::Protocol {
            addr,
            detail: err.to_string(),
        }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(message) => write!(f, "invalid bench configuration: {message}"),
            Self::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Self::Auth { addr, message } => write!(f, "{addr} refused AUTH: {message}"),
            Self::Broken { addr, source } => {
                write!(f, "connection to {addr} broke during the run: {source}")
            }
            Self::Protocol { addr, detail } => {
                write!(f, "protocol error from {addr}: {detail}")
            }
            Self::Thread(source) => write!(f, "cannot start a client thread: {source}"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect { source, .. } | Self::Broken { source, .. } | Self::Thread(source) => {
                Some(source)
            }
            Self::Config(_) | Self::Auth { .. } | Self::Protocol { .. } => None,
        }
    }
}
