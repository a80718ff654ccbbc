//! The real window under a virtual X server: `neuralboard gui --screenshot DIR` opens the board with the factory
//! preset (offline, playing the demo loop so meters and tuner move), writes the main window and the settings page
//! to PNG and quits. The test checks both images are complete frames with content, and keeps them in
//! `target/screenshots/` to look at.
//!
//! Needs `xvfb-run` (Debian packages xvfb and xauth, which `cargo xtask test` installs). Without it the test says
//! so and passes, unless `CI` is set.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_neuralboard"))
}

/// Width, height and the number of distinct colours of a PNG.
fn inspect(path: &Path) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let pixels = &buffer[..info.buffer_size()];
    let step = info.color_type.samples();
    let mut colours: Vec<u32> =
        pixels.chunks(step).map(|p| u32::from_le_bytes([p[0], p[1], p[2], *p.get(3).unwrap_or(&255)])).collect();
    colours.sort_unstable();
    colours.dedup();
    (info.width, info.height, colours.len())
}

#[test]
fn the_main_window_and_settings_page_render_under_xvfb() {
    if Command::new("xvfb-run").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        assert!(std::env::var_os("CI").is_none(), "xvfb-run is not installed (Debian: apt-get install xvfb xauth)");
        eprintln!("SKIPPED: xvfb-run is not installed (Debian: apt-get install xvfb xauth)");
        return;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../screenshots");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gui-home");
    let _ = std::fs::remove_dir_all(&home);

    let started = Instant::now();
    let output = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1920x1080x24", "--"])
        .arg(bin())
        .args(["gui", "--offline", "--screenshot"])
        .arg(&out)
        .env("NEURALBOARD_HOME", &home)
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the GUI failed under Xvfb: {log}");
    assert!(started.elapsed() < Duration::from_secs(120), "screenshot mode took {:?}", started.elapsed());

    for name in ["main.png", "settings.png"] {
        let path = out.join(name);
        assert!(path.is_file(), "{name} was not written: {log}");
        let (width, height, colours) = inspect(&path);
        assert_eq!((width, height), (1280, 720), "{name}: the window's size");
        // A blank or half-drawn frame has a handful of colours; the board with text, knobs and meters has
        // thousands (anti-aliasing).
        assert!(colours > 500, "{name}: only {colours} colours, the frame looks empty");
    }
    eprintln!("screenshots in {}", out.canonicalize().unwrap().display());
}
