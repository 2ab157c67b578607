//! Running a simulation in virtual time, shared by the single-group and multi-group simulators

use shale_core::time::{Duration, Instant};

use crate::cluster::SimError;

/// A simulation that can be stepped event by event in virtual time
pub(crate) trait VirtualTime {
    /// The clock, to move forward when nothing happens before a deadline
    fn clock(&mut self) -> &mut Instant;
    /// When the next event is due, if any
    fn next_event_time(&self) -> Option<Instant>;
    /// Processes the next event
    fn step(&mut self) -> bool;
    /// An error for this run at this time
    fn error(&self, message: String) -> SimError;
}

/// Runs `sim` for `duration` of virtual time
pub(crate) fn run_for<S: VirtualTime>(sim: &mut S, duration: Duration) {
    let end = *sim.clock() + duration;
    while sim.next_event_time().is_some_and(|t| t <= end) {
        sim.step();
    }
    let clock = sim.clock();
    *clock = (*clock).max(end);
}

/// Runs `sim` until `done` holds, or fails once `budget` of virtual time has passed
pub(crate) fn run_until<S: VirtualTime>(
    sim: &mut S,
    budget: Duration,
    what: &str,
    mut done: impl FnMut(&S) -> bool,
) -> Result<(), SimError> {
    let end = *sim.clock() + budget;
    loop {
        if done(sim) {
            return Ok(());
        }
        match sim.next_event_time() {
            Some(t) if t <= end => {
                sim.step();
            }
            _ => {
                let clock = sim.clock();
                *clock = (*clock).max(end);
                return if done(sim) {
                    Ok(())
                } else {
                    Err(sim.error(format!("timed out after {budget} waiting for {what}")))
                };
            }
        }
    }
}
