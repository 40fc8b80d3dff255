//! Report helpers shared by `loadgen` and `summary`: Markdown tables, ratios,
//! the machine description and the output folder.

use std::path::PathBuf;

/// A Markdown table built row by row.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Starts a table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|title| (*title).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are left empty.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table as GitHub-flavoured Markdown.
    pub fn render(&self) -> String {
        let mut text = format!("| {} |\n", self.header.join(" | "));
        text.push_str(&format!("|{}\n", "---|".repeat(self.header.len())));
        for row in &self.rows {
            let mut cells = row.clone();
            cells.resize(self.header.len(), String::new());
            text.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        text
    }
}

/// Formats `value / baseline` as `1.23x`, or `-` without a baseline.
pub fn ratio(value: f64, baseline: Option<f64>) -> String {
    match baseline {
        Some(baseline) if baseline > 0.0 => format!("{:.2}x", value / baseline),
        _ => "-".to_owned(),
    }
}

/// Returns the folder for generated reports: `$CARGO_TARGET_DIR/session-bench`,
/// else `target/session-bench` in the workspace.
pub fn output_dir() -> PathBuf {
    target_dir().join("session-bench")
}

/// Returns `$CARGO_TARGET_DIR`, else the workspace's `target` folder.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target"),
    }
}

/// Describes the machine: CPU model, logical CPUs, memory and load average.
pub fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| {
                    line.strip_prefix("model name")
                        .and_then(|rest| rest.split_once(':'))
                })
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|kb| kb.trim().parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "unknown".to_owned());
    format!(
        "{cpu}, {cpus} logical CPUs, {memory} memory; load average {}",
        load_average()
    )
}

/// Returns the 1, 5 and 15 minute load averages from `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_renders_markdown() {
        let mut table = Table::new(&["a", "b"]);
        table.row(vec!["1".to_owned()]);
        assert_eq!(table.render(), "| a | b |\n|---|---|\n| 1 |  |\n");
    }

    #[test]
    fn ratio_needs_a_baseline() {
        assert_eq!(ratio(3.0, Some(2.0)), "1.50x");
        assert_eq!(ratio(3.0, None), "-");
        assert_eq!(ratio(3.0, Some(0.0)), "-");
    }
}
