//! The layout section of `vmcore info`: each value, the method that gave it, and what
//! every method said.

use std::collections::BTreeMap;

use serde::Serialize;
use vmcore_kernel::layout::Derived;

use crate::hex;

/// One layout value in the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ValueReport {
    /// The value taken, hex.
    pub value: Option<String>,
    /// The method it came from.
    pub source: Option<&'static str>,
    /// Every method tried and its answer (null: it found nothing).
    pub sources: BTreeMap<&'static str, Option<String>>,
}

impl From<&Derived> for ValueReport {
    fn from(d: &Derived) -> ValueReport {
        ValueReport {
            value: d.value.map(hex),
            source: d.source.map(|m| m.key()),
            sources: d.sources.iter().map(|&(m, v)| (m.key(), v.map(hex))).collect(),
        }
    }
}

/// Layout values by name.
pub type LayoutReport = BTreeMap<&'static str, ValueReport>;

/// The report of a layout's values, and a warning for each value whose methods disagree.
pub fn report(values: &[(&'static str, &Derived)]) -> (LayoutReport, Vec<String>) {
    let mut warnings = Vec::new();
    let mut report = LayoutReport::new();
    for &(name, value) in values {
        if let Some(d) = value.disagreement() {
            let first = value.sources.iter().find(|(_, v)| v.is_some()).map_or("-", |(m, _)| m.key());
            let why =
                value.checked_by.map(|c| format!(", as {first}'s answer fails the check that {c}")).unwrap_or_default();
            warnings.push(format!(
                "layout: {name}: methods disagree ({d}); using {}{why}",
                value.source.map_or("-", |m| m.key())
            ));
        }
        report.insert(name, ValueReport::from(value));
    }
    (report, warnings)
}

/// The human rendering of a layout report.
pub fn render(report: &LayoutReport, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(out, "layout:");
    for (name, v) in report {
        let others: Vec<String> =
            v.sources.iter().map(|(m, val)| format!("{m}={}", val.as_deref().unwrap_or("-"))).collect();
        let _ = writeln!(
            out,
            "  {name:<18} {:<20} from {:<12} [{}]",
            v.value.as_deref().unwrap_or("unknown"),
            v.source.unwrap_or("-"),
            others.join(" ")
        );
    }
}

/// The warnings of `machine`'s layout (methods that disagree), for every command that
/// reads through it: a value taken over another is never silent.
pub fn warnings(machine: &vmcore_kernel::machine::Machine) -> Vec<String> {
    use vmcore_kernel::machine::Layout;
    match &machine.layout {
        Layout::X86_64(l) => report(&l.values()).1,
        Layout::Aarch64(l) => report(&l.values()).1,
    }
}
