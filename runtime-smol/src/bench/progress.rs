//! The optional progress bar: time through the run and the current ops/s, on stderr

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::client::{Schedule, Shared};

/// How often the bar is redrawn and the rate recomputed
const REFRESH_INTERVAL: Duration = Duration::from_millis(100);

/// Draws the bar until every client thread has finished
pub(crate) fn watch<T>(handles: &[JoinHandle<T>], schedule: Schedule, shared: &Arc<Shared>) {
    let bar = new_bar(schedule);
    let mut last = (Instant::now(), shared.ops.load(Ordering::Relaxed));
    while !handles.iter().all(JoinHandle::is_finished) {
        std::thread::sleep(REFRESH_INTERVAL);
        let now = Instant::now();
        let ops = shared.ops.load(Ordering::Relaxed);
        let rate = (ops - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
        last = (now, ops);
        if now < schedule.measure_from {
            bar.set_message("warming up");
        } else if now < schedule.stop_at {
            bar.set_position(now.duration_since(schedule.measure_from).as_millis() as u64);
            bar.set_message(format!("{rate:.0} ops/s"));
        } else {
            bar.set_position(bar.length().unwrap_or(0));
            bar.set_message("draining");
        }
    }
    bar.finish_and_clear();
}

fn new_bar(schedule: Schedule) -> ProgressBar {
    let total_ms = schedule
        .stop_at
        .duration_since(schedule.measure_from)
        .as_millis();
    let bar = ProgressBar::new(total_ms as u64);
    let style = ProgressStyle::with_template("bench [{bar:40}] {elapsed} {msg}")
        .expect("the progress template is valid")
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}
