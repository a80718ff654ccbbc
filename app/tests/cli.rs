//! The `neuralboard` command line, run as a player would: factory presets render audibly processed audio, and
//! every kind of bad file gives a one-line error naming the file and a non-zero exit, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use neuralboard_engine::preset::Preset;

const SR: u32 = 48_000;
/// Notes and gaps of the test signal, in seconds: (start, end) of each note.
const NOTES: [(f32, f32); 3] = [(0.2, 1.0), (1.8, 2.6), (3.4, 4.2)];
const LENGTH_S: f32 = 5.0;
/// Hum and hiss between notes, peak level: what a gate should remove.
const NOISE_DB: f32 = -75.0;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_neuralboard"))
}

fn presets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../presets")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neuralboard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Plucked-string-like notes (a few decaying harmonics) at about -12 dBFS, with low noise everywhere.
fn guitar_like() -> Vec<f32> {
    let noise_amplitude = 10f32.powf(NOISE_DB / 20.0);
    let mut seed = 0x2545_f491_u32;
    (0..(LENGTH_S * SR as f32) as usize)
        .map(|i| {
            let t = i as f32 / SR as f32;
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed as f32 / u32::MAX as f32 * 2.0 - 1.0) * noise_amplitude;
            let note = NOTES
                .iter()
                .filter(|(start, end)| t >= *start && t < *end)
                .map(|(start, _)| {
                    let age = t - start;
                    let f = 110.0;
                    let tone: f32 =
                        (1..=4).map(|h| (std::f32::consts::TAU * f * h as f32 * age).sin() / h as f32).sum::<f32>();
                    0.25 * tone * (-age * 1.5).exp()
                })
                .sum::<f32>();
            note + noise
        })
        .collect()
}

fn write_wav(path: &Path, samples: &[f32], spec: hound::WavSpec) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Float, _) => w.write_sample(s).unwrap(),
            (hound::SampleFormat::Int, 16) => w.write_sample((s * 32767.0) as i16).unwrap(),
            (hound::SampleFormat::Int, bits) => {
                w.write_sample((f64::from(s) * ((1i64 << (bits - 1)) - 1) as f64) as i32).unwrap()
            }
        }
    }
    w.finalize().unwrap();
}

fn float_spec(channels: u16) -> hound::WavSpec {
    hound::WavSpec { channels, sample_rate: SR, bits_per_sample: 32, sample_format: hound::SampleFormat::Float }
}

fn read_wav(path: &Path) -> (hound::WavSpec, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    (spec, r.samples::<f32>().map(Result::unwrap).collect())
}

fn rms_db(x: &[f32]) -> f32 {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    10.0 * ms.max(1e-20).log10()
}

fn seconds(x: &[f32], from: f32, to: f32) -> &[f32] {
    &x[(from * SR as f32) as usize..(to * SR as f32) as usize]
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run neuralboard");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    out
}

/// Expected level change through a preset while the gate is open: global levels plus engaged Volume pedals.
fn expected_gain_db(preset: &Preset) -> f32 {
    let pedals: f32 = preset
        .chain
        .iter()
        .filter(|s| s.kind == "gain" && !s.bypass)
        .map(|s| s.params.get("gain_db").copied().unwrap_or(0.0))
        .sum();
    preset.input_gain_db + preset.output_level_db + pedals
}

