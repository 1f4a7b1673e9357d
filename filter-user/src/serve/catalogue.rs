//! How a table of metric families is read (the table itself is
//! `metrics::METRICS`): its kept families registered for serve's tasks, its
//! scrape families encoded at each scrape, and all of it rendered as the
//! list in docs/operations.md. Nothing here names a metric.

use std::{collections::BTreeMap, fmt, ops::Deref};

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
    },
    registry::Registry,
};

/// What every family's name starts with (`filterctl_packets`): the registry
/// adds it.
pub const PREFIX: &str = "filterctl";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Info,
}

impl Kind {
    fn metric_type(self) -> MetricType {
        match self {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Info => MetricType::Info,
        }
    }

    /// As a `# TYPE` line names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Info => "info",
        }
    }

    /// What OpenMetrics adds to the family's name in its samples.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Kind::Counter => "_total",
            Kind::Gauge => "",
            Kind::Info => "_info",
        }
    }
}

/// Where a family's values come from.
pub enum Source<S: 'static> {
    /// Kept by serve's own tasks (reloads, upstream, surges), through the
    /// [`Series`] that [`Kept`] hands out. Registered at start; shown once
    /// it has a series.
    Kept,
    /// Read at every scrape from `S` (what the collector read from the
    /// pins): one sample per series, label values in the order of the
    /// family's `labels`.
    Scrape(fn(&S) -> Vec<Sample>),
}

/// One family: everything `/metrics` and the docs say of it.
pub struct MetricDef<S: 'static> {
    /// Without the prefix, and without the `_total` or `_info` its samples
    /// get.
    pub name: &'static str,
    pub kind: Kind,
    /// As `# HELP` shows it: a sentence, ending with a period.
    pub(crate) help: &'static str,
    pub(crate) labels: &'static [&'static str],
    pub source: Source<S>,
}

// By hand: derived, they would ask `S` for the same.
impl<S> Clone for Source<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for Source<S> {}
impl<S> Clone for MetricDef<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for MetricDef<S> {}

impl<S> fmt::Debug for MetricDef<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricDef")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl<S> MetricDef<S> {
    /// The name its samples have: `filterctl_packets_total`.
    pub fn sample_name(&self) -> String {
        format!("{PREFIX}_{}{}", self.name, self.kind.suffix())
    }
}

/// One series of a scrape family. Values from the pins are counts, sizes,
/// times and flags: never negative. An info family's value is ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub(crate) labels: Vec<String>,
    pub(crate) value: u64,
}

impl Sample {
    pub(crate) fn new<const N: usize>(labels: [&str; N], value: u64) -> Sample {
        Sample {
            labels: labels.map(str::to_string).into(),
            value,
        }
    }
}

/// Label names from the table, paired with a series' values.
type LabelSet = Vec<(&'static str, String)>;

/// A family one of serve's tasks keeps, its label names from the table.
#[derive(Clone, Debug)]
pub(crate) struct Series<M> {
    name: &'static str,
    labels: &'static [&'static str],
    family: Family<LabelSet, M>,
}

impl<M: Default> Series<M> {
    fn new<S>(def: &MetricDef<S>) -> Series<M> {
        Series {
            name: def.name,
            labels: def.labels,
            family: Family::default(),
        }
    }

    fn label_set(&self, values: &[&str]) -> LabelSet {
        debug_assert_eq!(
            values.len(),
            self.labels.len(),
            "{}: label values {values:?} for the labels {:?}",
            self.name,
            self.labels
        );
        self.labels
            .iter()
            .zip(values)
            .map(|(name, value)| (*name, value.to_string()))
            .collect()
    }

    /// The series of these label values (in the table's order), made at 0
    /// when new.
    pub(crate) fn get<'a>(&'a self, values: &[&str]) -> impl Deref<Target = M> + use<'a, M> {
        self.family.get_or_create(&self.label_set(values))
    }

    /// Takes the series out of the scrapes; false if it was not there.
    pub(crate) fn remove(&self, values: &[&str]) -> bool {
        self.family.remove(&self.label_set(values))
    }
}

