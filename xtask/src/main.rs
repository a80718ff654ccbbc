//! Neuralboard's developer tasks: `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! Why an xtask instead of a Makefile or shell scripts: it is plain Rust that
//! every contributor can read and that runs wherever cargo does, and it gives CI
//! and developers one entry point (`cargo xtask test`, which is all `.ci/run`
//! does), so "works on my machine" and "passes CI" mean the same thing.
//!
//! The crate is std-only on purpose: it must build in seconds on a fresh machine,
//! before the system packages that the real crates need are even installed
//! (installing those is its first job, see [`sysdeps`]).

mod package;
mod process;
mod sysdeps;

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use process::{Failure, cargo, describe, exit_code_of, repo_root, run_status};
use sysdeps::Need;

const USAGE: &str = "\
Neuralboard developer tasks

Usage: cargo xtask <command> [args...]

Commands:
  run [ARGS...]             build and start the app: cargo run -p neuralboard -- ARGS...
  test [--quick] [-- ARGS]  the full check, in order, stopping at the first failure:
                              1. cargo fmt --all -- --check
                              2. cargo clippy --workspace --all-targets -- -D warnings
                              3. cargo test --workspace ARGS
                              4. tests/scripts/*.sh, sorted by name, run with bash
                            --quick skips fmt and clippy. ARGS go to cargo test
                            (e.g. `-- --release`, or `-- -- --nocapture` for the harness)
  bench [ARGS...]           cargo bench -p neuralboard-engine ARGS...
  package [--profile P] [--tarball]
                            the Debian package (.deb) of the app, made by cargo-deb
                            (installed first if missing): binary, desktop entry, icons,
                            models, IRs and factory presets under /usr/share/neuralboard.
                            P is release (default) or dev (a test package from the debug
                            build, what CI installs). --tarball also packs the same files
                            as NAME.tar.gz (bin/, share/) to unpack anywhere. Prints the
                            paths on stdout
  help                      show this text

Before run, test, bench and package, missing Debian/Ubuntu system packages are installed
with apt-get (using sudo when not root). Set NEURALBOARD_SKIP_SYSDEPS=1 to skip.
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("xtask: error: {failure}");
            ExitCode::from(failure.code)
        }
    }
}

/// Runs the command named by the first argument; returns the exit code.
fn dispatch(args: &[String]) -> Result<u8, Failure> {
    let Some((command, rest)) = args.split_first() else {
        // A bare `cargo xtask` is how people discover the commands: a request
        // for help, not a mistake.
        print!("{USAGE}");
        return Ok(0);
    };
    match command.as_str() {
        "run" => run(rest),
        "test" => test(rest),
        "bench" => bench(rest),
        "package" => package::package(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(0)
        }
        unknown => {
            eprintln!("{USAGE}");
            Err(Failure::with_code(format!("unknown command `{unknown}`"), 2))
        }
    }
}

/// `cargo xtask run`: the app, with whatever it needs at build and run time.
fn run(args: &[String]) -> Result<u8, Failure> {
    sysdeps::ensure(&[Need::Build, Need::Run])?;
    let mut command = cargo();
    command.args(["run", "-p", "neuralboard", "--"]).args(args);
    eprintln!("xtask: running {}", describe(&command));
    // The app's exit code is the task's: scripts wrapping `cargo xtask run` see
    // what the app said, not whether xtask managed to start it.
    Ok(exit_code_of(run_status(&mut command)?))
}

/// `cargo xtask bench`: the engine's benchmarks (the only crate that has any).
fn bench(args: &[String]) -> Result<u8, Failure> {
    sysdeps::ensure(&[Need::Build])?;
    let mut command = cargo();
    command.args(["bench", "-p", "neuralboard-engine"]).args(args);
    eprintln!("xtask: running {}", describe(&command));
    Ok(exit_code_of(run_status(&mut command)?))
}

/// Options of `cargo xtask test`.
#[derive(Debug, Default, PartialEq, Eq)]
struct TestOptions {
    /// Skip fmt and clippy: for a fast edit-test loop, never for CI.
    quick: bool,
    /// Everything after `--`, appended to `cargo test --workspace`.
    cargo_test_args: Vec<String>,
}

impl TestOptions {
    fn parse(args: &[String]) -> Result<Self, Failure> {
        let mut options = TestOptions::default();
        let mut args = args.iter();
        for arg in args.by_ref() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--" => break,
                other => {
                    return Err(Failure::with_code(
                        format!(
                            "`cargo xtask test` does not take `{other}`; \
                             put arguments for cargo test after `--` (see `cargo xtask help`)"
                        ),
                        2,
                    ));
                }
            }
        }
        options.cargo_test_args = args.cloned().collect();
        Ok(options)
    }
}

/// One step of `cargo xtask test`: a name for the log and the command to run.
struct Step {
    name: String,
    command: Command,
    /// Printed after a failure, when there is a likely cause worth naming.
    hint: Option<&'static str>,
}

/// `cargo xtask test`: everything CI checks, in order of cost, so the cheap
/// checks fail fast before the expensive ones run.
fn test(args: &[String]) -> Result<u8, Failure> {
    let options = TestOptions::parse(args)?;
    let started = Instant::now();
    sysdeps::ensure(&[Need::Build, Need::Test])?;

    let mut steps = Vec::new();
    if !options.quick {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--", "--check"]);
        steps.push(Step {
            name: "fmt".into(),
            command: fmt,
            hint: Some("run `cargo fmt --all` to fix; if rustfmt is missing: rustup component add rustfmt"),
        });

        let mut clippy = cargo();
        clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
        steps.push(Step {
            name: "clippy".into(),
            command: clippy,
            hint: Some("if clippy is missing: rustup component add clippy"),
        });
    }

    let mut cargo_test = cargo();
    cargo_test.args(["test", "--workspace"]).args(&options.cargo_test_args);
    steps.push(Step { name: "test".into(), command: cargo_test, hint: None });

    // Tests that need more than cargo can give them (e.g. a JACK server started
    // with the dummy driver) live as scripts; they run last, on a tree that has
    // already passed everything else.
    for script in test_scripts()? {
        let relative = script.strip_prefix(repo_root()).unwrap_or(&script).to_path_buf();
        let mut command = Command::new("bash");
        command.arg(&relative).current_dir(repo_root());
        steps.push(Step { name: relative.display().to_string(), command, hint: None });
    }

    for mut step in steps {
        eprintln!("xtask: step {}: {}", step.name, describe(&step.command));
        let step_started = Instant::now();
        let status = run_status(&mut step.command)?;
        eprintln!("xtask: {} took {:.1} s", step.name, step_started.elapsed().as_secs_f64());
        if !status.success() {
            eprintln!("xtask: step {} failed ({status})", step.name);
            if let Some(hint) = step.hint {
                eprintln!("xtask: hint: {hint}");
            }
            return Ok(exit_code_of(status));
        }
    }

    eprintln!("xtask: all test steps passed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(0)
}

/// The `*.sh` files in `tests/scripts/`, sorted by file name so their order is
/// chosen by naming them (`10-…`, `20-…`). No directory means no scripts.
fn test_scripts() -> Result<Vec<PathBuf>, Failure> {
    let dir = repo_root().join("tests").join("scripts");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries =
        fs::read_dir(&dir).map_err(|error| Failure::new(format!("cannot read {}: {error}", dir.display())))?;
    let mut scripts = Vec::new();
    for entry in entries {
        let path = entry.map_err(|error| Failure::new(format!("cannot read {}: {error}", dir.display())))?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "sh") {
            scripts.push(path);
        }
    }
    scripts.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(scripts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn test_options_default_to_the_full_run() {
        assert_eq!(TestOptions::parse(&[]).unwrap(), TestOptions::default());
    }

    #[test]
    fn test_options_pass_everything_after_double_dash_to_cargo_test() {
        let options = TestOptions::parse(&strings(&["--quick", "--", "--release", "--", "--quick"])).unwrap();
        assert!(options.quick);
        assert_eq!(options.cargo_test_args, strings(&["--release", "--", "--quick"]));
    }

    #[test]
    fn test_options_reject_unknown_flags() {
        let failure = TestOptions::parse(&strings(&["--fast"])).unwrap_err();
        assert_eq!(failure.code, 2);
    }

    #[test]
    fn repo_root_is_the_workspace_root() {
        assert!(repo_root().join("xtask").join("Cargo.toml").is_file());
    }
}
