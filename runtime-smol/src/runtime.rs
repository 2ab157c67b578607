//! The executor: one [`Executor`] run by N threads, each with `async_io::block_on` (so every
//! thread also drives the reactor; `futures_lite`'s `block_on` would leave IO to a fallback
//! thread and add hundreds of microseconds per wake-up)

use std::sync::Arc;
use std::thread::JoinHandle;

use async_executor::Executor;

/// A running executor and its threads
#[derive(Debug)]
pub struct Runtime {
    ex: Arc<Executor<'static>>,
    stop: Option<async_channel::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

/// The default number of executor threads: half the CPUs, at least one
///
/// The other half is left to what runs beside the executor: the WAL threads and their syncs,
/// the kernel's network work, and on a small machine the clients themselves. Measured with
/// `redis-benchmark -c 50` against `shale up` on two cores: one executor thread served about
/// 1.5 times the GETs of two (whose wake-ups of each other cost more than they gained) and
/// slightly more SETs.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

impl Runtime {
    /// Starts `threads` executor threads (at least one)
    pub fn start(threads: usize) -> std::io::Result<Runtime> {
        let ex = Arc::new(Executor::new());
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (ex, stopped) = (ex.clone(), stopped.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("shale-exec-{i}"))
                    .spawn(move || {
                        let _ = async_io::block_on(ex.run(stopped.recv()));
                    })?,
            );
        }
        Ok(Runtime {
            ex,
            stop: Some(stop),
            threads: handles,
        })
    }

    /// The executor, to spawn tasks on
    pub fn executor(&self) -> &Arc<Executor<'static>> {
        &self.ex
    }

    /// Runs `future` to completion on the calling thread (which also drives the reactor)
    pub fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        async_io::block_on(future)
    }

    /// Stops every executor thread and joins them (tasks still pending are dropped)
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        drop(self.stop.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_threads();
    }
}
