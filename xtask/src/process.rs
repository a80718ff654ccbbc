//! Small helpers around [`std::process::Command`] shared by all tasks.
//!
//! Every child inherits stdin/stdout/stderr: the tasks are thin wrappers around
//! cargo, apt-get and scripts, and their output must reach the developer (or the
//! CI log) unchanged and unbuffered.

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// Why a task stopped, and the exit code `xtask` should end with.
///
/// A plain struct instead of `Box<dyn Error>`: every failure here is reported
/// once, at the top, and the exit code matters (CI and `cargo xtask run` callers
/// look at it), so the code travels with the message.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    /// A failure that ends `xtask` with exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_code(message, 1)
    }

    pub fn with_code(message: impl Into<String>, code: u8) -> Self {
        Self { message: message.into(), code }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The repository root: the parent of the `xtask/` directory.
///
/// Taken from `CARGO_MANIFEST_DIR` at compile time so it is right no matter which
/// directory `cargo xtask` was started from (cargo finds the workspace from any
/// subdirectory, and the tasks must still run at the root).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().expect("xtask/ always has a parent directory").to_path_buf()
}

/// A `cargo` command that runs in the repository root.
///
/// Uses the `CARGO` variable that cargo sets for the programs it runs, so the
/// nested invocations use the very same cargo (same toolchain, also under
/// `cargo +nightly xtask ...`); falls back to `cargo` on `PATH` when xtask was
/// started some other way.
pub fn cargo() -> Command {
    let program = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(program);
    command.current_dir(repo_root());
    command
}

/// Renders a command the way a person would type it, for the "running ..." lines.
pub fn describe(command: &Command) -> String {
    let program = command.get_program().to_string_lossy();
    // Show `cargo` rather than the full path from $CARGO: shorter, and the path
    // adds nothing when reading a log.
    let program = match Path::new(program.as_ref()).file_name() {
        Some(name) if name == "cargo" => "cargo".into(),
        _ => program,
    };
    let mut text = String::new();
    for env_var in command.get_envs() {
        if let (key, Some(value)) = env_var {
            text.push_str(&format!("{}={} ", key.to_string_lossy(), value.to_string_lossy()));
        }
    }
    text.push_str(&program);
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `command` to completion with inherited stdio and returns its status.
///
/// Only failing to *start* the program is an error here; a non-zero exit is the
/// caller's to interpret (some steps fail the task, some only warn).
pub fn run_status(command: &mut Command) -> Result<ExitStatus, Failure> {
    command.status().map_err(|error| {
        Failure::new(format!("could not start `{}`: {error}", command.get_program().to_string_lossy()))
    })
}

/// The exit code that passes `status` on to whoever started `xtask`.
///
/// A child killed by a signal has no exit code; map it to 128 + signal like a
/// shell does, so e.g. Ctrl-C in `cargo xtask run` still reads as an interrupt.
pub fn exit_code_of(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;

    if let Some(code) = status.code() {
        // Exit codes are 0..=255 on Unix; anything else still has to be a failure.
        return u8::try_from(code).unwrap_or(1);
    }
    match status.signal() {
        Some(signal) => u8::try_from(128 + signal).unwrap_or(1),
        None => 1,
    }
}

/// Whether `program` can be found on `PATH`, without running it.
///
/// Used to tell a Debian-like machine (dpkg + apt) from anything else, and to
/// give a clear message when `sudo` is needed but absent.
pub fn on_path(program: &str) -> bool {
    let Some(path) = env::var_os("PATH") else {
        return false;
    };
    env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;

    path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
