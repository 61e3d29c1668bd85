//! The results table: one [`Bench`] row per figure, next to the baseline
//! measured in the same run. A figure only means something relative to the
//! machine it ran on, so the ratio is the number to compare across runs.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

/// The reference a figure is compared with, measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub name: String,
    pub value: f64,
}

/// One figure of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Bench {
    pub name: String,
    /// `sqlite`, `postgres`, or `None` when the figure does not depend on it.
    pub backend: Option<String>,
    pub value: f64,
    pub unit: String,
    /// `None` for informational rows.
    pub baseline: Option<Baseline>,
    /// `value / baseline.value`.
    pub ratio: Option<f64>,
    /// How it was measured (sample size, ...).
    pub note: String,
}

impl Bench {
    pub fn new(name: impl Into<String>, backend: Option<&str>, value: f64, unit: &str) -> Self {
        Bench {
            name: name.into(),
            backend: backend.map(str::to_owned),
            value,
            unit: unit.to_owned(),
            baseline: None,
            ratio: None,
            note: String::new(),
        }
    }

    /// Sets the baseline (same unit as the figure) and the ratio.
    pub fn against(mut self, name: impl Into<String>, value: f64) -> Self {
        self.ratio = (value != 0.0).then(|| self.value / value);
        self.baseline = Some(Baseline {
            name: name.into(),
            value,
        });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// The whole run: what was asked for and every figure.
#[derive(Debug, Serialize)]
pub struct Report {
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub total_seconds: f64,
    pub cpus: usize,
    pub params: serde_json::Value,
    pub benches: Vec<Bench>,
}

/// Three significant digits or so, with thousands separators above 1000.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let decimals = match v.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    let s = format!("{v:.decimals$}");
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        self.markdown_titled("crosslink benchmarks")
    }

    /// [`Report::markdown`] under another heading (`make bench-scale`'s table).
    pub fn markdown_titled(&self, title: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {title}\n");
        let _ = writeln!(
            md,
            "Run {} on {} CPUs, {:.0} s in all. Ratio = figure / baseline, both measured in this run.\n",
            self.started_at.format("%Y-%m-%d %H:%M UTC"),
            self.cpus,
            self.total_seconds
        );
        md.push_str(
            "| benchmark | backend | figure | baseline | baseline figure | ratio | notes |\n",
        );
        md.push_str("|---|---|---:|---|---:|---:|---|\n");
        for b in &self.benches {
            let (base_name, base_value) = match &b.baseline {
                Some(base) => (
                    base.name.as_str(),
                    format!("{} {}", number(base.value), b.unit),
                ),
                None => ("—", "—".to_owned()),
            };
            let ratio = b.ratio.map_or("—".to_owned(), |r| format!("{r:.3}"));
            let _ = writeln!(
                md,
                "| {} | {} | {} {} | {} | {} | {} | {} |",
                b.name,
                b.backend.as_deref().unwrap_or("—"),
                number(b.value),
                b.unit,
                base_name,
                base_value,
                ratio,
                b.note
            );
        }
        md
    }

    /// Writes `results.md` and `results.json` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        self.write_named(dir, "results", "crosslink benchmarks")
    }

    /// Writes `{stem}.md` (headed `title`) and `{stem}.json` into `dir`.
    pub fn write_named(&self, dir: &Path, stem: &str, title: &str) -> anyhow::Result<()> {
        let md = dir.join(format!("{stem}.md"));
        std::fs::write(&md, self.markdown_titled(title))
            .with_context(|| format!("writing {}", md.display()))?;
        let json = dir.join(format!("{stem}.json"));
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&json, text + "\n")
            .with_context(|| format!("writing {}", json.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(12345.678), "12,346");
        assert_eq!(number(999.4), "999");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(1.2345), "1.23");
        assert_eq!(number(0.01234), "0.012");
        assert_eq!(number(-1234567.0), "-1,234,567");
    }

    #[test]
    fn the_ratio_is_figure_over_baseline() {
        let b = Bench::new("x", None, 50.0, "req/s").against("y", 200.0);
        assert_eq!(b.ratio, Some(0.25));
        assert!(Bench::new("x", None, 1.0, "s")
            .against("y", 0.0)
            .ratio
            .is_none());
    }
}
