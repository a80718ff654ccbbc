//! The Debian/Ubuntu system packages Neuralboard needs, and their installation.
//!
//! cpal (audio) and iced/wgpu (GUI) link against or load system libraries, and the
//! tests need a JACK server and a virtual X display. A fresh machine has none of
//! these, and the resulting errors (a build script failing to find `alsa.pc`, a
//! test that cannot open a display) do not say which package is missing. So every
//! task first checks the list below and installs what is missing: one list, in
//! one place, each entry saying why it is there.

use std::env;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::process::{Failure, describe, on_path, run_status};

/// What a package is needed for. A task asks only for what it needs, so that
/// `cargo xtask run` does not install test-only tools such as Xvfb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Compiling and linking the crates (headers, `.pc` files, `pkg-config`).
    /// Every task that builds code needs these.
    Build,
    /// Only for running the tests (servers and displays the tests start).
    Test,
    /// Needed at runtime by the app, hence also by tests that start the GUI.
    Run,
    /// Making the Debian package (`cargo xtask package`).
    Package,
}

impl Need {
    fn name(self) -> &'static str {
        match self {
            Need::Build => "build",
            Need::Test => "test",
            Need::Run => "run",
            Need::Package => "package",
        }
    }
}

/// One Debian package and why Neuralboard needs it.
#[derive(Debug)]
pub struct SysPackage {
    /// The Debian package name (the same on Ubuntu).
    pub name: &'static str,
    /// Which tasks need it; see [`Need`].
    pub needed_for: &'static [Need],
    /// Why it is needed. This is the per-package comment, kept as data so the
    /// install message can print it: whoever gets a package installed on their
    /// machine deserves to know what for.
    pub why: &'static str,
}

use Need::{Build, Package, Run, Test};

/// Every system package Neuralboard needs, on Debian/Ubuntu.
///
/// Add new native dependencies here (and only here); each entry states why.
pub const PACKAGES: &[SysPackage] = &[
    SysPackage {
        name: "pkg-config",
        needed_for: &[Build],
        why: "build scripts (alsa-sys, jack-sys, fontconfig) locate system libraries with it",
    },
    SysPackage {
        name: "libasound2-dev",
        needed_for: &[Build],
        why: "ALSA headers and library: cpal's default Linux audio backend",
    },
    SysPackage {
        name: "libjack-jackd2-dev",
        needed_for: &[Build],
        why: "JACK headers and library: cpal's JACK backend",
    },
    SysPackage {
        name: "jackd2",
        needed_for: &[Test],
        why: "JACK server; tests run it with the dummy driver (no sound card needed)",
    },
    SysPackage { name: "xvfb", needed_for: &[Test], why: "virtual X display for the GUI screenshot tests" },
    SysPackage {
        name: "xauth",
        needed_for: &[Test],
        why: "xvfb-run needs it to set up the virtual display's authorisation",
    },
    SysPackage { name: "libxkbcommon-dev", needed_for: &[Build], why: "keyboard layouts for iced's windowing (winit)" },
    SysPackage {
        name: "libwayland-dev",
        needed_for: &[Build],
        why: "Wayland client library for iced's windowing (winit)",
    },
    SysPackage {
        name: "libvulkan1",
        needed_for: &[Run, Test],
        why: "Vulkan loader: wgpu renders iced's GUI through it",
    },
    SysPackage {
        name: "mesa-vulkan-drivers",
        needed_for: &[Run, Test],
        why: "Vulkan drivers, incl. the lavapipe software renderer for machines without a GPU (CI)",
    },
    SysPackage { name: "libfontconfig1-dev", needed_for: &[Build], why: "fontconfig: iced finds system fonts with it" },
    SysPackage { name: "libx11-dev", needed_for: &[Build], why: "X11 client library for iced's windowing (winit)" },
    SysPackage { name: "libxcursor-dev", needed_for: &[Build], why: "X11 cursor themes for iced's windowing (winit)" },
    SysPackage {
        name: "libxrandr-dev",
        needed_for: &[Build],
        why: "X11 monitor/DPI queries for iced's windowing (winit)",
    },
    SysPackage {
        name: "libxi-dev",
        needed_for: &[Build],
        why: "X11 input (mouse, touch) for iced's windowing (winit)",
    },
    SysPackage {
        name: "dpkg-dev",
        needed_for: &[Package],
        why: "dpkg-shlibdeps: cargo-deb works out the package's library dependencies with it",
    },
    SysPackage {
        name: "desktop-file-utils",
        needed_for: &[Test],
        why: "desktop-file-validate: the package test checks the installed desktop entry",
    },
    SysPackage {
        name: "libgl1-mesa-dri",
        needed_for: &[Run, Test],
        why: "Mesa OpenGL drivers: wgpu's GL fallback and GLX under Xvfb",
    },
];

