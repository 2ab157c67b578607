//! A tiny HTTP/1.x server that answers `GET /metrics` with [`Metrics::render`]
//!
//! The server runs on its own std thread with `async_io::block_on`, not on the node's
//! executor: a scrape must still be answered when the executor is saturated or wedged,
//! which is when the metrics matter most, and the server's whole life is then one thread
//! that [`MetricsServer::stop`] can join. Async IO on that thread is what lets `stop`
//! interrupt a blocked `accept` or a slow client at once, with no self-connect tricks.
//!
//! Connections are served one at a time and closed after the answer (`Connection: close`).
//! Each gets at most [`MetricsServerConfig::request_timeout`] in total and a buffer of
//! [`MetricsServerConfig::header_bytes_max`] bytes for the request head, so a bad client
//! can neither hang the server nor make it allocate more than that. Prometheus scrapes one
//! target at a time, so serving sequentially costs nothing in practice.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};

use super::Metrics;
use super::text::CONTENT_TYPE;

/// How long to keep reading (and discarding) after answering a request that was not read in
/// full, so that closing the socket does not reset the connection before the client reads
const LINGER: Duration = Duration::from_millis(200);

/// The most bytes discarded while lingering
const LINGER_BYTES_MAX: usize = 64 * 1024;

/// After a failed `accept` (out of file descriptors, say), wait this long before the next
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Limits of the metrics server
#[derive(Clone, Debug)]
pub struct MetricsServerConfig {
    /// The most bytes of request line and headers read; a longer head gets a 431
    pub header_bytes_max: usize,
    /// The most time one connection may take, from accept to close
    pub request_timeout: Duration,
}

impl Default for MetricsServerConfig {
    /// 8 KiB of headers and 2 s per connection
    fn default() -> Self {
        Self {
            header_bytes_max: 8 * 1024,
            request_timeout: Duration::from_secs(2),
        }
    }
}

/// The running metrics server; [`stop`](Self::stop) it, or drop it, to shut it down
#[derive(Debug)]
pub struct MetricsServer {
    stop: Option<async_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Binds `addr` and serves `metrics` on a new thread named `shale-metrics`
///
/// Returns the bound address (useful with port 0) and the server handle. `GET /metrics`
/// (and `HEAD`) get 200 with the exposition text; other paths 404, other methods 405,
/// malformed requests 400 and oversize heads 431.
pub fn spawn_metrics_server(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    config: MetricsServerConfig,
) -> io::Result<(SocketAddr, MetricsServer)> {
    assert!(
        config.header_bytes_max > 0,
        "header_bytes_max must be positive"
    );
    let listener = Async::<TcpListener>::bind(addr)?;
    let local_addr = listener.get_ref().local_addr()?;
    let (stop_sender, stop_receiver) = async_channel::bounded::<()>(1);
    let thread = std::thread::Builder::new()
        .name("shale-metrics".to_owned())
        .spawn(move || {
            async_io::block_on(accept_loop(listener, metrics, config, stop_receiver));
        })?;
    tracing::info!(%local_addr, "serving metrics");
    let server = MetricsServer {
        stop: Some(stop_sender),
        thread: Some(thread),
    };
    Ok((local_addr, server))
}

impl MetricsServer {
    /// Stops accepting, abandons any connection being served, and joins the thread
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        // Closing the channel wakes every pending and future `recv` with an error.
        if let Some(stop) = self.stop.take() {
            stop.close();
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the metrics server thread panicked");
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

async fn accept_loop(
    listener: Async<TcpListener>,
    metrics: Arc<Metrics>,
    config: MetricsServerConfig,
    stop: async_channel::Receiver<()>,
) {
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, stopped(&stop)).await;
        match accepted {
            None => break,
            Some(Ok((stream, peer))) => {
                let timeout = async {
                    Timer::after(config.request_timeout).await;
                    Some(Err(io::Error::from(io::ErrorKind::TimedOut)))
                };
                let serving = async { Some(serve(&stream, &metrics, &config).await) };
                match future::or(serving, future::or(timeout, stopped(&stop))).await {
                    None => break,
                    Some(Ok(())) => {}
                    Some(Err(error)) => tracing::debug!(%peer, %error, "metrics connection"),
                }
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "accepting a metrics connection");
                Timer::after(ACCEPT_BACKOFF).await;
            }
        }
    }
    tracing::info!("metrics server stopped");
}

