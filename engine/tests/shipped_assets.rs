//! What the project ships under `assets/` is what its recipes make: every model has a manifest, and regenerating
//! the model's test split here gives the ESR the training recorded (within 5 %) and under the target it shipped
//! for; every cabinet IR is exactly what `neuralboard cab-ir` renders today; every factory preset builds every
//! pedal it names.

use std::path::{Path, PathBuf};

use neuralboard_engine::{cabsim, eval, paths, preset};

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets")
}

/// Files under `dir` (recursively) whose name ends with `suffix`.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// One held-out split of a shipped model against its manifest: within 5 % of the recorded ESR, and under its target
/// unless the manifest records the miss (the best its recipe reached, shipped as such: held to the recorded error,
/// and reported).
fn check_split(model: &Path, s: &eval::SplitEvaluation) {
    println!(
        "{} {}: ESR {:.5} here, {:.5} in the manifest ({:+.2} %)",
        model.display(),
        s.split,
        s.esr,
        s.recorded_esr,
        100.0 * s.relative_difference()
    );
    assert!(
        s.relative_difference().abs() <= 0.05,
        "{} {}: ESR {} is not within 5 % of the manifest's {}",
        model.display(),
        s.split,
        s.esr,
        s.recorded_esr
    );
    // Every model has a target on its main test split; other splits (a modulation model's reduced depth) may only
    // be measured.
    assert!(s.split != "test" || s.target.is_some(), "{}: manifest has no target", model.display());
    match s.target {
        Some(target) if s.target_missed => {
            println!("  {} {}: below its target {target} (recorded in the manifest)", model.display(), s.split)
        }
        Some(target) => {
            assert!(s.esr <= target, "{} {}: ESR {} misses its target {target}", model.display(), s.split, s.esr)
        }
        None => {}
    }
}

#[test]
fn every_shipped_model_matches_its_manifest() {
    let models = files(&assets().join("models"), ".nam");
    assert!(models.len() >= 2, "the default amp models are missing from assets/models: {models:?}");
    for model in &models {
        let result = eval::evaluate(model).unwrap_or_else(|e| panic!("{e}"));
        for s in &result.splits {
            check_split(model, s);
        }
    }
}

