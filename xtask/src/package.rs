//! `cargo xtask package`: the app as a Debian package (`.deb`), made by cargo-deb.
//!
//! What goes into the package and what it depends on is declared once, in `app/Cargo.toml`'s
//! `[package.metadata.deb]`, where cargo-deb reads it: the binary, the desktop entry and icons, and the shipped
//! models, impulse responses and factory presets under `/usr/share/neuralboard`. This task makes sure the tools
//! are there, refuses builds that would not run on other machines, runs cargo-deb and prints where the package
//! went.
//!
//! `--profile dev` packages the debug build: CI installs and runs the package to test it, and its debug build is
//! already there from `cargo test`, while a release build (fat LTO, one codegen unit) would take a quarter of an
//! hour of CI's time. That build is made as `cargo test --workspace` makes it, not by cargo-deb's
//! `cargo build -p neuralboard`: the test build turns on the features the dev-dependencies ask of shared crates
//! (serde's `alloc`, …), so a build of the binary alone compiles most dependencies a second time (minutes on two
//! cores), and the next `cargo test` a third. cargo-deb warns that it is meant for release builds; a dev package is
//! for testing only, and its version says so (`-1~dev`, which sorts before the release's `-1`).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::{Failure, cargo, describe, run_status};
use crate::sysdeps::{self, Need};

/// The cargo-deb installed when there is none: a known version, so that every machine packs the same way and a
/// new cargo-deb (which may, as it announces, refuse dev builds) changes nothing until it is chosen here.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// The Cargo profile to package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Release,
    Dev,
}

/// Options of `cargo xtask package`.
#[derive(Debug, PartialEq, Eq)]
pub struct PackageOptions {
    pub profile: Profile,
    /// Also pack the package's files as a `.tar.gz` to unpack anywhere (other distributions).
    pub tarball: bool,
}

impl PackageOptions {
    pub fn parse(args: &[String]) -> Result<Self, Failure> {
        let mut profile = Profile::Release;
        let mut tarball = false;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let value = match arg.as_str() {
                "--tarball" => {
                    tarball = true;
                    continue;
                }
                "--profile" => args.next().map(String::as_str),
                other => match other.strip_prefix("--profile=") {
                    Some(value) => Some(value),
                    None => {
                        return Err(usage_error(format!(
                            "`cargo xtask package` does not take `{other}` (see `cargo xtask help`)"
                        )));
                    }
                },
            };
            profile = match value {
                Some("release") => Profile::Release,
                Some("dev") => Profile::Dev,
                Some(other) => return Err(usage_error(format!("--profile takes dev or release, not `{other}`"))),
                None => return Err(usage_error("--profile needs a value: dev or release".into())),
            };
        }
        Ok(Self { profile, tarball })
    }
}

fn usage_error(message: String) -> Failure {
    Failure::with_code(message, 2)
}

