//! [`TextEncoder`]: the Prometheus text exposition format, version 0.0.4
//!
//! Each metric family is a `# HELP` line, a `# TYPE` line and one line per sample:
//! `name{label="value",...} value`. Histograms add `_bucket` samples with a cumulative
//! count per `le` bound (the last one `+Inf`), then `_sum` and `_count`. Numbers are written
//! without floating point: micro-unit integers become exact decimals (`2500` → `0.0025`).

use std::fmt::Write as _;

use super::family::{Family, is_label_name};
use super::primitives::{Counter, Gauge, Histogram};

/// The `Content-Type` of the text this encoder writes
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Picks one counter out of a series' metrics, for [`TextEncoder::counter_family_split`]
pub type PickCounter<M> = fn(&M) -> &Counter;

/// Writes metric families as exposition text
///
/// Call one method per family, in the order they should appear; [`Metrics`] calls them in
/// name order. Families whose series list is empty are left out entirely.
///
/// ```
/// use shale_runtime_smol::metrics::{Counter, Histogram, TextEncoder};
///
/// let hits = Counter::new();
/// hits.add(3);
/// let latency = Histogram::new(&[1_000, 500_000]);
/// latency.observe_micros(700);
/// let mut text = TextEncoder::new();
/// text.counter("app_hits_total", "Cache hits.", &hits);
/// text.histogram("app_latency_seconds", "Lookup latency.", &latency);
/// let expected = concat!(
///     "# HELP app_hits_total Cache hits.\n",
///     "# TYPE app_hits_total counter\n",
///     "app_hits_total 3\n",
///     "# HELP app_latency_seconds Lookup latency.\n",
///     "# TYPE app_latency_seconds histogram\n",
///     "app_latency_seconds_bucket{le=\"0.001\"} 1\n",
///     "app_latency_seconds_bucket{le=\"0.5\"} 1\n",
///     "app_latency_seconds_bucket{le=\"+Inf\"} 1\n",
///     "app_latency_seconds_sum 0.0007\n",
///     "app_latency_seconds_count 1\n",
/// );
/// assert_eq!(text.finish(), expected);
/// ```
///
/// [`Metrics`]: super::Metrics
#[derive(Debug, Default)]
pub struct TextEncoder {
    out: String,
}

impl TextEncoder {
    /// An encoder with nothing written yet
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes an unlabelled counter
    pub fn counter(&mut self, name: &str, help: &str, counter: &Counter) {
        self.header(name, help, "counter");
        self.sample(name, "", &[], None, &counter.get());
    }

    /// Writes an unlabelled gauge
    pub fn gauge(&mut self, name: &str, help: &str, gauge: &Gauge) {
        self.header(name, help, "gauge");
        self.sample(name, "", &[], None, &gauge.get());
    }

