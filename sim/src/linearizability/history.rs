//! Histories: the operations clients issued, when, and what came back
//!
//! A [`History`] can be written by hand (tests) or recorded during a simulation with a
//! [`HistoryRecorder`], which also enforces the client rules the checker's verdict relies on.

use std::collections::{HashMap, HashSet};
use std::fmt;

use shale_core::time::Instant;

use super::model::{KvInput, KvOutput};

/// Who issued an operation. A client has at most one operation in flight, and never issues
/// another after one of its operations timed out: it continues under a new id
pub type ClientId = u64;

/// The end of a completed operation
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Returned {
    /// When the client received the result
    pub at: Instant,
    /// The result
    pub output: KvOutput,
}

/// One operation of a history
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client that issued it
    pub client: ClientId,
    /// What it asked for
    pub input: KvInput,
    /// When the client sent it
    pub call: Instant,
    /// When and what it returned; `None` if the outcome is unknown (the client timed out):
    /// the operation may have taken effect at any time after `call`, or never
    pub returned: Option<Returned>,
}

impl Operation {
    /// An operation that returned `output` at `ret`
    pub fn completed(
        client: ClientId,
        input: KvInput,
        call: Instant,
        ret: Instant,
        output: KvOutput,
    ) -> Self {
        Operation {
            client,
            input,
            call,
            returned: Some(Returned { at: ret, output }),
        }
    }

    /// An operation whose outcome is unknown: it was sent at `call` and never answered
    pub fn timed_out(client: ClientId, input: KvInput, call: Instant) -> Self {
        Operation {
            client,
            input,
            call,
            returned: None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.returned {
            Some(ret) => write!(
                f,
                "client {}  {}..{}  {} -> {}",
                self.client, self.call, ret.at, self.input, ret.output
            ),
            None => write!(
                f,
                "client {}  {}..(timed out)  {} -> ?",
                self.client, self.call, self.input
            ),
        }
    }
}

/// A history: operations in any order (the checker orders them by time)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Operation>,
}

impl History {
    /// An empty history
    pub fn new() -> Self {
        History::default()
    }

    /// Add an operation
    pub fn push(&mut self, op: Operation) {
        self.ops.push(op);
    }

    /// The operations, in the order they were added; an operation's index here is its id in
    /// the checker's explanations
    pub fn ops(&self) -> &[Operation] {
        &self.ops
    }