/// `cargo xtask package`: builds the `.deb` and prints its path, alone on stdout, so that scripts can take it
/// (`deb=$(cargo xtask package)`); everything else goes to stderr. With `--tarball` the archive's path follows on
/// a second line.
pub fn package(args: &[String]) -> Result<u8, Failure> {
    let options = PackageOptions::parse(args)?;
    check_portable(&rustflags_from_env())?;
    sysdeps::ensure(&[Need::Build, Need::Package])?;
    ensure_cargo_deb()?;

    if options.profile == Profile::Dev {
        let mut build = cargo();
        build.args(["test", "--workspace", "--no-run"]);
        eprintln!("xtask: building as the tests do (nothing to do after `cargo test`): {}", describe(&build));
        let status = run_status(&mut build)?;
        if !status.success() {
            return Err(Failure::new(format!("the debug build failed ({status})")));
        }
    }
    let mut command = cargo();
    command.args(deb_args(options.profile));
    // cargo-deb prints the path of the package on stdout; the rest of its output (and cargo's) goes to stderr.
    command.stdout(Stdio::piped());
    eprintln!("xtask: running {}", describe(&command));
    let output = command
        .spawn()
        .and_then(|child| child.wait_with_output())
        .map_err(|error| Failure::new(format!("could not start `cargo deb`: {error}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprint!("{stdout}");
    if !output.status.success() {
        return Err(Failure::new(format!("`cargo deb` failed ({})", output.status)));
    }
    let deb = package_path(&stdout).ok_or_else(|| {
        Failure::new("`cargo deb` succeeded but did not say where the package is (no path ending in .deb)")
    })?;
    let size = deb.metadata().map(|meta| meta.len()).unwrap_or(0);
    eprintln!("xtask: package ({:.1} MB):", size as f64 / 1e6);
    println!("{}", deb.display());
    if options.tarball {
        let archive = tarball(&deb)?;
        eprintln!("xtask: the same files as an archive, to unpack anywhere and run bin/neuralboard:");
        println!("{}", archive.display());
    }
    Ok(0)
}

/// Packs the files of `deb` as `NAME.tar.gz` beside it: one folder, `NAME/`, with `bin/neuralboard` and `share/`
/// as the package has them under `/usr`. The binary finds the shipped files in the `share/neuralboard` beside its
/// `bin/` wherever the folder is unpacked (engine/src/paths.rs, factory_root), so this is the package for
/// distributions without dpkg; their package manager must provide the libraries the `.deb` depends on.
///
/// Made from the `.deb` (unpacked with `dpkg-deb -x`) so that the list of files is kept in one place.
fn tarball(deb: &Path) -> Result<PathBuf, Failure> {
    let dir = deb.parent().unwrap_or(Path::new("."));
    let name = archive_name(deb)
        .ok_or_else(|| Failure::new(format!("{}: not a package file name (NAME_VERSION_ARCH.deb)", deb.display())))?;
    let staging = dir.join(format!(".{name}.staging"));
    let io_error = |what: &Path, error: std::io::Error| Failure::new(format!("{}: {error}", what.display()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|error| io_error(&staging, error))?;
    }
    fs::create_dir_all(&staging).map_err(|error| io_error(&staging, error))?;
    let unpacked = staging.join("root");
    run_checked(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&unpacked))?;
    fs::rename(unpacked.join("usr"), staging.join(&name)).map_err(|error| io_error(&unpacked, error))?;
    let archive = dir.join(format!("{name}.tar.gz"));
    run_checked(Command::new("tar").arg("-C").arg(&staging).arg("-czf").arg(&archive).arg(&name))?;
    fs::remove_dir_all(&staging).map_err(|error| io_error(&staging, error))?;
    Ok(archive)
}

/// `neuralboard_0.1.0-1_amd64.deb` → `neuralboard-0.1.0-1-amd64`.
fn archive_name(deb: &Path) -> Option<String> {
    let stem = deb.file_name()?.to_str()?.strip_suffix(".deb")?;
    let parts: Vec<&str> = stem.split('_').collect();
    (parts.len() == 3 && parts.iter().all(|part| !part.is_empty())).then(|| parts.join("-"))
}

fn run_checked(command: &mut Command) -> Result<(), Failure> {
    let status = run_status(command)?;
    if !status.success() {
        return Err(Failure::new(format!("`{}` failed ({status})", describe(command))));
    }
    Ok(())
}

/// The arguments of `cargo deb` for `profile`.
fn deb_args(profile: Profile) -> Vec<&'static str> {
    // --locked: the package is built from the committed Cargo.lock, nothing resolved anew.
    let mut args = vec!["deb", "--package", "neuralboard", "--locked"];
    match profile {
        Profile::Release => {}
        // Built by `package` itself, as the tests build it (see the module's doc). The debug binary is a quarter
        // of a gigabyte with its symbols: stripped, and lightly compressed, the package is made in seconds. Nobody
        // debugs the installed copy of a test package.
        Profile::Dev => args.extend(["--profile", "dev", "--no-build", "--deb-revision", "1~dev", "--strip", "--fast"]),
    }
    args
}

/// The package's path: the last line of cargo-deb's stdout that names a `.deb`.
fn package_path(stdout: &str) -> Option<PathBuf> {
    stdout.lines().map(str::trim).rfind(|line| line.ends_with(".deb")).map(PathBuf::from)
}

/// The Rust flags the build would get from the environment (a config file's `rustflags` are not seen here).
fn rustflags_from_env() -> String {
    ["RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"]
        .iter()
        .filter_map(|name| env::var(name).ok())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A package is installed on other machines than the one that built it: code compiled for this CPU
/// (`-C target-cpu=native`) dies of an illegal instruction on an older one. The hot kernels choose AVX2 and FMA at
/// run time instead (see `engine/src/nn/simd.rs`), so the baseline x86-64 build loses nothing.
fn check_portable(rustflags: &str) -> Result<(), Failure> {
    // CARGO_ENCODED_RUSTFLAGS separates flags with 0x1f.
    let flags = rustflags.replace('\u{1f}', " ");
    if flags.contains("target-cpu=native") {
        return Err(Failure::new(format!(
            "the Rust flags from the environment ({flags}) build for this machine's CPU only \
             (target-cpu=native); a package must run on any x86-64: unset them and run again"
        )));
    }
    Ok(())
}

/// Installs cargo-deb if `cargo deb` is not there: once per machine, a few minutes.
fn ensure_cargo_deb() -> Result<(), Failure> {
    let mut version = cargo();
    version.args(["deb", "--version"]);
    if let Ok(output) = version.stderr(Stdio::null()).output()
        && output.status.success()
    {
        eprintln!("xtask: using {}", String::from_utf8_lossy(&output.stdout).trim());
        return Ok(());
    }
    let mut install = cargo();
    install.args(["install", "cargo-deb", "--locked", "--version", CARGO_DEB_VERSION]);
    eprintln!("xtask: cargo-deb is missing; installing it (once per machine, a few minutes): {}", describe(&install));
    let status = run_status(&mut install)?;
    if !status.success() {
        return Err(Failure::new(format!(
            "installing cargo-deb failed ({status}); install it yourself with `{}`",
            describe(&install)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn the_default_is_a_release_package() {
        assert_eq!(PackageOptions::parse(&[]).unwrap().profile, Profile::Release);
    }

    #[test]
    fn the_profile_is_taken_in_both_spellings() {
        assert_eq!(PackageOptions::parse(&strings(&["--profile", "dev"])).unwrap().profile, Profile::Dev);
        assert_eq!(PackageOptions::parse(&strings(&["--profile=dev"])).unwrap().profile, Profile::Dev);
        assert_eq!(PackageOptions::parse(&strings(&["--profile=release"])).unwrap().profile, Profile::Release);
    }

    #[test]
    fn the_tarball_is_asked_for() {
        assert!(!PackageOptions::parse(&[]).unwrap().tarball);
        let options = PackageOptions::parse(&strings(&["--tarball", "--profile", "dev"])).unwrap();
        assert_eq!(options, PackageOptions { profile: Profile::Dev, tarball: true });
    }

    #[test]
    fn the_archive_is_named_after_the_package() {
        let name = |path: &str| archive_name(Path::new(path));
        assert_eq!(name("/t/debian/neuralboard_0.1.0-1_amd64.deb").unwrap(), "neuralboard-0.1.0-1-amd64");
        assert_eq!(name("neuralboard_0.1.0-1~dev_amd64.deb").unwrap(), "neuralboard-0.1.0-1~dev-amd64");
        assert_eq!(name("neuralboard.deb"), None);
        assert_eq!(name("neuralboard_0.1.0_amd64.tar.gz"), None);
    }

    #[test]
    fn unknown_profiles_and_flags_are_usage_errors() {
        for args in [&["--profile", "bench"][..], &["--profile"], &["--release"]] {
            let failure = PackageOptions::parse(&strings(args)).unwrap_err();
            assert_eq!(failure.code, 2, "{args:?}: {}", failure.message);
        }
    }

    #[test]
    fn a_dev_package_is_stripped_and_marked_as_such() {
        let dev = deb_args(Profile::Dev);
        assert!(dev.windows(2).any(|pair| pair == ["--profile", "dev"]));
        assert!(dev.windows(2).any(|pair| pair == ["--deb-revision", "1~dev"]));
        assert!(dev.contains(&"--strip") && dev.contains(&"--no-build"));
        let release = deb_args(Profile::Release);
        assert!(!release.contains(&"--profile") && !release.contains(&"--deb-revision"));
        assert!(!release.contains(&"--no-build"), "cargo-deb builds the release binary itself");
    }

    #[test]
    fn the_package_path_is_the_last_deb_cargo_deb_prints() {
        let stdout = "warning: x\n/t/debian/neuralboard_0.1.0-1_amd64.deb\n\n";
        assert_eq!(package_path(stdout).unwrap(), PathBuf::from("/t/debian/neuralboard_0.1.0-1_amd64.deb"));
        assert_eq!(package_path("nothing here\n"), None);
    }

    #[test]
    fn builds_for_this_cpu_only_are_refused() {
        assert!(check_portable("").is_ok());
        assert!(check_portable("-C debuginfo=1").is_ok());
        assert!(check_portable("-C target-cpu=native").is_err());
        assert!(check_portable("-C\u{1f}target-cpu=native").is_err());
    }
}
