//! Presets: the chain (pedal kind, model file, parameter values, bypass, mix), the global levels and the preset's own
//! MIDI mappings, as RON.
//!
//! Files are human-editable and may be hand-broken or hostile, so loading checks everything and says where the
//! problem is: syntax and type errors with line and column, semantic errors with the path inside the preset
//! (`chain[1].params.threshold_db`). A pedal kind this version does not know, or a parameter it does not know, is
//! a warning: the rest loads and the unknown parts are kept, so saving again loses nothing. Saves are atomic.
//!
//! ```ron
//! (
//!     version: 1,
//!     name: "Clean practice",
//!     input_gain_db: 0.0,
//!     output_level_db: -6.0,
//!     chain: [
//!         (kind: "gate", params: {"threshold_db": -62.0, "release_ms": 120.0}),
//!         (kind: "gain", bypass: true, params: {"gain_db": 6.0}),
//!     ],
//!     midi: (mappings: [(source: (channel: Some(0), kind: Cc(80)), target: Bypass(slot: 1))]),
//! )
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chain::MAX_SLOTS;
use crate::effects;
use crate::engine::GLOBAL_GAIN_RANGE_DB;
use crate::midi::{MidiMap, Target};
use crate::ronfile;

/// The preset format version this build reads and writes.
pub const PRESET_VERSION: u32 = 1;

/// Presets are small; anything larger is not one, and reading it whole could exhaust memory.
pub const MAX_PRESET_BYTES: u64 = 1 << 20;

/// File extension of presets.
pub const EXTENSION: &str = "ron";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub version: u32,
    pub name: String,
    #[serde(default)]
    pub input_gain_db: f32,
    #[serde(default)]
    pub output_level_db: f32,
    #[serde(default)]
    pub chain: Vec<PresetSlot>,
    /// MIDI mappings for this preset alone, on top of the global ones in the settings (see
    /// [`MidiMap::merged`]). Left out of the file when there are none, so presets without MIDI read as before.
    #[serde(default, skip_serializing_if = "MidiMap::is_empty")]
    pub midi: MidiMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresetSlot {
    pub kind: String,
    /// Model or impulse-response file: absolute, relative to the preset's folder, or `factory:` + a path among the
    /// shipped files. Written as a plain string (`model: "amp.nam"`); `Some("amp.nam")` is read too.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "plain_option")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bypass: bool,
    #[serde(default = "full_mix")]
    pub mix: f32,
    /// Values in plain units, by parameter id. Parameters left out take their defaults.
    #[serde(default)]
    pub params: BTreeMap<String, f32>,
}

fn full_mix() -> f32 {
    1.0
}

/// An optional string written as the bare string (the field is left out when absent).
mod plain_option {
    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(text) => serializer.serialize_str(text),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Option<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a file path string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(v.to_owned()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl PresetSlot {
    pub fn new(kind: &str) -> Self {
        Self { kind: kind.to_owned(), model: None, bypass: false, mix: 1.0, params: BTreeMap::new() }
    }
}

/// Why a preset could not be loaded or saved. Every message starts with the file it is about.
pub type PresetError = crate::ronfile::RonFileError;

/// Something in a preset that was skipped or could not be honoured, while the rest loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetWarning {
    /// Where in the file: `chain[2]`, `chain[0].params.drive`, `colour`.
    pub location: String,
    pub message: String,
}

impl fmt::Display for PresetWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// A preset read from a file, with what was skipped.
#[derive(Debug, Clone)]
pub struct LoadedPreset {
    pub preset: Preset,
    pub path: PathBuf,
    pub warnings: Vec<PresetWarning>,
}

impl LoadedPreset {
    /// The folder relative model paths are resolved against.
    pub fn base_dir(&self) -> Option<&Path> {
        self.path.parent()
    }
}

impl Preset {
    /// An empty chain at unity levels.
    pub fn empty(name: &str) -> Self {
        Self {
            version: PRESET_VERSION,
            name: name.to_owned(),
            input_gain_db: 0.0,
            output_level_db: 0.0,
            chain: vec![],
            midi: MidiMap::default(),
        }
    }

    /// Reads and checks a preset file.
    pub fn load(path: &Path) -> Result<LoadedPreset, PresetError> {
        let text = ronfile::read_text(path, MAX_PRESET_BYTES, "a preset")?;
        let (preset, warnings) = Self::parse(&text, path)?;
        Ok(LoadedPreset { preset, path: path.to_owned(), warnings })
    }