    /// The number of operations
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there are no operations
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Check that the history is well formed: every output is the kind its input returns,
    /// nothing returns before it was called, and each client runs one operation at a time and
    /// issues nothing after an operation of its that timed out. The error names the first
    /// offending operation.
    pub fn validate(&self) -> Result<(), String> {
        let mut by_client: HashMap<ClientId, Vec<usize>> = HashMap::new();
        for (id, op) in self.ops.iter().enumerate() {
            if let Some(ret) = &op.returned {
                if !op.input.accepts(&ret.output) {
                    return Err(format!("op {id} ({op}): the output does not fit the input"));
                }
                if ret.at < op.call {
                    return Err(format!("op {id} ({op}): returns before it is called"));
                }
            }
            by_client.entry(op.client).or_default().push(id);
        }
        for ids in by_client.values_mut() {
            ids.sort_by_key(|&id| self.ops[id].call);
            for pair in ids.windows(2) {
                let (first, next) = (&self.ops[pair[0]], &self.ops[pair[1]]);
                match &first.returned {
                    None => {
                        return Err(format!(
                            "op {} ({next}): client {} issues it after its op {} timed out; \
                             a client that times out must continue under a new id",
                            pair[1], next.client, pair[0]
                        ));
                    }
                    Some(ret) if ret.at > next.call => {
                        return Err(format!(
                            "op {} ({next}): client {} issues it while its op {} is in flight",
                            pair[1], next.client, pair[0]
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

impl From<Vec<Operation>> for History {
    fn from(ops: Vec<Operation>) -> Self {
        History { ops }
    }
}

impl FromIterator<Operation> for History {
    fn from_iter<I: IntoIterator<Item = Operation>>(iter: I) -> Self {
        History {
            ops: iter.into_iter().collect(),
        }
    }
}

/// The id of an operation recorded by a [`HistoryRecorder`]; also its index in the finished
/// [`History`]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub usize);

/// Records a history while a simulation runs
///
/// Call [`invoke`](Self::invoke) when a client sends a request and
/// [`complete`](Self::complete) when it gets the answer. When a client gives up on a request
/// (timeout, lost leader, crash), call [`timeout`](Self::timeout): the operation stays open,
/// so the checker lets it take effect at any time after its call, or never. That client id is
/// then retired; continue with a fresh one from [`new_client`](Self::new_client). Operations
/// still in flight at [`finish`](Self::finish) are left open the same way.
///
/// Misuse (two operations in flight for one client, reuse of a retired client, completing an
/// operation twice or before its call) panics: it is a bug in the harness, and a history
/// built that way would make the checker's verdict meaningless.
#[derive(Debug, Default)]
pub struct HistoryRecorder {
    ops: Vec<Operation>,
    in_flight: HashMap<ClientId, OpId>,
    retired: HashSet<ClientId>,
    next_client: ClientId,
}

impl HistoryRecorder {
    /// An empty recorder
    pub fn new() -> Self {
        HistoryRecorder::default()
    }

    /// A client id not used so far in this recorder (ids handed out count up from 0 and skip
    /// any id already seen)
    pub fn new_client(&mut self) -> ClientId {
        loop {
            let id = self.next_client;
            self.next_client += 1;
            if !self.retired.contains(&id) && !self.in_flight.contains_key(&id) {
                return id;
            }
        }
    }

    /// `client` sends `input` at `now`
    ///
    /// # Panics
    ///
    /// If the client has an operation in flight or was retired by a timeout.
    pub fn invoke(&mut self, client: ClientId, input: KvInput, now: Instant) -> OpId {
        assert!(
            !self.retired.contains(&client),
            "client {client} timed out earlier and must not issue more operations"
        );
        let id = OpId(self.ops.len());
        if let Some(busy) = self.in_flight.insert(client, id) {
            panic!("client {client} already has operation {} in flight", busy.0);
        }
        self.ops.push(Operation::timed_out(client, input, now));
        id
    }

    /// Operation `id` returned `output` at `now`
    ///
    /// # Panics
    ///
    /// If the operation is not in flight, `now` is before its call, or `output` is not the
    /// kind of result its input returns.
    pub fn complete(&mut self, id: OpId, output: KvOutput, now: Instant) {
        let op = &mut self.ops[id.0];
        assert_eq!(
            self.in_flight.get(&op.client),
            Some(&id),
            "operation {} is not in flight",
            id.0
        );
        assert!(now >= op.call, "operation {} returns before its call", id.0);
        assert!(
            op.input.accepts(&output),
            "operation {} ({}) cannot return {output}",
            id.0,
            op.input
        );
        self.in_flight.remove(&op.client);
        op.returned = Some(Returned { at: now, output });
    }

    /// The client gave up on operation `id`: its outcome stays unknown, and its client id is
    /// retired
    ///
    /// # Panics
    ///
    /// If the operation is not in flight.
    pub fn timeout(&mut self, id: OpId) {
        let client = self.ops[id.0].client;
        assert_eq!(
            self.in_flight.get(&client),
            Some(&id),
            "operation {} is not in flight",
            id.0
        );
        self.in_flight.remove(&client);
        self.retired.insert(client);
    }

    /// Whether `client` has an operation in flight
    pub fn is_busy(&self, client: ClientId) -> bool {
        self.in_flight.contains_key(&client)
    }

    /// The history so far; operations still in flight are left open (outcome unknown)
    pub fn finish(self) -> History {
        History { ops: self.ops }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(micros: u64) -> Instant {
        Instant::from_micros(micros)
    }

    #[test]
    fn recorder_builds_a_valid_history() {
        let mut rec = HistoryRecorder::new();
        let (a, b) = (rec.new_client(), rec.new_client());
        let put = rec.invoke(a, KvInput::put("k", "1"), t(0));
        let get = rec.invoke(b, KvInput::get("k"), t(1));
        rec.complete(put, KvOutput::Done, t(5));
        rec.timeout(get);
        let c = rec.new_client();
        assert!(c != a && c != b);
        let open = rec.invoke(c, KvInput::get("k"), t(6));
        assert!(rec.is_busy(c));
        let history = rec.finish();
        assert_eq!(history.len(), 3);
        assert!(history.ops()[get.0].returned.is_none());
        assert!(history.ops()[open.0].returned.is_none());
        assert_eq!(history.ops()[put.0].returned.as_ref().unwrap().at, t(5));
        history.validate().unwrap();
    }

    #[test]
    #[should_panic(expected = "must not issue more")]
    fn a_timed_out_client_is_retired() {
        let mut rec = HistoryRecorder::new();
        let op = rec.invoke(7, KvInput::get("k"), t(0));
        rec.timeout(op);
        rec.invoke(7, KvInput::get("k"), t(1));
    }

    #[test]
    #[should_panic(expected = "already has operation")]
    fn one_operation_in_flight_per_client() {
        let mut rec = HistoryRecorder::new();
        rec.invoke(1, KvInput::get("k"), t(0));
        rec.invoke(1, KvInput::get("k"), t(1));
    }

    #[test]
    #[should_panic(expected = "cannot return")]
    fn outputs_must_fit_inputs() {
        let mut rec = HistoryRecorder::new();
        let op = rec.invoke(1, KvInput::get("k"), t(0));
        rec.complete(op, KvOutput::Done, t(1));
    }

    #[test]
    fn validate_rejects_malformed_histories() {
        let get = || KvInput::get("k");
        let reuse = History::from(vec![
            Operation::timed_out(1, get(), t(0)),
            Operation::completed(1, get(), t(5), t(6), KvOutput::MISSING),
        ]);
        assert!(reuse.validate().unwrap_err().contains("new id"));
        let overlap = History::from(vec![
            Operation::completed(1, get(), t(0), t(10), KvOutput::MISSING),
            Operation::completed(1, get(), t(5), t(6), KvOutput::MISSING),
        ]);
        assert!(overlap.validate().unwrap_err().contains("in flight"));
        let backwards = History::from(vec![Operation::completed(
            1,
            get(),
            t(5),
            t(4),
            KvOutput::MISSING,
        )]);
        assert!(backwards.validate().unwrap_err().contains("before"));
        let kind = History::from(vec![Operation::completed(
            1,
            get(),
            t(0),
            t(1),
            KvOutput::Done,
        )]);
        assert!(kind.validate().unwrap_err().contains("fit"));
        let touching = History::from(vec![
            Operation::completed(1, get(), t(0), t(5), KvOutput::MISSING),
            Operation::completed(1, get(), t(5), t(6), KvOutput::MISSING),
        ]);
        touching.validate().unwrap();
    }
}