#[test]
fn every_factory_preset_gates_the_noise_between_notes_and_applies_its_levels() {
    let input = guitar_like();
    let in_path = scratch("guitar.wav");
    write_wav(&in_path, &input, float_spec(1));
    let mut presets: Vec<_> = std::fs::read_dir(presets_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .collect();
    presets.sort();
    assert!(presets.len() >= 2, "at least two factory presets");

    for preset_path in presets {
        let preset = Preset::load(&preset_path).unwrap();
        assert!(preset.warnings.is_empty(), "{}: {:?}", preset_path.display(), preset.warnings);
        let out_path = scratch(&format!("{}.wav", preset.preset.name));
        let out = run(bin().arg("render").arg("--preset").arg(&preset_path).arg(&in_path).arg(&out_path));
        assert!(out.status.success(), "{}: {}", preset_path.display(), String::from_utf8_lossy(&out.stderr));

        // A reverb makes the chain stereo; the levels below are the left channel's.
        let reverb = preset.preset.chain.iter().any(|s| s.kind == "reverb" && !s.bypass);
        let (spec, output) = read_wav(&out_path);
        let channels = if reverb { 2 } else { 1 };
        assert_eq!((spec.sample_rate, spec.bits_per_sample, spec.channels), (SR, 32, channels));
        let output: Vec<f32> = output.iter().step_by(channels as usize).copied().collect();
        assert_eq!(output.len(), input.len(), "same length as the input");
        let name = &preset.preset.name;

        // Between notes (after the gate's hold and release), the noise is gone. A reverb rings on into the gap, as
        // it should: there the tail must be dying away, and the noise alone, with no notes, must be gone.
        let gap_in = rms_db(seconds(&input, 1.5, 1.75));
        let gap_out = rms_db(seconds(&output, 1.5, 1.75));
        if reverb {
            let ringing = rms_db(seconds(&output, 1.0, 1.25));
            assert!(gap_out < ringing - 6.0, "{name}: the tail {ringing:.1} dB, then {gap_out:.1} dB");
            let noise: Vec<f32> =
                input
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        if NOTES.iter().any(|(a, b)| (*a..*b + 0.5).contains(&(i as f32 / SR as f32))) {
                            0.0
                        } else {
                            x
                        }
                    })
                    .collect();
            let (noise_in, noise_out) = (scratch("noise.wav"), scratch(&format!("{name}-noise.wav")));
            write_wav(&noise_in, &noise, float_spec(1));
            let out = run(bin().arg("render").arg("--preset").arg(&preset_path).arg(&noise_in).arg(&noise_out));
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let (_, hiss) = read_wav(&noise_out);
            let hiss: Vec<f32> = hiss.iter().step_by(channels as usize).copied().collect();
            let hiss_out = rms_db(seconds(&hiss, 1.5, 1.75));
            assert!(hiss_out < gap_in - 30.0, "{name}: noise alone {gap_in:.1} dB in, {hiss_out:.1} dB out");
        } else {
            assert!(gap_out < gap_in - 30.0, "{name}: gap {gap_in:.1} dB in, {gap_out:.1} dB out");
        }

        // While a note rings, the gate is open and the preset's levels apply: exactly, for chains of level pedals;
        // for chains with an amp and cabinet, at a level a player can use, under the safety limiter's ceiling.
        let note_in = rms_db(seconds(&input, 1.9, 2.4));
        let note_out = rms_db(seconds(&output, 1.9, 2.4));
        let peak_out = output.iter().fold(0.0f32, |m, y| m.max(y.abs()));
        assert!(20.0 * peak_out.log10() <= -0.29, "{name}: peak {peak_out} above the limiter's ceiling");
        if preset.preset.chain.iter().all(|s| matches!(s.kind.as_str(), "gate" | "gain")) {
            let expected = expected_gain_db(&preset.preset);
            assert!(
                (note_out - note_in - expected).abs() < 0.5,
                "{name}: note {note_in:.1} dB in, {note_out:.1} dB out, expected {expected:+.1} dB"
            );
        } else {
            assert!((-36.0..-6.0).contains(&note_out), "{name}: note {note_in:.1} dB in, {note_out:.1} dB out");
        }
    }
}

