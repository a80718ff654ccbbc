//! Takes: the dry guitar (mono) and what the board plays (stereo), recorded to WAV files while playing.
//!
//! Three parts, one per thread:
//! - [`TakeTap`] lives on the audio thread. The engine hands it each block's dry input and processed output; it
//!   copies the frames into a lock-free ring and never allocates, locks or waits. When the ring is full the frames
//!   are dropped and counted ([`TakeRecorder::overruns`]), never silently. While no take runs it costs one atomic
//!   load.
//! - A writer thread, spawned per take, drains the ring into `<stamp>-out.wav` (stereo) and `<stamp>-dry.wav`
//!   (mono), 32-bit float, and refreshes both headers every [`HEADER_REFRESH`]: a crash or a SIGKILL leaves valid
//!   files holding all but the last moments. A write error (full disk, pulled USB stick) ends the take, reported
//!   through [`TakeStatus::Failed`], while the audio goes on.
//! - [`TakeRecorder`] is the non-real-time handle (GUI thread): start, stop, status, counters.
//!
//! Start and stop reach the tap only through atomics. `armed` says whether to push; the tap raises `pushing`
//! around each push. Stopping lowers `armed`, then waits until `pushing` is down: both sides use sequentially
//! consistent operations (a Dekker handshake), so once the recorder has seen `pushing` down no frame can enter the
//! ring any more. Only then is the writer told to finish, and it writes everything still in the ring before it
//! finalizes the files. Starting discards whatever an ended take left in the ring, so a take never begins with
//! another's frames.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Audio the ring holds, in seconds: how long the writer may be held up (a slow disk, a busy system) before frames
/// are dropped. About 0.55 MiB per second at 48 kHz.
pub const RING_SECONDS: f64 = 4.0;

/// How often the writer rewrites the WAV headers' sizes: a crash loses at most this much of what reached the
/// writer, plus what was still in the ring (normally under [`WRITER_POLL`]).
pub const HEADER_REFRESH: Duration = Duration::from_millis(250);

/// How long the writer sleeps after emptying the ring. The audio thread cannot wake it without a system call.
const WRITER_POLL: Duration = Duration::from_millis(10);

/// Frames written between two updates of the elapsed-time counter and two checks of the size limit.
const WRITE_SLAB: usize = 4096;

/// Buffer between hound's four-byte writes and the file.
const FILE_BUFFER_BYTES: usize = 64 * 1024;

/// A WAV file's sizes are 32-bit: its data may not exceed 4 GiB, less room for the header.
const MAX_WAV_DATA_BYTES: u64 = u32::MAX as u64 - 4096;

/// The stereo file is the larger: 2 channels of 4 bytes per frame. About 3 h 6 min at 48 kHz.
const MAX_TAKE_FRAMES: u64 = MAX_WAV_DATA_BYTES / 8;

/// Highest `-N` tried when takes started in the same second already use the stamp.
const MAX_NAME_SUFFIX: u32 = 1000;

/// One frame as it travels through the ring: the dry input and the board's stereo output at the same instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Frame {
    dry: f32,
    left: f32,
    right: f32,
}

// Values of `Shared::state`.
const IDLE: u8 = 0;
const RECORDING: u8 = 1;
const LIMIT_REACHED: u8 = 2;
const FAILED: u8 = 3;

/// State shared by the tap (audio thread), the recorder (GUI thread) and the writer thread. The audio thread only
/// touches `armed`, `pushing` and `overruns`.
#[derive(Debug, Default)]
struct Shared {
    /// The tap pushes while this is set. Set by the recorder at start; cleared by the recorder at stop and by the
    /// writer when it ends on its own.
    armed: AtomicBool,
    /// Raised by the tap around each push, so the recorder can tell when it is done with the ring.
    pushing: AtomicBool,
    /// Frames dropped in this take because the ring was full.
    overruns: AtomicU64,
    /// Tells the writer that no frame will enter the ring any more: write what is left and finalize.
    finish: AtomicBool,
    /// One of `IDLE`, `RECORDING`, `LIMIT_REACHED`, `FAILED`.
    state: AtomicU8,
    /// Frames written to the files in this take (or the last one).
    frames_written: AtomicU64,
    /// Why the take failed; written before `state` becomes `FAILED`. Never touched by the audio thread.
    failure: Mutex<Option<String>>,
}

impl Shared {
    /// Ends the take from the writer's side: the tap stops pushing, then the GUI learns why.
    fn end(&self, state: u8, failure: Option<String>) {
        self.armed.store(false, Ordering::SeqCst);
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = failure;
        self.state.store(state, Ordering::Release);
    }
}

/// The audio thread's end: give it every block's dry input and processed output.
///
/// Created with its [`TakeRecorder`] off the audio thread and moved into the engine. Dropping it on the audio
/// thread is real-time safe only while the recorder is alive (the ring is freed by whichever is dropped last).
pub struct TakeTap {
    shared: Arc<Shared>,
    producer: rtrb::Producer<Frame>,
}

impl TakeTap {
    /// Records one block while a take runs; does nothing otherwise. Real-time safe: no allocation, lock or wait.
    ///
    /// `dry` is the input as it arrived (before the input gain), `left` and `right` the board's output. If the
    /// slices differ in length, the shortest decides. Frames that do not fit in the ring are dropped and counted.
    #[inline]
    pub fn push(&mut self, dry: &[f32], left: &[f32], right: &[f32]) {
        // A stale `true` is caught by the second, ordered check below; a stale `false` misses one block at the
        // very start of a take.
        if self.shared.armed.load(Ordering::Relaxed) {
            self.push_armed(dry, left, right);
        }
    }