/// Debconf answers given before installing, so `apt-get` never stops to ask.
///
/// jackd2 asks whether to enable realtime priority for the `audio` group; the
/// question is shown even with `-y`, and CI has no stdin to answer it with.
/// "false" leaves the system's limits alone, which is right for test machines.
const DEBCONF_PRESEEDS: &[(&str, &str)] = &[("jackd2", "jackd2 jackd/tweak_rt_limits boolean false")];

/// Set to `1` to skip the check entirely (e.g. a machine prepared by other means,
/// or a developer who manages packages themselves).
pub const SKIP_VAR: &str = "NEURALBOARD_SKIP_SYSDEPS";

/// Makes sure every package needed for any of `needs` is installed, installing
/// the missing ones with apt-get.
///
/// On a machine without dpkg/apt only a note is printed: the build may still work
/// (other distributions ship the same libraries under other names), and the
/// note tells the developer what to look for if it does not.
pub fn ensure(needs: &[Need]) -> Result<(), Failure> {
    if env::var(SKIP_VAR).is_ok_and(|value| value == "1") {
        eprintln!("xtask: {SKIP_VAR}=1, not checking system packages");
        return Ok(());
    }

    let wanted: Vec<&SysPackage> =
        PACKAGES.iter().filter(|package| package.needed_for.iter().any(|need| needs.contains(need))).collect();
    let needs_text = needs.iter().map(|need| need.name()).collect::<Vec<_>>().join(", ");

    if !on_path("dpkg-query") || !on_path("apt-get") {
        eprintln!(
            "xtask: note: no dpkg/apt-get here (not Debian/Ubuntu?), so system packages are \
             not checked. For {needs_text}, install your distribution's equivalents of:"
        );
        print_packages(&wanted);
        return Ok(());
    }

    let missing: Vec<&SysPackage> = wanted.iter().copied().filter(|package| !is_installed(package.name)).collect();
    if missing.is_empty() {
        eprintln!("xtask: system packages for {needs_text}: all {} installed", wanted.len());
        return Ok(());
    }

    install(&missing, &needs_text)
}

/// Asks dpkg whether `name` is installed. Anything but the exact "installed"
/// status (not known, removed but configured, half-installed) counts as missing,
/// so apt-get gets a chance to fix it.
///
/// One status per line because a multi-arch package installed for two
/// architectures (e.g. `libasound2-dev:amd64` and `:i386`) reports two statuses;
/// one installed instance is enough.
fn is_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}\\n", name])
        // Unknown packages make dpkg-query complain on stderr; that is expected.
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|output| output.stdout.split(|&byte| byte == b'\n').any(|line| line == b"install ok installed"))
}

fn print_packages(packages: &[&SysPackage]) {
    let width = packages.iter().map(|package| package.name.len()).max().unwrap_or(0);
    for package in packages {
        eprintln!("  {:width$}  {}", package.name, package.why);
    }
}