#[test]
fn the_opto_teacher_writes_the_envelopes_whose_larger_it_applies() {
    let input_path = scratch("teacher-in.wav");
    let (output, envelopes) = (scratch("teacher-out.wav"), scratch("teacher-envelopes.wav"));
    let input = guitar_like();
    write_wav(&input_path, &input, float_spec(1));
    let out = run(bin().args(["teacher", "opto", "--param", "peak_reduction=80", "--envelopes-out"]).args([
        &envelopes,
        &input_path,
        &output,
    ]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ((spec, y), (env_spec, env)) = (read_wav(&output), read_wav(&envelopes));
    assert_eq!((spec.channels, env_spec.channels), (1, 2));
    assert_eq!((y.len(), env.len()), (input.len(), 2 * input.len()));
    let mut compressed = 0;
    for ((x, y), e) in input.iter().zip(&y).zip(env.chunks(2)) {
        let reduction_db = e[0].max(e[1]);
        assert!((y - x * 10f32.powf(-reduction_db / 20.0)).abs() <= 1e-6);
        compressed += usize::from(reduction_db > 1.0);
    }
    assert!(compressed > input.len() / 10, "only {compressed} samples compressed by more than 1 dB");

    // Only the opto has envelopes: another kind says so and writes nothing.
    std::fs::remove_file(&envelopes).unwrap();
    let out = run(bin().args(["teacher", "amp", "--envelopes-out"]).args([&envelopes, &input_path, &output]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--envelopes-out is only for opto"));
    assert!(!envelopes.exists());
}

#[test]
fn integer_and_stereo_wavs_render_to_float_of_the_same_length() {
    let input: Vec<f32> = guitar_like().into_iter().take(SR as usize).collect();
    for (bits, channels) in [(16u16, 1u16), (24, 2), (32, 1)] {
        let spec = hound::WavSpec {
            channels,
            sample_rate: 44_100,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let interleaved: Vec<f32> = input.iter().flat_map(|&s| std::iter::repeat_n(s, channels as usize)).collect();
        let in_path = scratch(&format!("int{bits}x{channels}.wav"));
        write_wav(&in_path, &interleaved, spec);
        let out_path = scratch(&format!("int{bits}x{channels}-out.wav"));
        let out = run(bin().args(["render", "--block", "64"]).arg(&in_path).arg(&out_path));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let (out_spec, output) = read_wav(&out_path);
        assert_eq!((out_spec.sample_rate, out_spec.channels), (44_100, 1));
        assert_eq!(output.len(), input.len());
        // Without a preset the board is transparent (the limiter does not act below its ceiling).
        let worst = input.iter().zip(&output).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 2e-4, "{bits}-bit x{channels}: differs by {worst}");
    }
}

/// Runs `render` expecting failure; returns the single stderr line.
fn render_error(args: &[&std::ffi::OsStr]) -> String {
    let out = run(bin().arg("render").args(args));
    assert!(!out.status.success(), "expected failure for {args:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn bad_presets_fail_with_one_line_naming_the_file() {
    let in_path = scratch("ok.wav");
    write_wav(&in_path, &guitar_like()[..4800], float_spec(1));
    let out_path = scratch("never.wav");
    let cases = [
        ("truncated.ron", "(version: 1, name: \"x\", chain: [(kind: \"gate\""),
        ("garbage.ron", "\u{7f}ELF this is not a preset at all"),
        ("wrong-type.ron", "(version: 1, name: 42)"),
        ("nan.ron", "(version: 1, name: \"x\", chain: [(kind: \"gate\", params: {\"threshold_db\": NaN})])"),
        ("range.ron", "(version: 1, name: \"x\", chain: [(kind: \"gain\", params: {\"gain_db\": 99.0})])"),
        ("empty.ron", ""),
    ];
    for (name, text) in cases {
        let preset = scratch(name);
        std::fs::write(&preset, text).unwrap();
        let line = render_error(&["--preset".as_ref(), preset.as_os_str(), in_path.as_os_str(), out_path.as_os_str()]);
        assert!(line.contains(name), "{name}: {line}");
    }
    assert!(!out_path.exists(), "no output written when the preset is bad");
    let line =
        render_error(&["--preset".as_ref(), "no/such/preset.ron".as_ref(), in_path.as_os_str(), out_path.as_os_str()]);
    assert!(line.contains("no/such/preset.ron"), "{line}");
}

/// A WAV header with the given fields and `data_bytes` of zeros.
fn raw_wav(channels: u16, rate: u32, bits: u16, data_bytes: u32) -> Vec<u8> {
    let block_align = channels.saturating_mul(bits / 8);
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    v.extend_from_slice(&block_align.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_bytes.to_le_bytes());
    v.extend(std::iter::repeat_n(0u8, data_bytes as usize));
    v
}

#[test]
fn bad_wav_files_fail_with_one_line_naming_the_file() {
    let mut truncated = raw_wav(1, 48_000, 16, 4800);
    truncated.truncate(44 + 1000);
    let cases: [(&str, Vec<u8>); 6] = [
        ("empty.wav", raw_wav(1, 48_000, 16, 0)),
        ("zero-bytes.wav", Vec::new()),
        ("not-a-wav.wav", b"ID3\x04 this is an mp3, honest".to_vec()),
        ("zero-channels.wav", raw_wav(0, 48_000, 16, 100)),
        ("absurd-rate.wav", raw_wav(1, 3, 16, 100)),
        ("truncated.wav", truncated),
    ];
    let out_path = scratch("never.wav");
    for (name, bytes) in cases {
        let path = scratch(name);
        std::fs::write(&path, bytes).unwrap();
        let line = render_error(&[path.as_os_str(), out_path.as_os_str()]);
        assert!(line.contains(name), "{name}: {line}");
    }
    assert!(!out_path.exists(), "no half-written output left behind");
    let line = render_error(&["missing-input.wav".as_ref(), out_path.as_os_str()]);
    assert!(line.contains("missing-input.wav"), "{line}");
}

#[test]
fn an_unwritable_output_is_reported_and_nothing_is_left_behind() {
    let in_path = scratch("short.wav");
    write_wav(&in_path, &guitar_like()[..4800], float_spec(1));
    let line = render_error(&[in_path.as_os_str(), "/nonexistent-dir/out.wav".as_ref()]);
    assert!(line.contains("/nonexistent-dir/out.wav"), "{line}");
}

#[test]
fn an_unknown_pedal_kind_renders_the_rest_of_the_chain_with_a_warning() {
    let in_path = scratch("unknown-kind-in.wav");
    let input = guitar_like();
    write_wav(&in_path, &input, float_spec(1));
    let preset = scratch("unknown-kind.ron");
    std::fs::write(
        &preset,
        "(version: 1, name: \"x\", chain: [(kind: \"time-machine\"), (kind: \"gain\", params: {\"gain_db\": -6.0})])",
    )
    .unwrap();
    let out_path = scratch("unknown-kind-out.wav");
    let out = run(bin().arg("render").arg("--preset").arg(&preset).arg(&in_path).arg(&out_path));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("time-machine") && stderr.contains("warning"), "{stderr}");
    let (_, output) = read_wav(&out_path);
    let change = rms_db(seconds(&output, 0.3, 0.9)) - rms_db(seconds(&input, 0.3, 0.9));
    assert!((change + 6.0).abs() < 0.2, "the Volume pedal still applies: {change:.2} dB");
}

/// Without an ALSA sequencer (containers, CI) the MIDI commands say so plainly instead of failing obscurely; where
/// there is one, listing works and the monitor runs for the time asked.
#[test]
fn midi_commands_say_plainly_when_midi_is_unavailable() {
    let home = scratch("midi-home");
    let ports = bin().args(["midi", "ports"]).env("NEURALBOARD_HOME", &home).output().expect("neuralboard runs");
    let stderr = String::from_utf8_lossy(&ports.stderr).trim_end().to_owned();
    let no_sequencer = cfg!(target_os = "linux") && !Path::new("/dev/snd/seq").exists();
    if no_sequencer {
        assert!(!ports.status.success());
        assert_eq!(stderr.lines().count(), 1, "one line, no ALSA library noise: {stderr}");
        assert!(stderr.starts_with("neuralboard: error: MIDI unavailable: no ALSA sequencer"), "{stderr}");
    } else {
        assert!(ports.status.success(), "{stderr}");
    }

    let started = std::time::Instant::now();
    let monitor = run(bin().args(["midi", "monitor", "--seconds", "0.5"]).env("NEURALBOARD_HOME", &home));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "the monitor stops when asked");
    assert!(monitor.status.success(), "{}", String::from_utf8_lossy(&monitor.stderr));
    let stdout = String::from_utf8_lossy(&monitor.stdout);
    assert!(stdout.contains("message(s)"), "a summary at the end: {stdout}");
    if no_sequencer {
        let stderr = String::from_utf8_lossy(&monitor.stderr);
        assert!(stderr.contains("MIDI unavailable"), "{stderr}");
    }
}

/// `--version`, and `--help` for every subcommand: each says what it does (the first line under `Usage`) and exits 0.
#[test]
fn every_subcommand_explains_itself() {
    let version = run(bin().arg("--version"));
    assert!(version.status.success());
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("neuralboard {}", env!("CARGO_PKG_VERSION")));
    let subcommands: &[&[&str]] = &[
        &[],
        &["gui"],
        &["render"],
        &["bench"],
        &["corpus"],
        &["teacher"],
        &["cab-ir"],
        &["eval"],
        &["play"],
        &["paths"],
        &["midi"],
        &["midi", "ports"],
        &["midi", "monitor"],
    ];
    for subcommand in subcommands {
        let help = run(bin().args(*subcommand).arg("--help"));
        let stdout = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "{subcommand:?} --help: {}", String::from_utf8_lossy(&help.stderr));
        let about = stdout.lines().next().unwrap_or_default();
        assert!(!about.starts_with("Usage") && about.len() > 10, "{subcommand:?} --help says what it does: {stdout}");
        assert!(stdout.contains("Usage: neuralboard"), "{stdout}");
    }
}

/// The first start copies the factory presets into the player's folder; later starts neither overwrite an edited
/// copy nor bring back a deleted one. `play` starts the board's session even where no audio device can be opened.
#[test]
fn the_first_start_gives_the_player_the_factory_presets_once() {
    let home = scratch("first-start-home");
    let _ = std::fs::remove_dir_all(&home);
    let start = || run(bin().args(["play", "--host", "no-such-host", "--seconds", "0"]).env("NEURALBOARD_HOME", &home));
    let user = home.join("data/presets");
    let factory: Vec<PathBuf> = std::fs::read_dir(presets_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|x| x == "ron"))
        .collect();
    assert!(factory.len() >= 5);

    let first = start();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains(&format!("copied {} factory preset(s)", factory.len())), "{stderr}");
    for preset in &factory {
        let copy = user.join(preset.file_name().unwrap());
        assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(preset).unwrap(), "{}", copy.display());
    }

    let edited = user.join("clean-practice.ron");
    let deleted = user.join("crunch-rhythm.ron");
    std::fs::write(&edited, "// mine\n").unwrap();
    std::fs::remove_file(&deleted).unwrap();
    let again = start();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!stderr.contains("copied"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&edited).unwrap(), "// mine\n", "an edited preset is never overwritten");
    assert!(!deleted.exists(), "a deleted preset is not brought back");
    let _ = std::fs::remove_dir_all(&home);
}