    /// Parses and checks preset text; `path` names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<(Preset, Vec<PresetWarning>), PresetError> {
        let (preset, unknown): (Preset, _) = ronfile::parse(text, path)?;
        let mut warnings: Vec<PresetWarning> = unknown
            .into_iter()
            .map(|location| PresetWarning { location, message: "unknown field, ignored".into() })
            .collect();
        preset.check(path, &mut warnings)?;
        Ok((preset, warnings))
    }

    /// Semantic checks: what a well-formed file can still get wrong.
    fn check(&self, path: &Path, warnings: &mut Vec<PresetWarning>) -> Result<(), PresetError> {
        let invalid = |message: String| PresetError::Invalid { path: path.to_owned(), message };
        if self.version != PRESET_VERSION {
            return Err(invalid(if self.version > PRESET_VERSION {
                format!(
                    "preset version {} was made by a newer Neuralboard (this one reads version {PRESET_VERSION})",
                    self.version
                )
            } else {
                format!("unsupported preset version {} (expected {PRESET_VERSION})", self.version)
            }));
        }
        for (field, db) in [("input_gain_db", self.input_gain_db), ("output_level_db", self.output_level_db)] {
            let (min, max) = GLOBAL_GAIN_RANGE_DB;
            if !db.is_finite() || db < min || db > max {
                return Err(invalid(format!("{field} = {db} is not a level in {min}..={max} dB")));
            }
        }
        if self.chain.len() > MAX_SLOTS {
            return Err(invalid(format!(
                "the chain has {} pedals; a board holds at most {MAX_SLOTS}",
                self.chain.len()
            )));
        }
        for (i, slot) in self.chain.iter().enumerate() {
            if !slot.mix.is_finite() || !(0.0..=1.0).contains(&slot.mix) {
                return Err(invalid(format!("chain[{i}].mix = {} is not in 0..=1", slot.mix)));
            }
            let Some(kind) = effects::find(&slot.kind) else {
                warnings.push(PresetWarning {
                    location: format!("chain[{i}]"),
                    message: format!("unknown pedal kind '{}': kept in place, passes the signal through", slot.kind),
                });
                // Values are still checked for sanity, so a saved file never carries NaN.
                if let Some((id, v)) = slot.params.iter().find(|(_, v)| !v.is_finite()) {
                    return Err(invalid(format!("chain[{i}].params.{id} = {v} is not a number")));
                }
                continue;
            };
            let specs = (kind.params)();
            for (id, &value) in &slot.params {
                let location = format!("chain[{i}].params.{id}");
                match specs.iter().find(|s| s.id == id) {
                    Some(spec) => {
                        spec.validate(value).map_err(|e| {
                            invalid(format!("{location} ({} {}): {e}", kind.name, spec.name.to_lowercase()))
                        })?;
                    }
                    None if !value.is_finite() => {
                        return Err(invalid(format!("{location} = {value} is not a number")));
                    }
                    None => warnings.push(PresetWarning {
                        location,
                        message: format!("'{}' has no parameter '{id}': kept, not used", kind.kind),
                    }),
                }
            }
            if kind.needs_model && slot.model.is_none() {
                warnings.push(PresetWarning {
                    location: format!("chain[{i}]"),
                    message: format!("'{}' has no model file set", kind.kind),
                });
            }
        }
        self.midi.validate().map_err(|e| invalid(format!("midi.{e}")))?;
        self.check_midi_targets(warnings);
        Ok(())
    }

    /// Mappings to pedals the chain does not have do nothing when played; say so when the preset loads, while the
    /// player can still see why a footswitch is dead. They are kept, as a pedal may be added at that place later.
    fn check_midi_targets(&self, warnings: &mut Vec<PresetWarning>) {
        for (i, mapping) in self.midi.mappings.iter().enumerate() {
            let (slot, param) = match &mapping.target {
                Target::Param { slot, param, .. } => (*slot, Some(param)),
                Target::Bypass { slot, .. } => (*slot, None),
                _ => continue,
            };
            let location = format!("midi.mappings[{i}].target");
            let Some(entry) = self.chain.get(slot) else {
                let message = format!("no pedal at chain[{slot}] (the chain has {}): does nothing", self.chain.len());
                warnings.push(PresetWarning { location, message });
                continue;
            };
            let Some(kind) = effects::find(&entry.kind) else { continue };
            if let Some(param) = param.filter(|p| !(kind.params)().iter().any(|s| s.id == p.as_str())) {
                let message = format!("'{}' at chain[{slot}] has no parameter '{param}': does nothing", kind.kind);
                warnings.push(PresetWarning { location, message });
            }
        }
    }