fn install(missing: &[&SysPackage], needs_text: &str) -> Result<(), Failure> {
    let started = Instant::now();
    let names: Vec<&str> = missing.iter().map(|package| package.name).collect();

    eprintln!("xtask: {} system package(s) needed for {needs_text} are missing:", missing.len());
    print_packages(missing);

    let privileged = Privileged::detect()?;
    let mut install = privileged.command("apt-get");
    install.args(["install", "-y", "--no-install-recommends"]);
    install.args(&names);
    eprintln!("xtask: installing them with: {}", describe(&install));

    for (package, answer) in DEBCONF_PRESEEDS {
        if names.contains(package) {
            preseed(&privileged, answer)?;
        }
    }

    // Refresh the package lists first: on a fresh machine or container they are
    // often empty or stale, and install fails with "Unable to locate package".
    // A failed update (one unreachable mirror) is only a warning: the lists that
    // are there may still be enough, and the install below is what decides.
    let mut update = privileged.command("apt-get");
    update.arg("update");
    eprintln!("xtask: running {}", describe(&update));
    let status = run_status(&mut update)?;
    if !status.success() {
        eprintln!("xtask: warning: `apt-get update` failed ({status}); trying the install anyway");
    }

    let status = run_status(&mut install)?;
    if !status.success() {
        return Err(Failure::new(format!(
            "installing system packages failed ({status}). Install them yourself with\n  \
             {}\nor set {SKIP_VAR}=1 to skip this check.",
            describe(&install)
        )));
    }

    // apt-get can succeed without installing what was asked for (e.g. a package
    // held back); check again rather than fail later in a confusing way.
    let still_missing: Vec<&str> = names.iter().copied().filter(|name| !is_installed(name)).collect();
    if !still_missing.is_empty() {
        return Err(Failure::new(format!(
            "apt-get finished but these packages are still not installed: {}",
            still_missing.join(" ")
        )));
    }

    eprintln!("xtask: system packages installed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Feeds one debconf answer to `debconf-set-selections` on its stdin.
fn preseed(privileged: &Privileged, answer: &str) -> Result<(), Failure> {
    let mut command = privileged.command("debconf-set-selections");
    eprintln!("xtask: preseeding debconf: {answer}");
    let mut child = command
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|error| Failure::new(format!("could not start `debconf-set-selections`: {error}")))?;
    let mut stdin = child.stdin.take().expect("stdin was requested as a pipe");
    let written = writeln!(stdin, "{answer}");
    // Close the pipe so the program sees end of input and exits.
    drop(stdin);
    let status = child.wait().map_err(|error| Failure::new(format!("`debconf-set-selections` failed: {error}")))?;
    written.map_err(|error| Failure::new(format!("could not write to `debconf-set-selections`: {error}")))?;
    if !status.success() {
        return Err(Failure::new(format!("`debconf-set-selections` failed ({status}) for: {answer}")));
    }
    Ok(())
}

/// How to run package-management commands: directly as root, or through sudo.
enum Privileged {
    Root,
    Sudo,
}

impl Privileged {
    /// Decides by running `id -u`: the std library has no getuid() and xtask has
    /// no dependencies, so asking the system is the simplest correct way.
    fn detect() -> Result<Self, Failure> {
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.status.success() && output.stdout.trim_ascii() == b"0");
        if is_root {
            return Ok(Privileged::Root);
        }
        if !on_path("sudo") {
            return Err(Failure::new(
                "system packages are missing and installing them needs root, but `sudo` \
                 is not available: run this as root, or install the packages listed above",
            ));
        }
        Ok(Privileged::Sudo)
    }

    /// A command for `program` with `DEBIAN_FRONTEND=noninteractive` set.
    ///
    /// Under sudo the variable goes through `env` because sudo's default
    /// `env_reset` would drop it from the environment.
    fn command(&self, program: &str) -> Command {
        match self {
            Privileged::Root => {
                let mut command = Command::new(program);
                command.env("DEBIAN_FRONTEND", "noninteractive");
                command
            }
            Privileged::Sudo => {
                let mut command = Command::new("sudo");
                command.args(["env", "DEBIAN_FRONTEND=noninteractive", program]);
                command
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_are_unique() {
        for (index, package) in PACKAGES.iter().enumerate() {
            assert!(
                PACKAGES[index + 1..].iter().all(|other| other.name != package.name),
                "{} is listed twice",
                package.name
            );
        }
    }

    #[test]
    fn every_package_is_needed_for_something_and_says_why() {
        for package in PACKAGES {
            assert!(!package.needed_for.is_empty(), "{}", package.name);
            assert!(!package.why.is_empty(), "{}", package.name);
        }
    }

    #[test]
    fn run_does_not_pull_test_only_tools() {
        let run: Vec<&str> = PACKAGES
            .iter()
            .filter(|package| package.needed_for.iter().any(|need| [Build, Run].contains(need)))
            .map(|package| package.name)
            .collect();
        for test_only in ["jackd2", "xvfb", "xauth"] {
            assert!(!run.contains(&test_only), "{test_only}");
        }
    }
}
