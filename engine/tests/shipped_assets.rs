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

#[test]
fn every_shipped_model_matches_its_manifest() {
    let models = files(&assets().join("models"), ".nam");
    assert!(models.len() >= 2, "the default amp models are missing from assets/models: {models:?}");
    for model in &models {
        let result = eval::evaluate(model).unwrap_or_else(|e| panic!("{e}"));
        for s in &result.splits {
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
            // Every model has a target on its main test split; other splits (a modulation model's reduced depth)
            // may only be measured. A miss the manifest records (the best its recipe reached, shipped as such) is
            // held to the recorded error above, and reported.
            assert!(s.split != "test" || s.target.is_some(), "{}: manifest has no target", model.display());
            match s.target {
                Some(target) if s.target_missed => {
                    println!("  {} {}: below its target {target} (recorded in the manifest)", model.display(), s.split)
                }
                Some(target) => {
                    assert!(
                        s.esr <= target,
                        "{} {}: ESR {} misses its target {target}",
                        model.display(),
                        s.split,
                        s.esr
                    )
                }
                None => {}
            }
        }
    }
}

#[test]
fn no_shipped_file_lacks_a_manifest() {
    for (dir, suffix) in [("models", ".nam"), ("ir", ".wav")] {
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