    fn push_armed(&mut self, dry: &[f32], left: &[f32], right: &[f32]) {
        let shared = &*self.shared;
        // Raise the flag, then look at `armed` again: the recorder lowers `armed`, then looks at the flag. With
        // both in one sequential order, either we see `armed` down, or the recorder sees us pushing and waits.
        shared.pushing.store(true, Ordering::SeqCst);
        if shared.armed.load(Ordering::SeqCst) {
            let n = dry.len().min(left.len()).min(right.len());
            let fits = n.min(self.producer.slots());
            if let Ok(chunk) = self.producer.write_chunk_uninit(fits) {
                let frames = dry.iter().zip(left).zip(right);
                chunk.fill_from_iter(frames.map(|((&dry, &left), &right)| Frame { dry, left, right }));
            }
            if fits < n {
                shared.overruns.fetch_add((n - fits) as u64, Ordering::Relaxed);
            }
        }
        // Release is enough here: the recorder's load that sees it also sees the frames.
        shared.pushing.store(false, Ordering::Release);
    }

    /// Whether blocks are being recorded now.
    pub fn is_recording(&self) -> bool {
        self.shared.armed.load(Ordering::Relaxed)
    }
}

/// Where a take is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeFiles {
    /// The board's output, stereo, 32-bit float.
    pub out: PathBuf,
    /// The guitar as it came in, mono, 32-bit float: for re-amping.
    pub dry: PathBuf,
}

/// What a finished take holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TakeSummary {
    pub files: TakeFiles,
    /// Frames in each file.
    pub frames: u64,
    pub seconds: f64,
    /// Frames dropped because the writer fell behind (the files have gaps where they were); should be 0.
    pub overruns: u64,
    /// The take ended by itself at the 4 GiB size limit of a WAV file.
    pub limit_reached: bool,
}

/// What the GUI shows about the recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakeStatus {
    /// No take; the last one, if any, has been collected by [`TakeRecorder::stop`].
    Idle,
    Recording,
    /// The take reached the 4 GiB size limit of a WAV file and was saved; [`TakeRecorder::stop`] returns it.
    LimitReached,
    /// Writing failed (a full disk, a vanished drive): the take ended while the audio went on. The message names
    /// the file and the system's error. The files keep what was written until the last header refresh;
    /// [`TakeRecorder::stop`] returns the error.
    Failed(String),
}

/// Why a take could not start or did not end well. Messages name the folder or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    #[error("{}: cannot record takes in this folder: {source}; choose another takes folder", path.display())]
    Folder { path: PathBuf, source: io::Error },
    #[error("{}: cannot create the take file: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("{}: cannot write the take: {source}; the file keeps what was recorded until then", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("a take is already being recorded to {}", path.display())]
    AlreadyRecording { path: PathBuf },
    #[error("no take is being recorded")]
    NotRecording,
    #[error("cannot start the take writer thread: {0}")]
    Spawn(io::Error),
    #[error("the take writer stopped unexpectedly: {0}")]
    WriterPanicked(String),
}

/// The non-real-time handle: starts and stops takes, reports their state. All methods may be called at any time.
pub struct TakeRecorder {
    shared: Arc<Shared>,
    sample_rate: u32,
    /// The ring's reading end. The writer holds the lock for the whole take; the recorder takes it only between
    /// takes, to empty the ring. Kept here rather than moved into the thread, so no failure can lose it.
    ring: Arc<Mutex<rtrb::Consumer<Frame>>>,
    take: Option<RunningTake>,
    /// Frames after which a take ends by itself; the WAV limit, lowered by tests.
    max_frames: u64,
}

struct RunningTake {
    files: TakeFiles,
    writer: JoinHandle<Result<TakeSummary, TakeError>>,
}

impl TakeRecorder {
    /// A recorder for a stream at `sample_rate` whose callbacks bring at most `max_block` frames, and the tap to
    /// move to the audio thread. Allocates the ring: [`RING_SECONDS`] of audio, and at least four blocks.
    pub fn new(sample_rate: u32, max_block: usize) -> (Self, TakeTap) {
        let frames = (sample_rate as f64 * RING_SECONDS).ceil() as usize;
        Self::with_ring_frames(sample_rate, frames.max(4 * max_block))
    }

