//! A fault-injecting TCP proxy for one directed peer link (node i dials node j through it)
//!
//! Modes, switchable at any time:
//! - **pass**: bytes flow both ways;
//! - **drop**: connections stay open but every byte is thrown away (a black hole); a connection
//!   that lost bytes is closed when the mode leaves `drop`, as TCP would eventually give up on
//!   it, so a framed stream is never resumed with a hole in it;
//! - **delay**: every chunk is held back `delay_ms` before it is forwarded (order is kept);
//! - **cut**: open connections are closed and new ones are closed as soon as accepted.
//!
//! Everything runs on std threads; every socket wait is bounded so mode changes and
//! [`Proxy::drop`] take effect within [`POLL`].

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often blocked proxy threads look at the mode and the stop flag
const POLL: Duration = Duration::from_millis(20);

/// What a link does with its traffic
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything
    Pass,
    /// Keep connections, discard bytes
    Drop,
    /// Forward everything `delay_ms` late
    Delay,
    /// Close connections and refuse new ones
    Cut,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::Drop,
            2 => Mode::Delay,
            3 => Mode::Cut,
            _ => Mode::Pass,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Mode::Pass => 0,
            Mode::Drop => 1,
            Mode::Delay => 2,
            Mode::Cut => 3,
        }
    }
}

/// The shared switch of one link
#[derive(Debug, Default)]
struct Control {
    mode: AtomicU8,
    delay_ms: AtomicU64,
    stop: AtomicBool,
    /// Bumped whenever a drop ends: connections that lost bytes under an older epoch close
    drop_epoch: AtomicU64,
}

impl Control {
    fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::SeqCst))
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// One directed link `from -> to`, listening on a loopback port chosen by the OS
pub struct Proxy {
    /// Where the dialing node connects
    pub listen: SocketAddr,
    control: Arc<Control>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts forwarding connections on a fresh loopback port to `target`
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a proxy port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let listen = listener.local_addr().expect("proxy address");
        let control = Arc::new(Control::default());
        let ctl = Arc::clone(&control);
        let acceptor = thread::spawn(move || accept_loop(&listener, target, &ctl));
        Proxy {
            listen,
            control,
            acceptor: Some(acceptor),
        }
    }

    /// Switches the link to `mode` (`delay_ms` matters for [`Mode::Delay`] only)
    pub fn set(&self, mode: Mode, delay_ms: u64) {
        self.control.delay_ms.store(delay_ms, Ordering::SeqCst);
        let old = Mode::from_u8(self.control.mode.swap(mode.as_u8(), Ordering::SeqCst));
        if old == Mode::Drop && mode != Mode::Drop {
            self.control.drop_epoch.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, control: &Arc<Control>) {
    let mut links: Vec<JoinHandle<()>> = Vec::new();
    while !control.stopped() {
        match listener.accept() {
            Ok((down, _)) => {
                if control.mode() == Mode::Cut {
                    let _ = down.shutdown(Shutdown::Both);
                    continue;
                }
                let ctl = Arc::clone(control);
                links.push(thread::spawn(move || serve(down, target, &ctl)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(_) => thread::sleep(POLL),
        }
        links.retain(|h| !h.is_finished());
    }
    for link in links {
        let _ = link.join();
    }
}

/// One proxied connection: two pumps, each with a writer thread that honours delays
fn serve(down: TcpStream, target: SocketAddr, control: &Arc<Control>) {
    let Ok(up) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
        let _ = down.shutdown(Shutdown::Both);
        return;
    };
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let closed = Arc::new(AtomicBool::new(false));
    let pumps: Vec<JoinHandle<()>> = [(&down, &up), (&up, &down)]
        .into_iter()
        .filter_map(|(from, to)| {
            let (from, to) = (from.try_clone().ok()?, to.try_clone().ok()?);
            let (ctl, closed) = (Arc::clone(control), Arc::clone(&closed));
            Some(thread::spawn(move || pump(from, to, &ctl, &closed)))
        })
        .collect();
    for p in pumps {
        let _ = p.join();
    }
    let _ = down.shutdown(Shutdown::Both);
    let _ = up.shutdown(Shutdown::Both);
}

/// Copies `from` to `to` until either side closes, the link is cut or the proxy stops
fn pump(mut from: TcpStream, to: TcpStream, control: &Control, closed: &AtomicBool) {
    let _ = from.set_read_timeout(Some(POLL));
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer_closed_flag = Arc::new(AtomicBool::new(false));
    let writer_flag = Arc::clone(&writer_closed_flag);
    let writer = thread::spawn(move || {
        let mut to = to;
        let _ = to.set_write_timeout(Some(Duration::from_secs(2)));
        while let Ok((due, bytes)) = rx.recv() {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                writer_flag.store(true, Ordering::SeqCst);
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 * 1024];
    // The drop epoch under which this connection last lost bytes
    let mut lost_in: Option<u64> = None;
    loop {
        if control.stopped() || closed.load(Ordering::SeqCst) {
            break;
        }
        if writer_closed_flag.load(Ordering::SeqCst) {
            break;
        }
        let mode = control.mode();
        if mode == Mode::Cut {
            break;
        }
        if lost_in.is_some_and(|epoch| epoch != control.drop_epoch.load(Ordering::SeqCst)) {
            break; // the black hole ended: this stream has a hole, close it
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => match control.mode() {
                Mode::Pass => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Mode::Delay => {
                    let delay = Duration::from_millis(control.delay_ms.load(Ordering::SeqCst));
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
                Mode::Drop => lost_in = Some(control.drop_epoch.load(Ordering::SeqCst)),
                Mode::Cut => break,
            },
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    closed.store(true, Ordering::SeqCst);
    let _ = from.shutdown(Shutdown::Both);
    drop(tx);
    let _ = writer.join();
}