/// Resolves to `None` once the server is told to stop
async fn stopped<T>(stop: &async_channel::Receiver<()>) -> Option<T> {
    let _ = stop.recv().await;
    None
}

/// Reads one request head, answers it, and lingers if the client sent more than was read
async fn serve(
    stream: &Async<TcpStream>,
    metrics: &Metrics,
    config: &MetricsServerConfig,
) -> io::Result<()> {
    let mut buffer = vec![0u8; config.header_bytes_max];
    let mut len = 0;
    let head_len = loop {
        if let Some(end) = head_end(&buffer[..len]) {
            break Some(end);
        }
        if len == buffer.len() {
            break None;
        }
        let read = { stream }.read(&mut buffer[len..]).await?;
        if read == 0 {
            return Ok(()); // the client gave up before finishing its request
        }
        len += read;
        debug_assert!(len <= buffer.len());
    };
    let response = match head_len {
        Some(end) => respond(&buffer[..end], metrics),
        None => response("431 Request Header Fields Too Large", b"", false),
    };
    { stream }.write_all(&response).await?;
    { stream }.flush().await?;
    stream.get_ref().shutdown(Shutdown::Write)?;
    if head_len.is_none() {
        linger(stream, &mut buffer).await;
    }
    Ok(())
}

/// Discards what the client still sends, for a bounded time and amount, until it closes
async fn linger(stream: &Async<TcpStream>, buffer: &mut [u8]) {
    let deadline = Instant::now() + LINGER;
    let mut discarded = 0;
    while discarded < LINGER_BYTES_MAX {
        let read = async { { stream }.read(buffer).await.ok() };
        let expired = async {
            Timer::at(deadline).await;
            None
        };
        match future::or(read, expired).await {
            Some(read) if read > 0 => discarded += read,
            _ => break,
        }
    }
}

/// The length of the request head including its blank line, if it is all there
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The full response to a request whose head is `head`
fn respond(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let Ok(line) = std::str::from_utf8(line) else {
        return response("400 Bad Request", b"", false);
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return response("400 Bad Request", b"", false);
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return response("400 Bad Request", b"", false);
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return response("405 Method Not Allowed", b"", false),
    };
    if path != "/metrics" {
        return response("404 Not Found", b"", head_only);
    }
    response("200 OK", metrics.render().as_bytes(), head_only)
}

fn response(status: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let content_type = if status.starts_with("200") {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &[u8]) -> String {
        let out = respond(head, &Metrics::new());
        let text = String::from_utf8(out).unwrap();
        text.lines().next().unwrap().to_owned()
    }

    #[test]
    fn head_ends_at_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
    }

    #[test]
    fn routes() {
        assert_eq!(status(b"GET /metrics HTTP/1.1\r\n\r\n"), "HTTP/1.1 200 OK");
        assert_eq!(
            status(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            "HTTP/1.1 200 OK"
        );
        assert_eq!(
            status(b"GET /other HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status(b"POST /metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(status(b"GET /metrics\r\n\r\n"), "HTTP/1.1 400 Bad Request");
        assert_eq!(status(b"\xff\r\n\r\n"), "HTTP/1.1 400 Bad Request");
        assert_eq!(
            status(b"GET metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 400 Bad Request"
        );
    }

    #[test]
    fn head_has_no_body() {
        let out = respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", &Metrics::new());
        assert!(out.ends_with(b"Connection: close\r\n\r\n"));
    }
}