/// The compressor's held-out splits, regenerated and run from the manifest's initial state, give the ESRs it
/// records (its dynamics against the teacher are printed by `neuralboard eval`, not held to a number here).
#[test]
fn every_shipped_compressor_matches_its_manifest() {
    let models = files(&assets().join("models"), ".s4d.json");
    assert!(!models.is_empty(), "the compressor model is missing from assets/models");
    for model in &models {
        let manifest_path = eval::manifest_path_for(model);
        let text = std::fs::read_to_string(&manifest_path).unwrap();
        let manifest = eval::compressor::CompressorManifest::parse(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", manifest_path.display()));
        let file = eval::compressor::load_model(model, &manifest).unwrap_or_else(|e| panic!("{e}"));
        println!("{}: from the {:?} state", model.display(), manifest.initial_state);
        for s in eval::compressor::evaluate_splits(&manifest, &file).unwrap() {
            check_split(model, &s);
        }
    }
}

#[test]
fn no_shipped_file_lacks_a_manifest() {
    for (dir, suffix) in [("models", ".nam"), ("models", ".s4d.json"), ("models", ".reverb.json"), ("ir", ".wav")] {
        for file in files(&assets().join(dir), suffix) {
            let manifest = eval::manifest_path_for(&file);
            let text = std::fs::read_to_string(&manifest)
                .unwrap_or_else(|e| panic!("{} has no manifest ({}): {e}", file.display(), manifest.display()));
            let value: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
            assert_eq!(
                value["file"].as_str(),
                file.file_name().and_then(|n| n.to_str()),
                "{}: manifest names another file",
                manifest.display()
            );
        }
    }
    // And no manifest is left without its file.
    for manifest in files(&assets(), ".manifest.json") {
        let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        let file = manifest.with_file_name(value["file"].as_str().expect("manifest names its file"));
        assert!(file.is_file(), "{}: {} is missing", manifest.display(), file.display());
    }
}

#[test]
fn shipped_cabinet_irs_are_what_the_generator_renders() {
    let irs = files(&assets().join("ir"), ".wav");
    assert_eq!(irs.len(), cabsim::CABINETS.len(), "one IR per modelled cabinet: {irs:?}");
    for path in irs {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let spec = cabsim::find(&name).unwrap_or_else(|| panic!("{}: no cabinet model called {name}", path.display()));
        let mut reader = hound::WavReader::open(&path).unwrap();
        let rate = reader.spec().sample_rate;
        let shipped: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
        let rendered = cabsim::render(spec, rate as f32);
        let worst = shipped.iter().zip(&rendered).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(
            shipped.len() == rendered.len() && worst == 0.0,
            "{}: differs from `neuralboard cab-ir {name}` ({} vs {} samples, largest difference {worst}); re-render it",
            path.display(),
            shipped.len(),
            rendered.len()
        );
    }
}

#[test]
fn factory_presets_build_every_pedal() {
    let presets = files(&paths::factory_presets(), ".ron");
    assert!(presets.len() >= 3, "{presets:?}");
    let mut uses_models = false;
    for path in presets {
        let loaded = preset::Preset::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(loaded.warnings.is_empty(), "{}: {:?}", path.display(), loaded.warnings);
        let (_engine, mut controller) = neuralboard_engine::Engine::new(Default::default());
        controller.load_preset(&loaded.preset, loaded.base_dir()).unwrap();
        for slot in controller.slots() {
            assert_eq!(
                slot.status,
                neuralboard_engine::SlotStatus::Ready,
                "{}: {} did not build",
                path.display(),
                slot.kind()
            );
            uses_models |= slot.model.as_deref().is_some_and(|m| m.starts_with(preset::FACTORY_PREFIX));
        }
    }
    assert!(uses_models, "the factory presets use the shipped models");
}

/// The reverb's decoder in the engine gives what the training framework computed for the check file's latent
/// points (float64 there, from the same float32 weights; the engine clamps at the floor).
#[test]
fn the_shipped_reverb_decoder_matches_its_check_file() {
    use neuralboard_engine::formats::reverb;
    use neuralboard_engine::nn::decoder::Decoder;
    let dir = assets().join("models/reverb");
    let file = reverb::load(&dir.join("rooms.reverb.json")).unwrap_or_else(|e| panic!("{e}"));
    let check: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("rooms.check.json")).unwrap()).unwrap();
    let mut decoder = Decoder::new(&file);
    let points = check["points"].as_array().expect("check points");
    assert!(points.len() >= 3);
    for point in points {
        let z: Vec<f32> = point["z"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let got = decoder.decode(&z).to_vec();
        let want: Vec<f64> = point["d_db"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
            .collect();
        assert_eq!(got.len(), want.len());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (f64::from(*g) - w.max(f64::from(file.db_floor))).abs())
            .fold(0.0f64, f64::max);
        println!("reverb check point {z:?}: worst difference {worst:.2e} dB");
        assert!(worst < 5e-3, "{z:?}: the decoder is {worst} dB off the training framework");
    }
}

/// The shipped reverb rebuilds the held-out rooms of its manifest, decoded and synthesised by the engine, with the
/// decay times of issue #7 by the median in every octave band (T30 within 10 %, EDT within 15 %).
#[test]
fn the_shipped_reverb_rebuilds_held_out_rooms() {
    let model = assets().join("models/reverb/rooms.reverb.json");
    let result = eval::reverb::evaluate(&model).unwrap_or_else(|e| panic!("{e}"));
    assert!(result.test_irs >= 100, "{} held-out responses", result.test_irs);
    for (what, bands) in [("T30", &result.t30), ("EDT", &result.edt)] {
        for b in bands {
            println!("{what} {} Hz: median {:.3}, mean {:.3}, within {:.2}", b.band_hz, b.median, b.mean, b.within);
        }
    }
    assert!(result.missed().is_empty(), "medians over their targets: {:?}", result.missed());
    for t in &result.traversals {
        assert!(t.max_step_db < 0.2 * t.ends_db, "a small move makes a small change: {t:?}");
    }
}