/// `bench --isa` runs the kernels of the instruction set asked for (the portable ones run on any CPU), says which
/// ran, and refuses one this CPU or build does not run, naming those it does.
#[test]
fn bench_runs_the_kernels_asked_for() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/models/amp/clean-lstm.nam");
    let bench = |isa: &str| run(bin().args(["bench", "--seconds", "0.2", "--isa", isa, "--nam"]).arg(&model));
    let portable = bench("baseline");
    let stdout = String::from_utf8_lossy(&portable.stdout);
    assert!(portable.status.success(), "{}", String::from_utf8_lossy(&portable.stderr));
    assert!(stdout.contains("baseline kernels") && stdout.contains("real-time factor"), "{stdout}");
    let unknown = bench("avx9");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success() && stderr.contains("--isa avx9") && stderr.contains("baseline"), "{stderr}");
}

/// `bench --shape` measures the reference trainer's standard shapes without a file: the loader builds them with
/// exactly the weight counts those presets have (842 nano, 3026 feather, 13802 standard).
#[test]
fn bench_measures_the_standard_shapes() {
    for (shape, weights) in [("nano", "842 weights"), ("feather", "3026 weights"), ("standard", "13802 weights")] {
        let out = run(bin().args(["bench", "--seconds", "0.1", "--shape", shape]));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shape}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(weights) && stdout.contains("synthetic weights"), "{stdout}");
    }
    let lstm = run(bin().args(["bench", "--seconds", "0.1", "--shape", "lstm-16"]));
    assert!(String::from_utf8_lossy(&lstm.stdout).contains("LSTM (1201 weights"), "{lstm:?}");
    let unknown = run(bin().args(["bench", "--shape", "huge"]));
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("feather"));
}