/// The families serve's tasks keep, registered from a table.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    counters: BTreeMap<&'static str, Series<Counter>>,
    gauges: BTreeMap<&'static str, Series<Gauge>>,
}

impl Kept {
    /// Registers every kept family of `table`, in its order. Panics on an
    /// info family marked kept: a table mistake, which the tests meet
    /// before any daemon does.
    pub(crate) fn register<S>(registry: &mut Registry, table: &[MetricDef<S>]) -> Kept {
        let mut kept = Kept::default();
        for def in table.iter().filter(|d| matches!(d.source, Source::Kept)) {
            // The registry ends every help text with a period of its own.
            let help = def.help.strip_suffix('.').unwrap_or(def.help);
            match def.kind {
                Kind::Counter => {
                    let series = Series::new(def);
                    registry.register(def.name, help, series.family.clone());
                    kept.counters.insert(def.name, series);
                }
                Kind::Gauge => {
                    let series = Series::new(def);
                    registry.register(def.name, help, series.family.clone());
                    kept.gauges.insert(def.name, series);
                }
                Kind::Info => panic!(
                    "{}: info families are read at scrape time, not kept",
                    def.name
                ),
            }
        }
        kept
    }

    /// The kept counter `name` of the table; panics when the table has
    /// none (a mistake the router's tests meet first).
    pub(crate) fn counter(&self, name: &str) -> Series<Counter> {
        self.counters
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no kept counter {name:?} in the metric table"))
    }

    /// The kept gauge `name` of the table; panics like [`Kept::counter`].
    pub(crate) fn gauge(&self, name: &str) -> Series<Gauge> {
        self.gauges
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no kept gauge {name:?} in the metric table"))
    }
}

/// Writes every scrape family of `table`, in its order, with the samples
/// it reads from `scrape`.
pub(crate) fn encode<S>(
    enc: &mut DescriptorEncoder,
    table: &[MetricDef<S>],
    scrape: &S,
) -> fmt::Result {
    for def in table {
        let Source::Scrape(read) = def.source else {
            continue;
        };
        let mut family = enc.encode_descriptor(def.name, def.help, None, def.kind.metric_type())?;
        for sample in read(scrape) {
            debug_assert_eq!(
                sample.labels.len(),
                def.labels.len(),
                "{}: {sample:?} for the labels {:?}",
                def.name,
                def.labels
            );
            let labels: Vec<(&str, &str)> = def
                .labels
                .iter()
                .copied()
                .zip(sample.labels.iter().map(String::as_str))
                .collect();
            match def.kind {
                Kind::Counter => {
                    ConstCounter::new(sample.value).encode(family.encode_family(&labels)?)?
                }
                Kind::Gauge => ConstGauge::new(i64::try_from(sample.value).unwrap_or(i64::MAX))
                    .encode(family.encode_family(&labels)?)?,
                Kind::Info => family.encode_info(&labels)?,
            }
        }
    }
    Ok(())
}

/// The lines around the generated list in docs/operations.md.
#[cfg(test)]
pub(crate) const DOCS_BEGIN: &str =
    "<!-- metrics: generated from METRICS in filter-user/src/serve/metrics.rs -->";
#[cfg(test)]
pub(crate) const DOCS_END: &str = "<!-- end of metrics -->";

/// Where docs wrap their lines.
#[cfg(test)]
const DOCS_WIDTH: usize = 76;

/// The Markdown list docs/operations.md holds between [`DOCS_BEGIN`] and
/// [`DOCS_END`]: one item per family of `table`, in its order, with its
/// samples' name and labels, its type and its help.
#[cfg(test)]
pub(crate) fn docs_list<S>(table: &[MetricDef<S>]) -> String {
    let mut out = String::new();
    for def in table {
        let labels = if def.labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", def.labels.join(","))
        };
        let item = format!(
            "- `{}{labels}` ({}): {}",
            def.sample_name(),
            def.kind.as_str(),
            def.help
        );
        wrap(&item, &mut out);
    }
    out
}