    /// The preset as RON text, laid out for people to read and edit.
    pub fn to_ron(&self) -> String {
        let config = ron::ser::PrettyConfig::new().depth_limit(4).indentor("    ".to_owned());
        // Serialising plain data with string keys cannot fail.
        ron::ser::to_string_pretty(self, config).expect("preset serialises") + "\n"
    }

    /// Writes atomically: a temporary file in the same folder, flushed to disk, then renamed over the target.
    /// A crash or full disk mid-save leaves the old preset intact.
    pub fn save(&self, path: &Path) -> Result<(), PresetError> {
        ronfile::save(path, &self.to_ron())
    }
}

/// Prefix of model paths that name a shipped file: `factory:assets/models/amp/clean-lstm.nam` is that path under
/// [`crate::paths::factory_root`], wherever the board is installed and wherever the preset is copied to.
pub const FACTORY_PREFIX: &str = "factory:";

/// Resolves a model path from a preset: `factory:` paths against the shipped files, absolute as is, relative
/// against the preset's folder.
pub fn resolve_model_path(model: &str, base_dir: Option<&Path>) -> PathBuf {
    if let Some(shipped) = model.strip_prefix(FACTORY_PREFIX) {
        return crate::paths::factory_root().join(shipped);
    }
    let path = Path::new(model);
    match base_dir {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(Preset, Vec<PresetWarning>), PresetError> {
        Preset::parse(text, Path::new("test.ron"))
    }

    const GOOD: &str = r#"(
        version: 1,
        name: "Test",
        output_level_db: -6.0,
        chain: [
            (kind: "gate", params: {"threshold_db": -55.0}),
            (kind: "gain", bypass: true, mix: 0.5, params: {"gain_db": 6.0}),
        ],
    )"#;

    #[test]
    fn a_preset_survives_a_save_and_load_round_trip() {
        let (preset, warnings) = parse(GOOD).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(preset.chain.len(), 2);
        assert!(preset.chain[1].bypass);
        let dir = std::env::temp_dir().join(format!("nb-preset-{}", std::process::id()));
        let path = dir.join("round trip.ron");
        preset.save(&path).unwrap();
        let loaded = Preset::load(&path).unwrap();
        assert_eq!(loaded.preset, preset);
        assert!(std::fs::read_dir(&dir).unwrap().count() == 1, "no temporary file left behind");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn syntax_errors_name_the_file_line_and_column() {
        let err = parse("(\n  version: 1,\n  name: \"x\",\n  chain: [ (kind: \"gate\" params: {}) ],\n)").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("test.ron:4:"), "{message}");
        assert!(!message.contains('\n'));
    }

    #[test]
    fn wrong_types_and_truncation_are_errors_with_positions() {
        assert!(matches!(parse(r#"(version: "one", name: "x")"#), Err(PresetError::Syntax { line: 1, .. })));
        assert!(matches!(parse(&GOOD[..60]), Err(PresetError::Syntax { .. })));
        assert!(matches!(parse(""), Err(PresetError::Syntax { .. })));
    }

    #[test]
    fn nan_and_out_of_range_values_are_rejected_with_their_location() {
        let nan = GOOD.replace("-55.0", "NaN");
        let message = parse(&nan).unwrap_err().to_string();
        assert!(message.contains("chain[0].params.threshold_db") && message.contains("not a finite"), "{message}");
        let high = GOOD.replace("-55.0", "12.0");
        let message = parse(&high).unwrap_err().to_string();
        assert!(message.contains("outside -100..=0"), "{message}");
        let mix = GOOD.replace("mix: 0.5", "mix: 2.0");
        assert!(parse(&mix).unwrap_err().to_string().contains("chain[1].mix"));
        let level = GOOD.replace("-6.0", "inf");
        assert!(parse(&level).unwrap_err().to_string().contains("output_level_db"));
    }

    #[test]
    fn unknown_kinds_parameters_and_fields_are_warnings_not_errors() {
        let text = GOOD
            .replace(r#"(kind: "gate","#, r#"(kind: "octaver", colour: "red","#)
            .replace(r#""gain_db": 6.0"#, r#""gain_db": 6.0, "sparkle": 3.0"#);
        let (preset, warnings) = parse(&text).unwrap();
        assert_eq!(preset.chain[0].kind, "octaver");
        let locations: Vec<_> = warnings.iter().map(|w| w.location.as_str()).collect();
        assert!(locations.contains(&"chain[0]"), "{warnings:?}");
        assert!(locations.contains(&"chain[1].params.sparkle"), "{warnings:?}");
        assert!(locations.iter().any(|l| l.contains("colour")), "{warnings:?}");
    }

    #[test]
    fn midi_mappings_survive_a_save_and_load_and_presets_without_them_stay_as_they_were() {
        use crate::midi::{Curve, Mapping, Source, SourceKind, SwitchMode};
        let (mut preset, _) = parse(GOOD).unwrap();
        assert_eq!(preset.midi, MidiMap::default(), "a preset from before MIDI mappings loads");
        assert!(!preset.to_ron().contains("midi"), "and is saved without an empty map");
        preset.midi = MidiMap {
            mappings: vec![
                Mapping {
                    source: Source { channel: Some(0), kind: SourceKind::Cc(11) },
                    target: Target::Param { slot: 1, param: "gain_db".into(), min: 0.2, max: 0.9, curve: Curve::Log },
                },
                Mapping {
                    source: Source { channel: None, kind: SourceKind::Note(36) },
                    target: Target::Bypass { slot: 0, mode: SwitchMode::Momentary },
                },
            ],
            program_change_channel: Some(3),
        };
        let text = preset.to_ron();
        let (loaded, warnings) = parse(&text).unwrap();
        assert_eq!(loaded, preset, "{text}");
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn midi_mappings_are_checked_and_dead_targets_are_reported() {
        let with_midi = |mappings: &str| GOOD.replace("chain: [", &format!("midi: (mappings: [{mappings}]), chain: ["));
        let bad = with_midi("(source: (channel: Some(16), kind: Cc(1)), target: NextPreset)");
        let message = parse(&bad).unwrap_err().to_string();
        assert!(message.contains("midi.mappings[0].source.channel = 16"), "{message}");
        let dead = with_midi(
            r#"(source: (kind: Cc(1)), target: Bypass(slot: 5)),
               (source: (kind: Cc(2)), target: Param(slot: 1, param: "sparkle")),
               (source: (kind: Cc(3)), target: Param(slot: 1, param: "gain_db"))"#,
        );
        let (preset, warnings) = parse(&dead).unwrap();
        assert_eq!(preset.midi.mappings.len(), 3, "kept for a pedal added later");
        let texts: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts[0].starts_with("midi.mappings[0].target: no pedal at chain[5]"), "{texts:?}");
        assert!(texts[1].starts_with("midi.mappings[1].target: 'gain' at chain[1] has no parameter 'sparkle'"));
    }

    #[test]
    fn newer_versions_are_refused_politely() {
        let message = parse(&GOOD.replace("version: 1", "version: 7")).unwrap_err().to_string();
        assert!(message.contains("newer Neuralboard"), "{message}");
    }

    #[test]
    fn model_paths_are_plain_strings_and_some_is_read_too() {
        let text = |model: &str| format!("(version: 1, name: \"M\", chain: [(kind: \"amp\", model: {model})])");
        for model in [r#""a.nam""#, r#"Some("a.nam")"#] {
            let (p, _) = parse(&text(model)).unwrap();
            assert_eq!(p.chain[0].model.as_deref(), Some("a.nam"), "{model}");
            let ron = p.to_ron();
            assert!(ron.contains(r#"model: "a.nam""#), "{ron}");
            assert_eq!(parse(&ron).unwrap().0, p, "round trip");
        }
        let err = parse(&text("5")).unwrap_err().to_string();
        assert!(err.contains("test.ron:1:") && err.contains("file path string"), "{err}");
    }

    #[test]
    fn relative_model_paths_resolve_against_the_preset_folder() {
        assert_eq!(resolve_model_path("amp.nam", Some(Path::new("/p"))), PathBuf::from("/p/amp.nam"));
        assert_eq!(resolve_model_path("/m/amp.nam", Some(Path::new("/p"))), PathBuf::from("/m/amp.nam"));
        assert_eq!(
            resolve_model_path("factory:assets/ir/4x12-closed.wav", Some(Path::new("/p"))),
            crate::paths::factory_root().join("assets/ir/4x12-closed.wav")
        );
    }
}