    /// Writes an unlabelled histogram; its values are shown as units (micro-units / 10⁶)
    pub fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.header(name, help, "histogram");
        self.histogram_series(name, &[], histogram);
    }

    /// Writes one counter per series of `family`, picked from each series by `pick`
    pub fn counter_family<M>(
        &mut self,
        name: &str,
        help: &str,
        family: &Family<M>,
        pick: impl Fn(&M) -> &Counter,
    ) {
        let series = family.series();
        if series.is_empty() {
            return;
        }
        self.header(name, help, "counter");
        for (values, metric) in &series {
            let labels = zip_labels(family.label_names(), values);
            self.sample(name, "", &labels, None, &pick(metric).get());
        }
    }

    /// Writes one counter per series of `family` and per entry of `split`: the entry's
    /// counter, picked from the series, with one more label, `label`, set to the entry's value
    ///
    /// One metric kept as several counters per series (frames dropped, by reason, say)
    /// comes out as one family. List `split` in value order so the samples come out sorted.
    pub fn counter_family_split<M>(
        &mut self,
        name: &str,
        help: &str,
        family: &Family<M>,
        label: &str,
        split: &[(&str, PickCounter<M>)],
    ) {
        debug_assert!(
            is_label_name(label) && label != "le",
            "invalid label {label:?}"
        );
        debug_assert!(
            !family.label_names().contains(&label),
            "label {label:?} repeats"
        );
        debug_assert!(split.windows(2).all(|pair| pair[0].0 < pair[1].0));
        let series = family.series();
        if series.is_empty() {
            return;
        }
        self.header(name, help, "counter");
        for (values, metric) in &series {
            let mut labels = zip_labels(family.label_names(), values);
            labels.push((label, ""));
            for (value, pick) in split {
                if let Some(last) = labels.last_mut() {
                    last.1 = value;
                }
                self.sample(name, "", &labels, None, &pick(metric).get());
            }
        }
    }

    /// Writes one gauge per series of `family`, picked from each series by `pick`
    pub fn gauge_family<M>(
        &mut self,
        name: &str,
        help: &str,
        family: &Family<M>,
        pick: impl Fn(&M) -> &Gauge,
    ) {
        let series = family.series();
        if series.is_empty() {
            return;
        }
        self.header(name, help, "gauge");
        for (values, metric) in &series {
            let labels = zip_labels(family.label_names(), values);
            self.sample(name, "", &labels, None, &pick(metric).get());
        }
    }

    /// Writes one histogram per series of `family`, picked from each series by `pick`
    pub fn histogram_family<M>(
        &mut self,
        name: &str,
        help: &str,
        family: &Family<M>,
        pick: impl Fn(&M) -> &Histogram,
    ) {
        let series = family.series();
        if series.is_empty() {
            return;
        }
        self.header(name, help, "histogram");
        for (values, metric) in &series {
            let labels = zip_labels(family.label_names(), values);
            self.histogram_series(name, &labels, pick(metric));
        }
    }

    /// The text written so far
    pub fn finish(self) -> String {
        self.out
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        debug_assert!(is_metric_name(name), "invalid metric name {name:?}");
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_into(&mut self.out, help, false);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
    }

    fn histogram_series(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let snapshot = histogram.snapshot();
        let bounds = histogram.bounds_micros();
        debug_assert_eq!(snapshot.cumulative.len(), bounds.len() + 1);
        let mut bound_text = String::new();
        for (index, count) in snapshot.cumulative.iter().enumerate() {
            bound_text.clear();
            match bounds.get(index) {
                Some(&bound) => push_micros(&mut bound_text, bound),
                None => bound_text.push_str("+Inf"),
            }
            self.sample(name, "_bucket", labels, Some(&bound_text), count);
        }
        let mut sum = String::new();
        push_micros(&mut sum, snapshot.sum_micros);
        self.sample(name, "_sum", labels, None, &sum);
        self.sample(name, "_count", labels, None, &snapshot.count());
    }

    fn sample(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: &dyn std::fmt::Display,
    ) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        let le = le.map(|bound| ("le", bound));
        let mut all = labels.iter().copied().chain(le).peekable();
        if all.peek().is_some() {
            self.out.push('{');
            for (index, (label, label_value)) in all.enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_into(&mut self.out, label_value, true);
                self.out.push('"');
            }
            self.out.push('}');
        }
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, " {value}");
    }
}

fn zip_labels<'a>(names: &'a [&'a str], values: &'a [String]) -> Vec<(&'a str, &'a str)> {
    debug_assert_eq!(names.len(), values.len());
    names
        .iter()
        .zip(values)
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

/// Escapes backslash and newline, and in label values also the double quote
pub(super) fn escape_into(out: &mut String, text: &str, quote: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Writes `micros / 10⁶` as an exact decimal with no trailing zeros: `2500000` → `2.5`
pub(super) fn push_micros(out: &mut String, micros: u64) {
    let whole = micros / 1_000_000;
    let fraction = micros % 1_000_000;
    let _ = write!(out, "{whole}");
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(value: u64) -> String {
        let mut out = String::new();
        push_micros(&mut out, value);
        out
    }

    #[test]
    fn micros_are_exact_decimals() {
        assert_eq!(micros(0), "0");
        assert_eq!(micros(1), "0.000001");
        assert_eq!(micros(100), "0.0001");
        assert_eq!(micros(250), "0.00025");
        assert_eq!(micros(1_000_000), "1");
        assert_eq!(micros(2_500_000), "2.5");
        assert_eq!(micros(u64::MAX), "18446744073709.551615");
    }

    #[test]
    fn escaping() {
        let mut label = String::new();
        escape_into(&mut label, "a\\b\"c\nd", true);
        assert_eq!(label, r#"a\\b\"c\nd"#);
        let mut help = String::new();
        escape_into(&mut help, "a\\b\"c\nd", false);
        assert_eq!(help, r#"a\\b"c\nd"#);
    }

    #[test]
    fn names() {
        assert!(is_metric_name("shale_raft_term"));
        assert!(is_metric_name("a:b_c9"));
        assert!(!is_metric_name("9a"));
        assert!(!is_metric_name(""));
        assert!(!is_metric_name("a-b"));
        assert!(is_label_name("group"));
        assert!(!is_label_name("__name__"));
        assert!(!is_label_name("a:b"));
    }
}
