//! Running cargo and other programs from the workspace root, with numbered step output.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Returns the workspace root, the parent of the `xtask` package directory.
pub(crate) fn project_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("the xtask package sits inside the workspace root")
        .to_path_buf()
}

/// Returns the cargo binary that started xtask (`$CARGO`), or `cargo` from PATH.
pub(crate) fn cargo_binary() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// A cargo invocation with its arguments and extra environment, printable as typed.
pub(crate) struct CargoCommand {
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl CargoCommand {
    /// Creates `cargo ARGS...`.
    pub(crate) fn new(args: &[&str]) -> Self {
        Self {
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            envs: Vec::new(),
        }
    }

    /// Appends arguments.
    pub(crate) fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    /// Sets an environment variable for the cargo process.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs the command in the workspace root and waits for it.
    ///
    /// # Errors
    ///
    /// Returns a message naming the command if cargo could not start or exited
    /// unsuccessfully. `hint` is appended to that message and says what to do next.
    pub(crate) fn run(&self, hint: &str) -> Result<(), String> {
        let mut command = Command::new(cargo_binary());
        command.args(&self.args).current_dir(project_root());
        for (key, value) in &self.envs {
            command.env(key, value);
        }

        let status = command
            .status()
            .map_err(|error| format!("could not start `{self}`: {error}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`{self}` failed with {status}; {hint}"))
        }
    }
}

impl std::fmt::Display for CargoCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (key, value) in &self.envs {
            write!(f, "{key}={value} ")?;
        }
        write!(f, "cargo")?;
        for arg in &self.args {
            // Quote the arguments that a shell would expand or split.
            if arg.is_empty() || arg.contains(['*', ' ', '?']) {
                write!(f, " '{arg}'")?;
            } else {
                write!(f, " {arg}")?;
            }
        }
        Ok(())
    }
}

/// Numbered progress lines, printed on stderr next to cargo's own output.
pub(crate) struct Steps {
    task: &'static str,
    total: usize,
    done: usize,
}

impl Steps {
    /// Creates a counter for a task with `total` steps.
    pub(crate) fn new(task: &'static str, total: usize) -> Self {
        Self {
            task,
            total,
            done: 0,
        }
    }

    /// Prints the header of the next step.
    pub(crate) fn start(&mut self, title: &str) {
        self.done += 1;
        eprintln!();
        eprintln!(
            "==> xtask {} [{}/{}] {title}",
            self.task, self.done, self.total
        );
    }
}

/// Finds an executable named `name` in the directories of `PATH`, as `which` does.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;

    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_command_display_quotes_globs() {
        let command = CargoCommand::new(&["bench", "--bench", "*"])
            .args(&["--", "--warm-up-time", "1"])
            .env("REDIS_URL", "redis://127.0.0.1:6379");
        assert_eq!(
            command.to_string(),
            "REDIS_URL=redis://127.0.0.1:6379 cargo bench --bench '*' -- --warm-up-time 1"
        );
    }

    #[test]
    fn project_root_contains_workspace_manifest() {
        let manifest = std::fs::read_to_string(project_root().join("Cargo.toml"))
            .expect("the workspace root has a Cargo.toml");
        assert!(manifest.contains("[workspace]"));
    }
}