    pub(crate) fn with_ring_frames(sample_rate: u32, ring_frames: usize) -> (Self, TakeTap) {
        assert!(sample_rate > 0, "a take needs a sample rate");
        let (producer, consumer) = rtrb::RingBuffer::new(ring_frames.max(1));
        let shared = Arc::new(Shared::default());
        let recorder = Self {
            shared: Arc::clone(&shared),
            sample_rate,
            ring: Arc::new(Mutex::new(consumer)),
            take: None,
            max_frames: MAX_TAKE_FRAMES,
        };
        (recorder, TakeTap { shared, producer })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Starts a take in `folder` (created if missing), named after the current time (UTC):
    /// `2026-11-26_14-03-27Z-out.wav` and `…-dry.wav`, with `-2`, `-3`… added if those exist. Both files are
    /// valid, empty WAVs when this returns. Recording begins with the next block the tap sees.
    pub fn start(&mut self, folder: impl AsRef<Path>) -> Result<TakeFiles, TakeError> {
        self.collect_ended_take()?;
        let folder = folder.as_ref();
        std::fs::create_dir_all(folder).map_err(|source| TakeError::Folder { path: folder.to_owned(), source })?;
        let (files, out, dry) = create_take_files(folder, &take_stamp(SystemTime::now()))?;
        let sinks = (|| {
            let out = Sink::file(files.out.clone(), out, 2, self.sample_rate)?;
            let dry = Sink::file(files.dry.clone(), dry, 1, self.sample_rate)?;
            Ok((out, dry))
        })();
        let started = sinks.and_then(|(out, dry)| self.begin(files.clone(), out, dry));
        if started.is_err() {
            let _ = std::fs::remove_file(&files.out);
            let _ = std::fs::remove_file(&files.dry);
        }
        started.map(|()| files)
    }

    /// Starts a take into prepared sinks: the real files, or a failing writer in tests.
    fn begin<W: Write + Seek + Send + 'static>(
        &mut self,
        files: TakeFiles,
        out: Sink<W>,
        dry: Sink<W>,
    ) -> Result<(), TakeError> {
        self.collect_ended_take()?;
        self.silence_tap();
        {
            // Frames an ended take left behind (one that failed stops reading at once) must not open this one.
            let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
            let stale = ring.slots();
            if let Ok(stale) = ring.read_chunk(stale) {
                stale.commit_all();
            }
        }
        let shared = &self.shared;
        shared.overruns.store(0, Ordering::Relaxed);
        shared.frames_written.store(0, Ordering::Relaxed);
        shared.finish.store(false, Ordering::Relaxed);
        *shared.failure.lock().unwrap_or_else(PoisonError::into_inner) = None;
        shared.state.store(RECORDING, Ordering::Release);

        // Armed before the writer exists, so a writer that fails at once leaves the tap disarmed, not re-armed.
        shared.armed.store(true, Ordering::SeqCst);
        let writer = TakeWriter { out, dry, frames: 0, max_frames: self.max_frames, sample_rate: self.sample_rate };
        let (shared, ring) = (Arc::clone(&self.shared), Arc::clone(&self.ring));
        let spawned = std::thread::Builder::new().name("take writer".into()).spawn(move || {
            let mut ring = ring.lock().unwrap_or_else(PoisonError::into_inner);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.run(&mut ring, &shared)))
                .unwrap_or_else(|panic| Err(TakeError::WriterPanicked(panic_message(&*panic))));
            match &result {
                Err(e) => shared.end(FAILED, Some(e.to_string())),
                Ok(summary) if summary.limit_reached => shared.end(LIMIT_REACHED, None),
                Ok(_) => {}
            }
            result
        });
        match spawned {
            Ok(writer) => {
                self.take = Some(RunningTake { files, writer });
                Ok(())
            }
            Err(e) => {
                // What the tap pushed meanwhile is discarded by the next start.
                self.silence_tap();
                self.shared.state.store(IDLE, Ordering::Release);
                Err(TakeError::Spawn(e))
            }
        }
    }

    /// Stops the take: writes what is still in the ring, finalizes both files and returns what they hold. If the
    /// take had failed, returns that error (the files keep what was written before it).
    pub fn stop(&mut self) -> Result<TakeSummary, TakeError> {
        let take = self.take.take().ok_or(TakeError::NotRecording)?;
        self.silence_tap();
        // Every frame pushed is in the ring now; the writer drains it after seeing this.
        self.shared.finish.store(true, Ordering::Release);
        let result = take.writer.join().unwrap_or_else(|panic| Err(TakeError::WriterPanicked(panic_message(&*panic))));
        self.shared.state.store(IDLE, Ordering::Release);
        result
    }

    pub fn status(&self) -> TakeStatus {
        match self.shared.state.load(Ordering::Acquire) {
            RECORDING => TakeStatus::Recording,
            LIMIT_REACHED => TakeStatus::LimitReached,
            FAILED => TakeStatus::Failed(
                self.shared.failure.lock().unwrap_or_else(PoisonError::into_inner).clone().unwrap_or_default(),
            ),
            _ => TakeStatus::Idle,
        }
    }

    /// Whether a take is being recorded now (not ended, failed or stopped).
    pub fn is_recording(&self) -> bool {
        self.status() == TakeStatus::Recording
    }

    /// The running take's files, until [`Self::stop`].
    pub fn files(&self) -> Option<&TakeFiles> {
        self.take.as_ref().map(|take| &take.files)
    }

    /// Frames dropped in the current (or last) take because the ring was full. Should stay 0; if it grows the
    /// writer cannot keep up (a slow or busy disk).
    pub fn overruns(&self) -> u64 {
        self.shared.overruns.load(Ordering::Relaxed)
    }

    /// Seconds written to the files in the current (or last) take. Trails the audio by up to [`WRITER_POLL`].
    pub fn elapsed_seconds(&self) -> f64 {
        self.shared.frames_written.load(Ordering::Relaxed) as f64 / self.sample_rate as f64
    }

    /// Makes sure the tap pushes no more: lowers `armed`, then waits for a push in progress to end (a copy of one
    /// block: microseconds). Does not depend on the audio thread running.
    fn silence_tap(&self) {
        self.shared.armed.store(false, Ordering::SeqCst);
        let mut waits = 0u32;
        while self.shared.pushing.load(Ordering::SeqCst) {
            // Yield first; should the audio thread be descheduled mid-push, stop burning a core on it.
            waits += 1;
            if waits < 1000 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }

    /// Joins a writer that ended on its own (failure or size limit), whose outcome the GUI has seen in
    /// [`Self::status`]. A take still recording is an error.
    fn collect_ended_take(&mut self) -> Result<(), TakeError> {
        if let Some(take) = &self.take {
            if self.shared.state.load(Ordering::Acquire) == RECORDING {
                return Err(TakeError::AlreadyRecording { path: take.files.out.clone() });
            }
            let _ = self.stop();
        }
        Ok(())
    }
}

