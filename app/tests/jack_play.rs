//! End to end through a real audio server: `neuralboard play` against a JACK server running its dummy driver
//! (real-time paced, no sound card needed). Asserts real-time pacing, no overrun caused by the board, (next to) no
//! xruns, and audible output.
//!
//! Needs `jackd` (Debian package jackd2, which `cargo xtask test` installs). Without it the test says so and
//! passes, unless `CI` is set: there a missing jackd is a broken setup.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_neuralboard"))
}

struct Server(Child, PathBuf);

impl Server {
    /// What jackd printed, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

fn answers(name: &str) -> bool {
    Command::new("jack_lsp")
        .env("JACK_DEFAULT_SERVER", name)
        .env("JACK_NO_START_SERVER", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts a JACK server with the dummy driver (48 kHz, 64 frames) and waits until it answers. Its output goes to a
/// log that failures show.
fn start_server(name: &str) -> Server {
    assert!(!answers(name), "a JACK server named {name} is already running (another run of this test?)");
    remove_stale_server_files(name);
    let log_path = std::env::temp_dir().join(format!("{name}-jackd.log"));
    let log = std::fs::File::create(&log_path).expect("jackd log");
    let server = Server(
        Command::new("jackd")
            .args(["--no-realtime", "--name", name, "-d", "dummy", "-r", "48000", "-p", "64"])
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("jackd starts"),
        log_path,
    );
    let started = Instant::now();
    while !answers(name) {
        assert!(started.elapsed() < Duration::from_secs(10), "the JACK server did not come up:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

impl Drop for Server {
    /// SIGTERM first, so jackd unregisters itself: a SIGKILLed server leaves its entry in JACK's shared-memory
    /// registry, which holds only a few servers ("Too many servers already active" after a handful of runs).
    fn drop(&mut self) {
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether jackd is here; without it the tests say so and pass, except under CI, where it is a broken setup.
fn jackd_installed() -> bool {
    if have("jackd") {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "jackd is not installed (Debian: apt-get install jackd2)");
    eprintln!("SKIPPED: jackd is not installed (Debian: apt-get install jackd2)");
    false
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// A server of this name killed uncleanly (SIGKILL, a crash) leaves its socket and semaphores in /dev/shm, and a
/// new one then refuses to start ("server already active"). Nothing of that name is running (checked first), so
/// they are stale.
fn remove_stale_server_files(name: &str) {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else { return };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let ours = file.starts_with(&format!("jack_{name}_"))
            || (file.starts_with("jack_sem.") && file.contains(&format!("_{name}_")));
        if ours {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[test]
fn play_through_a_jack_dummy_server_keeps_real_time() {
    if !jackd_installed() {
        return;
    }
    // One fixed name: a server that died uncleanly leaves a registry entry that only a server of the same name
    // reclaims.
    let name = "neuralboard-test";
    let server = start_server(name);

    let stats = std::env::temp_dir().join(format!("{name}.json"));
    let home = std::env::temp_dir().join(format!("{name}-home"));
    let _ = std::fs::remove_dir_all(&home);
    let out = Command::new(bin())
        .args(["play", "--host", "jack", "--buffer", "64", "--seconds", "4", "--record", "--stats-json"])
        .arg(&stats)
        .env("JACK_DEFAULT_SERVER", name)
        .env("JACK_NO_START_SERVER", "1")
        .env("NEURALBOARD_HOME", &home)
        .output()
        .expect("neuralboard runs");
    let log = server.log();
    drop(server);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}\njackd:\n{log}", String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let _ = std::fs::remove_file(&stats);
    let number = |key: &str| report[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {report}"));

    assert_eq!(report["host"], "JACK");
    // 48000 / 64 = 750 callbacks a second, and one output frame per sample period.
    let pacing = number("pacing");
    assert!((0.95..=1.05).contains(&pacing), "pacing {pacing}× real time");
    let rate = number("callbacks_per_second");
    assert!((700.0..=800.0).contains(&rate), "{rate} callbacks/s, expected 750");
    // No xrun is the board's: it never needs more CPU time than a callback lasts (the audio thread's own CPU time,
    // so time the OS gave to other processes does not count). The server does report a few xruns of its own: without
    // real-time scheduling, as here, its dummy driver's timer wakes some microseconds late now and then, and a busy
    // machine can preempt a client for longer than the 1.3 ms period (jackd logs "Process XRun = 10 usec"). Measured
    // on the 2-core build machine under load: about 1 % of callbacks.
    assert_eq!(number("engine_overruns"), 0.0, "the board overran a callback's time budget: {report}");
    let xruns = number("xruns");
    assert!(xruns <= 0.05 * number("output_callbacks"), "{xruns} xruns: {report}");
    assert_eq!(number("stream_errors"), 0.0, "{report}");
    let out_peak = number("output_peak_dbfs");
    assert!(out_peak > -40.0 && out_peak <= -0.29, "output peak {out_peak} dBFS: silent, or above the limiter");

    // What was opened is remembered for the next start.
    let settings = std::fs::read_to_string(home.join("config/settings.ron")).expect("settings saved");
    assert!(settings.contains("host: Some(\"JACK\")") && settings.contains("buffer: Some(64)"), "{settings}");
    assert!(settings.contains("clean-practice.ron"), "{settings}");

    // The take: the board's output (stereo) and the dry input (mono), as long as the run, holding the sound.
    let takes: Vec<PathBuf> =
        std::fs::read_dir(home.join("data/takes")).expect("takes folder").map(|e| e.unwrap().path()).collect();
    let out_take = takes.iter().find(|p| p.to_string_lossy().ends_with("-out.wav")).expect("output take");
    let dry_take = takes.iter().find(|p| p.to_string_lossy().ends_with("-dry.wav")).expect("dry take");
    let mut reader = hound::WavReader::open(out_take).unwrap();
    assert_eq!((reader.spec().channels, reader.spec().sample_rate), (2, 48_000));
    let seconds = f64::from(reader.duration()) / 48_000.0;
    assert!((3.5..=4.5).contains(&seconds), "output take of {seconds} s for a 4 s run");
    let peak = reader.samples::<f32>().map(Result::unwrap).fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(20.0 * peak.log10() > -40.0, "the output take is silent");
    let dry = hound::WavReader::open(dry_take).unwrap();
    assert_eq!((dry.spec().channels, dry.duration()), (1, reader.duration()));
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn play_reopens_the_device_when_the_jack_server_comes_back() {
    if !jackd_installed() {
        return;
    }
    let name = "neuralboard-test-reopen";
    let server = start_server(name);
    let stats = std::env::temp_dir().join(format!("{name}.json"));
    let home = std::env::temp_dir().join(format!("{name}-home"));
    let _ = std::fs::remove_dir_all(&home);
    let play = Command::new(bin())
        .args(["play", "--host", "jack", "--buffer", "64", "--seconds", "9", "--stats-json"])
        .arg(&stats)
        .env("JACK_DEFAULT_SERVER", name)
        .env("JACK_NO_START_SERVER", "1")
        .env("NEURALBOARD_HOME", &home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("neuralboard runs");
    // The interface goes away mid-play (the server stops), and comes back two seconds later.
    std::thread::sleep(Duration::from_millis(2500));
    drop(server);
    std::thread::sleep(Duration::from_secs(2));
    let server = start_server(name);
    let out = play.wait_with_output().expect("play ends");
    let log = server.log();
    drop(server);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}\njackd:\n{log}");
    assert!(stderr.contains("went away") && stderr.contains("back"), "the player is told: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let _ = std::fs::remove_file(&stats);
    assert!(report["device_reopened"].as_f64().unwrap() >= 1.0, "{report}");
    // It played before and after: well over the 2.5 s before the server stopped.
    let callbacks = report["output_callbacks"].as_f64().unwrap();
    assert!(callbacks > 750.0 * 4.0, "{callbacks} callbacks in 9 s with 2 s away: {report}");
    let _ = std::fs::remove_dir_all(&home);
}
