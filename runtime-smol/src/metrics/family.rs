//! [`Family`]: one metric per combination of label values, created on first use

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The label value every label gets on the series that absorbs a full family's newcomers
pub const OVERFLOW_LABEL_VALUE: &str = "_other";

/// A set of series of the same metric, told apart by their label values
///
/// [`with`](Self::with) locks a mutex and may allocate, so look a series up once and keep
/// the returned `Arc` on the hot path; updating it is then lock-free. A family holds at
/// most `series_max` series: after that, new label values all share one series whose
/// labels are all [`OVERFLOW_LABEL_VALUE`], so a stream of odd values (an unknown command
/// name, say) cannot grow memory or the scrape without bound.
pub struct Family<M> {
    label_names: &'static [&'static str],
    series_max: usize,
    make: Box<dyn Fn() -> M + Send + Sync>,
    series: Mutex<BTreeMap<Vec<String>, Arc<M>>>,
}

impl<M> Family<M> {
    /// An empty family whose series carry `label_names` and are built by `make`
    ///
    /// # Panics
    ///
    /// If a label name is not a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not
    /// starting with `__`), is `le`, or repeats; or if `series_max` is zero.
    pub fn new(
        label_names: &'static [&'static str],
        series_max: usize,
        make: impl Fn() -> M + Send + Sync + 'static,
    ) -> Self {
        assert!(series_max > 0, "a family must allow at least one series");
        for (index, name) in label_names.iter().enumerate() {
            assert!(is_label_name(name), "invalid label name {name:?}");
            assert!(*name != "le", "`le` is reserved for histogram buckets");
            assert!(
                !label_names[..index].contains(name),
                "label {name:?} repeats"
            );
        }
        Self {
            label_names,
            series_max,
            make: Box::new(make),
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// The label names, in the order [`with`](Self::with) takes their values
    pub fn label_names(&self) -> &'static [&'static str] {
        self.label_names
    }

    /// The series with these label values, created if it does not exist yet
    ///
    /// # Panics
    ///
    /// If the number of values is not the number of label names.
    pub fn with(&self, label_values: &[&str]) -> Arc<M> {
        assert_eq!(
            label_values.len(),
            self.label_names.len(),
            "label values {label_values:?} do not match label names {:?}",
            self.label_names
        );
        let key: Vec<String> = label_values
            .iter()
            .map(|value| (*value).to_owned())
            .collect();
        let mut series = self.lock();
        if let Some(found) = series.get(&key) {
            return Arc::clone(found);
        }
        let overflow = vec![OVERFLOW_LABEL_VALUE.to_owned(); self.label_names.len()];
        let key = if series.len() < self.series_max - 1 || key == overflow {
            key
        } else {
            overflow
        };
        Arc::clone(series.entry(key).or_insert_with(|| Arc::new((self.make)())))
    }

    /// Forgets the series with these label values, for a Raft group that left this node, say
    ///
    /// Returns whether it existed. Holders of its `Arc` can still update it, unseen.
    pub fn remove(&self, label_values: &[&str]) -> bool {
        let key: Vec<String> = label_values
            .iter()
            .map(|value| (*value).to_owned())
            .collect();
        self.lock().remove(&key).is_some()
    }

    /// The number of series
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the family has no series yet
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The series sorted by label values, copied out so the lock is not held while rendering
    pub fn series(&self) -> Vec<(Vec<String>, Arc<M>)> {
        self.lock()
            .iter()
            .map(|(values, metric)| (values.clone(), Arc::clone(metric)))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Vec<String>, Arc<M>>> {
        // The map is never left half-updated, so a panic elsewhere does not spoil it.
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<M> fmt::Debug for Family<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Family")
            .field("label_names", &self.label_names)
            .field("series_max", &self.series_max)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Whether `name` is a Prometheus label name that is not reserved
pub(super) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with("__")
}