/// Appends `item` wrapped at [`DOCS_WIDTH`], its continuation lines
/// indented under the item's text.
#[cfg(test)]
fn wrap(item: &str, out: &mut String) {
    let mut line = String::new();
    for word in item.split(' ') {
        if line.is_empty() {
            line.push_str(word);
        } else if line.len() + 1 + word.len() > DOCS_WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = format!("  {word}");
        } else {
            line.push(' ');
            line.push_str(word);
        }
    }
    out.push_str(&line);
    out.push('\n');
}

/// The text between [`DOCS_BEGIN`] and [`DOCS_END`] of a document, if it
/// has both.
#[cfg(test)]
pub(crate) fn docs_section(doc: &str) -> Option<&str> {
    let start = doc.find(DOCS_BEGIN)? + DOCS_BEGIN.len();
    let len = doc[start..].find(DOCS_END)?;
    Some(doc[start..start + len].trim_start_matches('\n'))
}

/// Checks an exposition against `table`: every family comes from it, with
/// its type and help, and every sample carries its label names; with
/// `every`, every family of the table is there. Panics with what differs.
#[cfg(test)]
pub(crate) fn check_exposition<S>(table: &[MetricDef<S>], text: &str, every: bool) {
    use std::collections::BTreeSet;

    let body = text
        .strip_suffix("# EOF\n")
        .unwrap_or_else(|| panic!("no closing # EOF:\n{text}"));
    let mut seen = BTreeSet::new();
    let mut current: Option<&MetricDef<S>> = None;
    let find = move |name: &str| {
        table
            .iter()
            .find(|d| format!("{PREFIX}_{}", d.name) == name)
            .unwrap_or_else(|| panic!("{name} is not in the metric table:\n{text}"))
    };
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            let def = find(name);
            assert_eq!(help, def.help, "help of {name}");
            assert!(seen.insert(name.to_string()), "{name} twice:\n{text}");
            current = Some(def);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(kind, find(name).kind.as_str(), "type of {name}");
        } else {
            let def = current.unwrap_or_else(|| panic!("{line:?} before any family"));
            let (series, _value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            assert_eq!(name, def.sample_name(), "{line:?} outside its family");
            assert_eq!(label_names(labels), def.labels, "labels of {line:?}");
        }
    }
    if every {
        for def in table {
            let name = format!("{PREFIX}_{}", def.name);
            assert!(seen.contains(&name), "no {name} in\n{text}");
        }
    }
}

/// The label names of `a="x",b="y"}`, values skipped (with their escapes).
#[cfg(test)]
fn label_names(mut s: &str) -> Vec<&str> {
    let mut names = Vec::new();
    while let Some((name, rest)) = s.split_once("=\"") {
        names.push(name.trim_start_matches(','));
        let mut escaped = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            })
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("unterminated label value in {s:?}"));
        s = &rest[end + 1..];
    }
    assert_eq!(s, "}", "labels end with a brace");
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_items_wrap_under_their_text() {
        let mut out = String::new();
        wrap(
            "- `filterctl_x_total{interface}` (counter): one two three four five six seven eight nine ten eleven twelve",
            &mut out,
        );
        assert_eq!(
            out,
            "- `filterctl_x_total{interface}` (counter): one two three four five six\n  seven eight nine ten eleven twelve\n"
        );
        assert!(out.lines().all(|l| l.len() <= DOCS_WIDTH), "{out}");
    }

    #[test]
    fn label_names_skip_values() {
        assert_eq!(
            label_names(r#"a="x,y=\"z\"",b="}"}"#),
            ["a", "b"],
            "commas, quotes and braces in values"
        );
        assert!(label_names("}").is_empty());
    }

    #[test]
    fn docs_section_between_the_markers() {
        let doc = format!("intro\n{DOCS_BEGIN}\n- a\n- b\n{DOCS_END}\nmore\n");
        assert_eq!(docs_section(&doc), Some("- a\n- b\n"));
        assert_eq!(docs_section("no markers"), None);
    }
}
