//! A recorder killed in the middle of a take (SIGKILL: no destructor, no finalize) leaves two valid WAV files that
//! hold all it recorded but the last second.
//!
//! The test plays both parts from one binary. As the parent it runs this same test again in a child process, with
//! [`CHILD_ENV`] set. The child starts a take in a fresh temporary folder, prints the folder, and feeds a known
//! signal at real-time pace from a thread standing in for the audio callback, reporting how many frames it has fed.
//! After 2.5 s of audio the parent kills it and reads the files back.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use neuralboard_engine::takes::{TakeRecorder, TakeStatus};

/// Set in the child's environment: be the recorder.
const CHILD_ENV: &str = "NB_TAKE_CRASH_CHILD";
const TEST_NAME: &str = "a_killed_recorder_leaves_valid_wavs_missing_at_most_the_last_second";
const RATE: u32 = 48_000;
/// 10 ms, a common callback size.
const BLOCK: usize = 480;
/// Audio the child feeds before it is killed.
const RECORD_SECONDS: f64 = 2.5;
/// How often the child reports progress.
const REPORT_EVERY: Duration = Duration::from_millis(50);
/// The child gives up on its own if nobody kills it.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// The signal in frame `i`: `(dry, left, right)`, every frame distinct and exactly representable in f32.
fn signal(i: usize) -> (f32, f32, f32) {
    let x = i as f32;
    (x, -x, x + 0.5)
}

#[test]
fn a_killed_recorder_leaves_valid_wavs_missing_at_most_the_last_second() {
    if std::env::var_os(CHILD_ENV).is_some() {
        record_until_killed();
    }

    let spawned = Instant::now();
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines) = mpsc::channel();
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    // Follow the child's reports until it has fed RECORD_SECONDS, then kill it at once.
    let target = (RECORD_SECONDS * RATE as f64) as usize;
    let mut folder: Option<PathBuf> = None;
    let mut fed = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while fed < target {
        let line = match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.0.kill();
                let mut stderr = String::new();
                let _ = child.0.stderr.take().unwrap().read_to_string(&mut stderr);
                panic!("the child stopped reporting ({fed} frames fed): {stderr}");
            }
        };
        // The test harness may have begun the line ("test name ... "): look for the tag anywhere in it.
        if let Some((_, path)) = line.split_once("TAKE_FOLDER ") {
            folder = Some(PathBuf::from(path));
        } else if let Some((_, report)) = line.split_once("FED ") {
            fed = report.trim().parse().unwrap();
        }
    }
    child.0.kill().unwrap();
    let killed = Instant::now();
    let status = child.0.wait().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "the child died of SIGKILL, not on its own: {status}");
    }
    #[cfg(not(unix))]
    assert!(!status.success());

    let folder = folder.expect("the child named its take folder");
    // The child feeds no faster than real time from its start, which came after the spawn.
    let most = ((killed - spawned).as_secs_f64() * RATE as f64) as usize + BLOCK;
    let least = fed - RATE as usize;

    let out = only_file(&folder, "-out.wav");
    let dry = only_file(&folder, "-dry.wav");
    let out = hound::WavReader::open(&out).unwrap_or_else(|e| panic!("{}: not a valid WAV: {e}", out.display()));
    let dry = hound::WavReader::open(&dry).unwrap_or_else(|e| panic!("{}: not a valid WAV: {e}", dry.display()));
    let float = |channels| hound::WavSpec {
        channels,
        sample_rate: RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    assert_eq!(out.spec(), float(2));
    assert_eq!(dry.spec(), float(1));
    let out: Vec<f32> = out.into_samples().collect::<Result<_, _>>().expect("every sample the header counts is there");
    let dry: Vec<f32> = dry.into_samples().collect::<Result<_, _>>().expect("every sample the header counts is there");

    let out_frames = out.len() / 2;
    assert!(out.len().is_multiple_of(2), "whole stereo frames");
    for (name, frames) in [("out", out_frames), ("dry", dry.len())] {
        assert!(
            (least..=most).contains(&frames),
            "{name}: {frames} frames saved; the child fed at least {fed} and at most {most}, so between {least} and {most} \
             were expected"
        );
    }
    for (i, lr) in out.chunks(2).enumerate() {
        let (_, left, right) = signal(i);
        assert_eq!((lr[0], lr[1]), (left, right), "out frame {i}");
    }
    for (i, &sample) in dry.iter().enumerate() {
        assert_eq!(sample, signal(i).0, "dry frame {i}");
    }
    eprintln!(
        "fed {:.3} s before the kill; saved {:.3} s (out) and {:.3} s (dry)",
        fed as f64 / RATE as f64,
        out_frames as f64 / RATE as f64,
        dry.len() as f64 / RATE as f64
    );
    std::fs::remove_dir_all(&folder).unwrap();
}

/// The child process, killed if the parent fails before it means to kill it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The single file in `folder` whose name ends with `suffix`.
fn only_file(folder: &Path, suffix: &str) -> PathBuf {
    let matching: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(matching.len(), 1, "{}: expected one *{suffix}: {matching:?}", folder.display());
    matching.into_iter().next().unwrap()
}

/// The child's part: record, feeding the signal at real-time pace, until killed.
fn record_until_killed() -> ! {
    let folder = std::env::temp_dir().join(format!("nb-take-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    let (mut recorder, mut tap) = TakeRecorder::new(RATE, BLOCK);
    recorder.start(&folder).unwrap();
    println!("TAKE_FOLDER {}", folder.display());

    let fed = Arc::new(AtomicUsize::new(0));
    let fed_by_audio = Arc::clone(&fed);
    std::thread::Builder::new()
        .name("audio".into())
        .spawn(move || {
            let (mut dry, mut left, mut right) = (vec![0.0; BLOCK], vec![0.0; BLOCK], vec![0.0; BLOCK]);
            let started = Instant::now();
            let block = Duration::from_secs_f64(BLOCK as f64 / RATE as f64);
            for k in 0.. {
                // Absolute deadlines: a late wake-up is made up at once, and the pace never runs ahead.
                if let Some(wait) = (started + block * k).checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let first = k as usize * BLOCK;
                for j in 0..BLOCK {
                    (dry[j], left[j], right[j]) = signal(first + j);
                }
                tap.push(&dry, &left, &right);
                fed_by_audio.store(first + BLOCK, Ordering::Release);
            }
        })
        .unwrap();

    // The GUI's part: watch the take and report how much has been fed.
    let started = Instant::now();
    while started.elapsed() < CHILD_LIFETIME {
        std::thread::sleep(REPORT_EVERY);
        let (status, overruns) = (recorder.status(), recorder.overruns());
        if status != TakeStatus::Recording || overruns != 0 {
            eprintln!("the take went wrong: {status:?}, {overruns} frames dropped");
            std::process::exit(1);
        }
        println!("FED {}", fed.load(Ordering::Acquire));
    }
    eprintln!("nobody killed the recorder within {CHILD_LIFETIME:?}");
    std::process::exit(1);
}