impl Drop for TakeRecorder {
    /// A running take is stopped and its files finalized.
    fn drop(&mut self) {
        if self.take.is_some() {
            let _ = self.stop();
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// A moment as `2026-11-26_14-03-27Z`: UTC (the `Z`), sortable, and valid in file names everywhere.
pub fn take_stamp(time: SystemTime) -> String {
    let secs = time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}_{:02}-{:02}-{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Creates `<stamp>-out.wav` and `<stamp>-dry.wav` in `folder`, or `<stamp>-2-…`, `<stamp>-3-…` if taken. Never
/// opens an existing file: creation is exclusive, so two recorders cannot pick the same name either.
fn create_take_files(folder: &Path, stamp: &str) -> Result<(TakeFiles, File, File), TakeError> {
    let create = |path: &Path| OpenOptions::new().write(true).create_new(true).open(path);
    for n in 1..=MAX_NAME_SUFFIX {
        let name = if n == 1 { stamp.to_owned() } else { format!("{stamp}-{n}") };
        let files =
            TakeFiles { out: folder.join(format!("{name}-out.wav")), dry: folder.join(format!("{name}-dry.wav")) };
        let out = match create(&files.out) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(TakeError::Create { path: files.out, source }),
        };
        match create(&files.dry) {
            Ok(dry) => return Ok((files, out, dry)),
            Err(e) => {
                drop(out);
                let _ = std::fs::remove_file(&files.out);
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(TakeError::Create { path: files.dry, source: e });
                }
            }
        }
    }
    Err(TakeError::Create {
        path: folder.join(format!("{stamp}-{MAX_NAME_SUFFIX}-out.wav")),
        source: io::Error::new(io::ErrorKind::AlreadyExists, "too many takes with this time stamp"),
    })
}

/// One WAV file being written.
struct Sink<W: Write + Seek> {
    path: PathBuf,
    wav: hound::WavWriter<BufWriter<W>>,
    /// The same file, to sync to disk once finalized.
    sync: Option<File>,
}

impl Sink<File> {
    fn file(path: PathBuf, file: File, channels: u16, sample_rate: u32) -> Result<Self, TakeError> {
        let sync = file.try_clone().map_err(|source| TakeError::Create { path: path.clone(), source })?;
        let mut sink = Self::new(path, file, channels, sample_rate)?;
        sink.sync = Some(sync);
        Ok(sink)
    }
}

impl<W: Write + Seek> Sink<W> {
    /// Writes the header and flushes it, so the file is a valid (empty) WAV from the start.
    fn new(path: PathBuf, writer: W, channels: u16, sample_rate: u32) -> Result<Self, TakeError> {
        let spec =
            hound::WavSpec { channels, sample_rate, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
        let buffered = BufWriter::with_capacity(FILE_BUFFER_BYTES, writer);
        let created = hound::WavWriter::new(buffered, spec).and_then(|mut wav| wav.flush().map(|()| wav));
        match created {
            Ok(wav) => Ok(Self { path, wav, sync: None }),
            Err(e) => Err(TakeError::Create { source: io_error(e), path }),
        }
    }

    #[inline]
    fn write(&mut self, sample: f32) -> Result<(), TakeError> {
        self.wav.write_sample(sample).map_err(|e| self.error(e))
    }

    /// Rewrites the header's sizes and hands the data to the system: from here on a crash keeps it. hound seeks to
    /// the header, which makes the `BufWriter` write out everything before it first: the sizes never count data
    /// that has not reached the file.
    fn refresh(&mut self) -> Result<(), TakeError> {
        self.wav.flush().map_err(|e| self.error(e))
    }

    fn finalize(self) -> Result<(), TakeError> {
        let Self { path, wav, sync } = self;
        let error = |source| TakeError::Write { path: path.clone(), source };
        wav.finalize().map_err(|e| error(io_error(e)))?;
        match sync {
            Some(file) => file.sync_all().map_err(error),
            None => Ok(()),
        }
    }

    /// Finalizes after a write error, as far as the disk allows. If the error cut a stereo frame in half, the frame
    /// is completed with silence first, so the header never counts half a frame.
    fn finalize_after_error(mut self) {
        let channels = u32::from(self.wav.spec().channels);
        while !self.wav.len().is_multiple_of(channels) && self.wav.write_sample(0.0f32).is_ok() {}
        // If the disk is still full, the buffered data cannot be written, and neither can the header: the file
        // stays as it was at the last refresh, which is valid.
        let _ = self.finalize();
    }

    fn error(&self, e: hound::Error) -> TakeError {
        TakeError::Write { path: self.path.clone(), source: io_error(e) }
    }
}

fn io_error(e: hound::Error) -> io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// The writer thread's work: ring to files.
struct TakeWriter<W: Write + Seek> {
    out: Sink<W>,
    dry: Sink<W>,
    frames: u64,
    max_frames: u64,
    sample_rate: u32,
}

impl<W: Write + Seek> TakeWriter<W> {
    fn run(mut self, ring: &mut rtrb::Consumer<Frame>, shared: &Shared) -> Result<TakeSummary, TakeError> {
        let mut last_refresh = Instant::now();
        loop {
            // Read before draining: once set, the ring already holds every frame the take will get.
            let finishing = shared.finish.load(Ordering::Acquire);
            if let Err(e) = self.drain(ring, shared) {
                self.abandon();
                return Err(e);
            }
            let limit_reached = self.frames >= self.max_frames;
            if finishing || limit_reached {
                return self.finish(shared, limit_reached);
            }
            if last_refresh.elapsed() >= HEADER_REFRESH {
                if let Err(e) = self.out.refresh().and_then(|()| self.dry.refresh()) {
                    self.abandon();
                    return Err(e);
                }
                last_refresh = Instant::now();
            }
            std::thread::sleep(WRITER_POLL);
        }
    }

    /// Writes what the ring holds now, up to the size limit. Frames arriving meanwhile wait for the next round, so
    /// a writer that falls behind still refreshes the headers on time.
    fn drain(&mut self, ring: &mut rtrb::Consumer<Frame>, shared: &Shared) -> Result<(), TakeError> {
        let mut remaining = ring.slots();
        while remaining > 0 {
            let room = (self.max_frames - self.frames).min(WRITE_SLAB as u64) as usize;
            let Ok(chunk) = ring.read_chunk(remaining.min(room)) else { return Ok(()) };
            if chunk.is_empty() {
                return Ok(());
            }
            remaining -= chunk.len();
            let (first, second) = chunk.as_slices();
            for frame in first.iter().chain(second) {
                self.out.write(frame.left)?;
                self.out.write(frame.right)?;
                self.dry.write(frame.dry)?;
            }
            self.frames += chunk.len() as u64;
            chunk.commit_all();
            shared.frames_written.store(self.frames, Ordering::Relaxed);
        }
        Ok(())
    }

    fn finish(self, shared: &Shared, limit_reached: bool) -> Result<TakeSummary, TakeError> {
        let files = TakeFiles { out: self.out.path.clone(), dry: self.dry.path.clone() };
        let (out, dry) = (self.out.finalize(), self.dry.finalize());
        out.and(dry)?;
        Ok(TakeSummary {
            files,
            frames: self.frames,
            seconds: self.frames as f64 / self.sample_rate as f64,
            overruns: shared.overruns.load(Ordering::Relaxed),
            limit_reached,
        })
    }

    /// After an error: finalizes what can be finalized.
    fn abandon(self) {
        self.out.finalize_after_error();
        self.dry.finalize_after_error();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, SeekFrom};

    const RATE: u32 = 48_000;

    /// A folder of its own for each test, removed when the test passes.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!("nb-takes-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    /// The signal fed in frame `i`: every frame distinct and exactly representable, so a file's samples tell which
    /// frames it holds.
    fn frame(i: usize) -> Frame {
        let x = i as f32;
        Frame { dry: x, left: -x, right: x + 0.5 }
    }

    /// Feeds frames `start..start + len` to the tap as one block, the way the engine would.
    fn feed(tap: &mut TakeTap, start: usize, len: usize) {
        let frames: Vec<Frame> = (start..start + len).map(frame).collect();
        let dry: Vec<f32> = frames.iter().map(|f| f.dry).collect();
        let left: Vec<f32> = frames.iter().map(|f| f.left).collect();
        let right: Vec<f32> = frames.iter().map(|f| f.right).collect();
        tap.push(&dry, &left, &right);
    }

    /// Reads a take back as frames, checking both files' formats and that they hold the same number of frames.
    fn read_take<R: io::Read>(out: hound::WavReader<R>, dry: hound::WavReader<R>) -> Vec<Frame> {
        let float = |channels| hound::WavSpec {
            channels,
            sample_rate: RATE,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        assert_eq!(out.spec(), float(2));
        assert_eq!(dry.spec(), float(1));
        let out: Vec<f32> = out.into_samples().collect::<Result<_, _>>().unwrap();
        let dry: Vec<f32> = dry.into_samples().collect::<Result<_, _>>().unwrap();
        assert_eq!(out.len(), 2 * dry.len(), "both files hold the same frames");
        dry.iter().zip(out.chunks(2)).map(|(&dry, lr)| Frame { dry, left: lr[0], right: lr[1] }).collect()
    }

    fn read_files(files: &TakeFiles) -> Vec<Frame> {
        read_take(hound::WavReader::open(&files.out).unwrap(), hound::WavReader::open(&files.dry).unwrap())
    }

    /// The frame indices a take holds, from its samples; panics on a sample that is no fed frame.
    fn indices(frames: &[Frame]) -> Vec<usize> {
        frames
            .iter()
            .map(|f| {
                let i = f.dry as usize;
                assert_eq!(*f, frame(i), "a frame that was never fed");
                i
            })
            .collect()
    }

    fn wait_for(recorder: &TakeRecorder, what: impl Fn(&TakeStatus) -> bool) -> TakeStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = recorder.status();
            if what(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "still {status:?} after 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// An in-memory file, readable after the writer is done with it, that can be made to run out of space.
    #[derive(Clone)]
    struct MemoryFile {
        data: Arc<Mutex<Cursor<Vec<u8>>>>,
        capacity: usize,
    }

    impl MemoryFile {
        fn new(capacity: usize) -> Self {
            Self { data: Arc::default(), capacity }
        }

        fn reader(&self) -> hound::WavReader<Cursor<Vec<u8>>> {
            hound::WavReader::new(Cursor::new(self.data.lock().unwrap().get_ref().clone())).unwrap()
        }
    }

    impl Write for MemoryFile {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            // Like a disk: what fits is written (a short write), then the next write fails.
            let mut data = self.data.lock().unwrap();
            let room = self.capacity.saturating_sub(data.position() as usize);
            if room == 0 && !buf.is_empty() {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on the simulated disk"));
            }
            data.write(&buf[..buf.len().min(room)])
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for MemoryFile {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.data.lock().unwrap().seek(pos)
        }
    }

    /// Starts a take into memory files named `out.wav` and `dry.wav`.
    fn begin_in_memory(recorder: &mut TakeRecorder, out: &MemoryFile, dry: &MemoryFile) {
        let files = TakeFiles { out: "mem/out.wav".into(), dry: "mem/dry.wav".into() };
        let out = Sink::new(files.out.clone(), out.clone(), 2, RATE).unwrap();
        let dry = Sink::new(files.dry.clone(), dry.clone(), 1, RATE).unwrap();
        recorder.begin(files, out, dry).unwrap();
    }

    #[test]
    fn stamps_are_utc_dates_and_times_that_sort() {
        let at = |secs| take_stamp(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01_00-00-00Z");
        assert_eq!(at(951_782_400), "2000-02-29_00-00-00Z");
        assert_eq!(at(1_795_619_007), "2026-11-25_15-03-27Z");
        assert_eq!(at(4_102_444_799), "2099-12-31_23-59-59Z");
        let mut stamps: Vec<String> = (0..200u64).map(|k| at(k * 7_777_777 + k % 3)).collect();
        let in_order = stamps.clone();
        stamps.sort();
        assert_eq!(stamps, in_order);
    }

    #[test]
    fn take_files_are_numbered_rather_than_overwritten() {
        let dir = TempDir::new("names");
        let stamp = "2026-11-26_14-03-27Z";
        let (first, ..) = create_take_files(&dir.0, stamp).unwrap();
        assert_eq!(first.out, dir.0.join("2026-11-26_14-03-27Z-out.wav"));
        assert_eq!(first.dry, dir.0.join("2026-11-26_14-03-27Z-dry.wav"));
        let (second, ..) = create_take_files(&dir.0, stamp).unwrap();
        assert_eq!(second.out, dir.0.join("2026-11-26_14-03-27Z-2-out.wav"));
        assert_eq!(second.dry, dir.0.join("2026-11-26_14-03-27Z-2-dry.wav"));
        // A dry file alone is a collision too, and the out file tried beside it is not left behind.
        std::fs::write(dir.0.join("2026-11-26_14-03-27Z-3-dry.wav"), b"mine").unwrap();
        let (fourth, ..) = create_take_files(&dir.0, stamp).unwrap();
        assert_eq!(fourth.out, dir.0.join("2026-11-26_14-03-27Z-4-out.wav"));
        assert!(!dir.0.join("2026-11-26_14-03-27Z-3-out.wav").exists());
        assert_eq!(std::fs::read(dir.0.join("2026-11-26_14-03-27Z-3-dry.wav")).unwrap(), b"mine");
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 7);
    }

    #[test]
    fn a_take_holds_exactly_the_frames_fed_in_blocks_of_any_size() {
        let dir = TempDir::new("round-trip");
        let (mut recorder, mut tap) = TakeRecorder::new(RATE, 256);
        let files = recorder.start(dir.0.join("new folder")).unwrap();
        assert_eq!(recorder.status(), TakeStatus::Recording);
        assert_eq!(recorder.files(), Some(&files));
        let name = files.out.file_name().unwrap().to_str().unwrap();
        assert!(name.ends_with("Z-out.wav") && name.len() == "2026-11-26_14-03-27Z-out.wav".len(), "{name}");

        // An audio callback: awkward block sizes, about real-time pace.
        let audio = std::thread::spawn(move || {
            let mut fed = 0;
            for (k, len) in [256, 1, 0, 17, 256, 255, 3, 512, 64].into_iter().cycle().take(400).enumerate() {
                feed(&mut tap, fed, len);
                fed += len;
                if k % 8 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            (tap, fed)
        });
        let (mut tap, fed) = audio.join().unwrap();
        let summary = recorder.stop().unwrap();
        feed(&mut tap, fed, 256); // after the stop: not recorded

        assert_eq!(summary.files, files);
        assert_eq!(summary.frames, fed as u64);
        assert_eq!(summary.seconds, fed as f64 / RATE as f64);
        assert_eq!((summary.overruns, summary.limit_reached), (0, false));
        assert_eq!(recorder.status(), TakeStatus::Idle);
        assert_eq!(recorder.elapsed_seconds(), summary.seconds);
        let frames = read_files(&files);
        assert_eq!(indices(&frames), (0..fed).collect::<Vec<_>>());
    }

    #[test]
    fn headers_are_refreshed_while_recording() {
        let dir = TempDir::new("refresh");
        let (mut recorder, mut tap) = TakeRecorder::new(RATE, 256);
        let files = recorder.start(&dir.0).unwrap();
        // Valid from the start, before any audio.
        assert_eq!(read_files(&files).len(), 0);
        feed(&mut tap, 0, 24_000);
        std::thread::sleep(HEADER_REFRESH * 3);
        // Read while the writer still has the files open: the header already counts the half second.
        assert_eq!(indices(&read_files(&files)), (0..24_000).collect::<Vec<_>>());
        assert!((recorder.elapsed_seconds() - 0.5).abs() < 1e-9);
        recorder.stop().unwrap();
    }

    #[test]
    fn a_starved_writer_drops_and_counts_frames_instead_of_blocking() {
        let (mut recorder, mut tap) = TakeRecorder::with_ring_frames(RATE, 1000);
        let (out, dry) = (MemoryFile::new(usize::MAX), MemoryFile::new(usize::MAX));
        begin_in_memory(&mut recorder, &out, &dry);
        // Far faster than real time: the writer, polling every 10 ms, cannot keep a 1000-frame ring from filling.
        let fed = 2000 * 256;
        for k in 0..2000 {
            feed(&mut tap, k * 256, 256);
        }
        let summary = recorder.stop().unwrap();
        assert!(summary.overruns > 0);
        assert_eq!(summary.frames + summary.overruns, fed as u64, "every frame is written or counted");
        assert_eq!(recorder.overruns(), summary.overruns);
        let written = indices(&read_take(out.reader(), dry.reader()));
        assert_eq!(written.len() as u64, summary.frames);
        assert!(written.windows(2).all(|w| w[0] < w[1]), "what is written is in order, without repeats");
    }

    #[test]
    fn an_idle_tap_records_and_counts_nothing() {
        let (recorder, mut tap) = TakeRecorder::with_ring_frames(RATE, 16);
        for k in 0..10 {
            feed(&mut tap, k * 256, 256);
        }
        assert!(!tap.is_recording());
        assert_eq!(recorder.overruns(), 0);
        assert_eq!(recorder.ring.lock().unwrap().slots(), 0);
        assert_eq!(recorder.status(), TakeStatus::Idle);
    }

    #[test]
    fn a_folder_that_cannot_exist_is_an_error_naming_it() {
        let dir = TempDir::new("unwritable");
        let file = dir.0.join("a file");
        std::fs::write(&file, b"not a folder").unwrap();
        let (mut recorder, mut tap) = TakeRecorder::new(RATE, 256);
        for folder in [file.join("takes"), file.clone()] {
            let err = recorder.start(&folder).unwrap_err();
            assert!(matches!(err, TakeError::Folder { .. }), "{err:?}");
            let message = err.to_string();
            assert!(message.starts_with(&format!("{}: cannot record takes", folder.display())), "{message}");
        }
        feed(&mut tap, 0, 256);
        assert!(!tap.is_recording());
        assert_eq!(recorder.status(), TakeStatus::Idle);
        assert!(matches!(recorder.stop(), Err(TakeError::NotRecording)));
        // And the recorder still works.
        let files = recorder.start(&dir.0).unwrap();
        feed(&mut tap, 0, 256);
        assert_eq!(recorder.stop().unwrap().frames, 256);
        assert_eq!(read_files(&files).len(), 256);
    }

    #[test]
    fn a_full_disk_fails_the_take_while_audio_goes_on_and_keeps_what_was_saved() {
        let (mut recorder, mut tap) = TakeRecorder::with_ring_frames(RATE, 4096);
        // Room for about 0.6 s of stereo, so the dry file outlives it.
        let (out, dry) = (MemoryFile::new(230_000), MemoryFile::new(usize::MAX));
        begin_in_memory(&mut recorder, &out, &dry);
        let mut fed = 0;
        let status = loop {
            feed(&mut tap, fed, 480);
            fed += 480;
            std::thread::sleep(Duration::from_millis(10));
            let status = recorder.status();
            if status != TakeStatus::Recording {
                break status;
            }
            assert!(fed < 10 * RATE as usize, "no failure after 10 s of audio");
        };
        let TakeStatus::Failed(message) = status else { panic!("{status:?}") };
        assert!(message.starts_with("mem/out.wav: cannot write the take: no space left"), "{message}");

        // The tap has stopped pushing: the ring neither fills nor counts overruns, and the audio thread goes on.
        assert!(!tap.is_recording());
        for _ in 0..100 {
            feed(&mut tap, fed, 480);
        }
        assert_eq!(recorder.overruns(), 0);

        let err = recorder.stop().unwrap_err();
        assert!(matches!(&err, TakeError::Write { path, .. } if path == Path::new("mem/out.wav")), "{err:?}");
        assert_eq!(recorder.status(), TakeStatus::Idle);
        // The failed file is valid, holding the frames before its last header refresh; the other is complete.
        let out: Vec<f32> = out.reader().into_samples().collect::<Result<_, _>>().unwrap();
        let dry: Vec<f32> = dry.reader().into_samples().collect::<Result<_, _>>().unwrap();
        assert!(out.len() >= 2 * 4800 && out.len().is_multiple_of(2), "{} samples", out.len());
        assert!(dry.len() > out.len() / 2, "the dry file was written on after the last refresh");
        for (i, lr) in out.chunks(2).enumerate() {
            assert_eq!((lr[0], lr[1]), (frame(i).left, frame(i).right), "frame {i}");
        }
        for (i, &d) in dry.iter().enumerate() {
            assert_eq!(d, frame(i).dry, "frame {i}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_device_reports_the_system_error() {
        let (mut recorder, mut tap) = TakeRecorder::new(RATE, 256);
        let files = TakeFiles { out: "/dev/full".into(), dry: "/dev/null".into() };
        let open = |path: &Path| OpenOptions::new().write(true).open(path).unwrap();
        let out = Sink::new(files.out.clone(), open(&files.out), 2, RATE);
        // hound's header is buffered, and the first flush fails on a device that is always full.
        let Err(err) = out else { panic!("/dev/full accepted a header") };
        assert!(err.to_string().starts_with("/dev/full: cannot create the take file: No space left"), "{err}");

        // Past a successful start, the failure comes from the writer thread, as the status.
        struct FullAfterHeader(File, u64);
        impl Write for FullAfterHeader {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.1 < 4096 {
                    self.1 += buf.len() as u64;
                    return Ok(buf.len());
                }
                self.0.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                self.0.flush()
            }
        }
        impl Seek for FullAfterHeader {
            fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
                self.0.seek(pos)
            }
        }
        let out = Sink::new(files.out.clone(), FullAfterHeader(open(&files.out), 0), 2, RATE).unwrap();
        let dry = Sink::new(files.dry.clone(), FullAfterHeader(open(&files.dry), 0), 1, RATE).unwrap();
        recorder.begin(files, out, dry).unwrap();
        for k in 0..100 {
            feed(&mut tap, k * 480, 480);
            std::thread::sleep(Duration::from_millis(1));
        }
        let status = wait_for(&recorder, |s| matches!(s, TakeStatus::Failed(_)));
        let TakeStatus::Failed(message) = status else { unreachable!() };
        assert!(message.starts_with("/dev/full: cannot write the take: No space left on device"), "{message}");
        assert!(recorder.stop().is_err());
    }

    #[test]
    fn a_frame_cut_in_half_by_an_error_is_completed_with_silence() {
        let file = MemoryFile::new(usize::MAX);
        let mut sink = Sink::new("half.wav".into(), file.clone(), 2, RATE).unwrap();
        for sample in [0.25, -0.25, 0.5] {
            sink.write(sample).unwrap();
        }
        sink.finalize_after_error();
        let samples: Vec<f32> = file.reader().into_samples().collect::<Result<_, _>>().unwrap();
        assert_eq!(samples, [0.25, -0.25, 0.5, 0.0]);
    }

    #[test]
    fn the_wav_size_limit_ends_the_take_and_saves_it() {
        let (mut recorder, mut tap) = TakeRecorder::with_ring_frames(RATE, 8192);
        recorder.max_frames = 1000;
        let (out, dry) = (MemoryFile::new(usize::MAX), MemoryFile::new(usize::MAX));
        begin_in_memory(&mut recorder, &out, &dry);
        feed(&mut tap, 0, 3000);
        assert_eq!(wait_for(&recorder, |s| *s != TakeStatus::Recording), TakeStatus::LimitReached);
        assert!(!tap.is_recording());
        let summary = recorder.stop().unwrap();
        assert!(summary.limit_reached);
        assert_eq!(summary.frames, 1000);
        assert_eq!(indices(&read_take(out.reader(), dry.reader())), (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_new_take_never_starts_with_frames_from_an_old_one() {
        let dir = TempDir::new("fresh");
        let (mut recorder, mut tap) = TakeRecorder::with_ring_frames(RATE, 100_000);
        // A take that fails at once leaves what the tap had pushed in the ring.
        let (out, dry) = (MemoryFile::new(100), MemoryFile::new(usize::MAX));
        begin_in_memory(&mut recorder, &out, &dry);
        feed(&mut tap, 0, 50_000);
        wait_for(&recorder, |s| matches!(s, TakeStatus::Failed(_)));
        // Started without stop(): the failed take is collected on the way.
        let first = recorder.start(&dir.0).unwrap();
        feed(&mut tap, 50_000, 1000);
        let summary = recorder.stop().unwrap();
        assert_eq!(summary.frames, 1000);
        assert_eq!(indices(&read_files(&first)), (50_000..51_000).collect::<Vec<_>>());
        // Idle blocks between takes are not recorded either.
        feed(&mut tap, 51_000, 1000);
        let second = recorder.start(&dir.0).unwrap();
        assert_ne!(first, second);
        feed(&mut tap, 52_000, 500);
        recorder.stop().unwrap();
        assert_eq!(indices(&read_files(&second)), (52_000..52_500).collect::<Vec<_>>());
        assert_eq!(recorder.overruns(), 0);
    }

    #[test]
    fn starting_twice_and_stopping_twice_are_errors_not_accidents() {
        let dir = TempDir::new("twice");
        let (mut recorder, mut tap) = TakeRecorder::new(RATE, 256);
        assert!(matches!(recorder.stop(), Err(TakeError::NotRecording)));
        let files = recorder.start(&dir.0).unwrap();
        feed(&mut tap, 0, 100);
        let err = recorder.start(&dir.0).unwrap_err();
        assert!(matches!(&err, TakeError::AlreadyRecording { path } if *path == files.out), "{err:?}");
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 2, "the refused start created no files");
        feed(&mut tap, 100, 100);
        assert_eq!(recorder.stop().unwrap().frames, 200);
        assert!(matches!(recorder.stop(), Err(TakeError::NotRecording)));
        assert_eq!(indices(&read_files(&files)), (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn dropping_the_recorder_finalizes_the_take() {
        let dir = TempDir::new("drop");
        let (mut recorder, mut tap) = TakeRecorder::new(RATE, 256);
        let files = recorder.start(&dir.0).unwrap();
        feed(&mut tap, 0, 1234);
        drop(recorder);
        assert!(!tap.is_recording());
        assert_eq!(indices(&read_files(&files)), (0..1234).collect::<Vec<_>>());
    }

    #[test]
    fn a_stop_while_the_audio_thread_pushes_keeps_every_frame_pushed_before_it() {
        let dir = TempDir::new("racing");
        for round in 0..20 {
            let (mut recorder, mut tap) = TakeRecorder::new(RATE, 64);
            let files = recorder.start(&dir.0).unwrap();
            let running = Arc::new(AtomicBool::new(true));
            let pushed = Arc::new(AtomicU64::new(0));
            let audio = {
                let (running, pushed) = (Arc::clone(&running), Arc::clone(&pushed));
                std::thread::spawn(move || {
                    // About ten times real time: the ring never fills, so no frame may be missing.
                    let mut fed = 0;
                    while running.load(Ordering::Relaxed) {
                        feed(&mut tap, fed, 64);
                        fed += 64;
                        pushed.store(fed as u64, Ordering::Release);
                        std::thread::sleep(Duration::from_micros(100));
                    }
                })
            };
            std::thread::sleep(Duration::from_millis(1 + round % 7));
            let before_stop = pushed.load(Ordering::Acquire);
            let summary = recorder.stop().unwrap();
            running.store(false, Ordering::Relaxed);
            audio.join().unwrap();
            // Every block pushed before the stop is there, in order from the first frame, whole, without gaps.
            let written = indices(&read_files(&files));
            assert_eq!(written.len() as u64, summary.frames);
            assert_eq!(written, (0..written.len()).collect::<Vec<_>>(), "round {round}");
            assert!(summary.frames >= before_stop && summary.frames % 64 == 0, "round {round}: {summary:?}");
            assert_eq!(summary.overruns, 0);
        }
    }
}
