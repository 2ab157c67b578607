//! [`Releaser`]: a thread that frees what the node's loop lets go of
//!
//! A shard deleted after a hand-over, or the state an installed snapshot replaces, may hold
//! millions of entries; freeing them takes time in proportion, so the loop hands them here
//! instead of dropping them itself.

use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

use shale_core::rsm::Release;

/// A thread that drops [`Release`]s (see the module docs)
#[derive(Debug)]
pub struct Releaser {
    tx: Option<Sender<Release>>,
    thread: Option<JoinHandle<()>>,
}

impl Releaser {
    /// Starts the thread
    pub fn start(name: &str) -> std::io::Result<Releaser> {
        let (tx, rx) = channel::<Release>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for release in rx {
                    drop(release);
                }
            })?;
        Ok(Releaser {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Drops `release` on the thread (here, if the thread is gone)
    pub fn release(&self, release: Release) {
        if let Some(tx) = &self.tx
            && let Err(unsent) = tx.send(release)
        {
            drop(unsent.0);
        }
    }

    /// Waits until everything handed over is dropped, then stops the thread
    pub fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Releaser {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn what_is_released_is_dropped_on_the_thread() {
        let mut releaser = Releaser::start("test-release").unwrap();
        let held = Arc::new(vec![0u8; 1024]);
        releaser.release(Release::new(held.clone()));
        releaser.stop();
        assert_eq!(Arc::strong_count(&held), 1, "the thread dropped its copy");
    }
}
