//! The player's settings: the audio device and buffer, MIDI mappings, the last preset — RON in the per-user config
//! folder (`settings.ron`), saved atomically.
//!
//! Settings are a convenience, so a bad file must never stop the board: [`Settings::load_or_default`] reports what
//! is wrong (file, line, column), moves the unreadable file aside as `settings.ron.unreadable` so the next save
//! cannot destroy what the player had, and carries on with defaults. Unknown fields (from a newer version) are
//! ignored and reported.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::midi::MidiMap;
use crate::ronfile;

/// The settings format this build writes.
pub const SETTINGS_VERSION: u32 = 1;
/// File name inside the config folder.
pub const FILE_NAME: &str = "settings.ron";

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub version: u32,
    pub audio: AudioSettings,
    /// Global MIDI mappings (presets may carry their own).
    pub midi: MidiMap,
    /// The preset loaded last, reopened at start.
    pub last_preset: Option<PathBuf>,
}

/// What `play` and the GUI open. `None` everywhere means "the system's default".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AudioSettings {
    pub host: Option<String>,
    pub output_device: Option<String>,
    pub input_device: Option<String>,
    /// The input channel routed into the board (1-based); `None`: input not routed (the feedback guard).
    pub input_channel: Option<u16>,
    pub buffer: Option<u32>,
    pub sample_rate: Option<u32>,
}

/// Why settings could not be loaded or saved; the message starts with the file.
pub type SettingsError = crate::ronfile::RonFileError;

/// Settings files are small; anything larger is not one.
const MAX_SETTINGS_BYTES: u64 = 1 << 20;

impl Settings {
    /// The settings file in a config folder.
    pub fn path_in(config_dir: &Path) -> PathBuf {
        config_dir.join(FILE_NAME)
    }

    /// Reads and checks a settings file. Returns the settings and the fields it did not know.
    pub fn load(path: &Path) -> Result<(Self, Vec<String>), SettingsError> {
        let text = ronfile::read_text(path, MAX_SETTINGS_BYTES, "a settings file")?;
        Self::parse(&text, path)
    }

    /// Parses settings text; `path` names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<(Self, Vec<String>), SettingsError> {
        let (settings, unknown): (Settings, _) = ronfile::parse(text, path)?;
        let invalid = |message: String| SettingsError::Invalid { path: path.to_owned(), message };
        if settings.version > SETTINGS_VERSION {
            return Err(invalid(format!(
                "version {} is newer than this build reads ({SETTINGS_VERSION})",
                settings.version
            )));
        }
        let audio = &settings.audio;
        if audio.input_channel == Some(0) {
            return Err(invalid("audio.input_channel counts from 1".into()));
        }
        if audio.buffer.is_some_and(|b| !(16..=8192).contains(&b)) {
            return Err(invalid(format!("audio.buffer {} is outside 16..=8192", audio.buffer.unwrap_or(0))));
        }
        if audio.sample_rate.is_some_and(|r| !(8_000..=384_000).contains(&r)) {
            return Err(invalid(format!(
                "audio.sample_rate {} is outside 8000..=384000",
                audio.sample_rate.unwrap_or(0)
            )));
        }
        settings.midi.validate().map_err(|e| invalid(format!("midi: {e}")))?;
        Ok((settings, unknown))
    }

    /// The settings at `path`, or the defaults with a message saying why (missing files are not an error: a
    /// first start). An unreadable file is renamed to `settings.ron.unreadable` (replacing an older one) so that it
    /// survives the next save.
    pub fn load_or_default(path: &Path) -> (Self, Vec<String>) {
        if !path.exists() {
            return (Self::default_current(), Vec::new());
        }
        match Self::load(path) {
            Ok((settings, unknown)) => {
                let notes = unknown.into_iter().map(|f| format!("{}: unknown field '{f}', ignored", path.display()));
                (settings, notes.collect())
            }
            Err(e) => {
                let aside = path.with_extension("ron.unreadable");
                let kept = match std::fs::rename(path, &aside) {
                    Ok(()) => format!("kept as {}", aside.display()),
                    Err(rename) => format!("could not move it aside ({rename})"),
                };
                (Self::default_current(), vec![format!("{e}; using default settings, the file was {kept}")])
            }
        }
    }

    fn default_current() -> Self {
        Self { version: SETTINGS_VERSION, ..Self::default() }
    }

    /// The settings as RON text.
    pub fn to_ron(&self) -> String {
        let config = ron::ser::PrettyConfig::new().depth_limit(5).indentor("    ".to_owned());
        ron::ser::to_string_pretty(&Self { version: SETTINGS_VERSION, ..self.clone() }, config)
            .expect("settings serialise")
            + "\n"
    }

    /// Writes atomically (temporary file, flushed, renamed).
    pub fn save(&self, path: &Path) -> Result<(), SettingsError> {
        ronfile::save(path, &self.to_ron())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::midi::{Mapping, Source, SourceKind, SwitchMode, Target};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nb-settings-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample() -> Settings {
        Settings {
            version: SETTINGS_VERSION,
            audio: AudioSettings {
                host: Some("JACK".into()),
                output_device: Some("Scarlett".into()),
                input_device: None,
                input_channel: Some(2),
                buffer: Some(64),
                sample_rate: Some(48_000),
            },
            midi: MidiMap {
                mappings: vec![Mapping {
                    source: Source { channel: Some(0), kind: SourceKind::Cc(80) },
                    target: Target::Bypass { slot: 1, mode: SwitchMode::Toggle },
                }],
                program_change_channel: None,
            },
            last_preset: Some("/home/p/presets/lead.ron".into()),
        }
    }

    #[test]
    fn settings_survive_a_save_and_load() {
        let path = Settings::path_in(&scratch("roundtrip"));
        sample().save(&path).unwrap();
        let (loaded, unknown) = Settings::load(&path).unwrap();
        assert_eq!(loaded, sample());
        assert!(unknown.is_empty());
    }

    #[test]
    fn a_missing_file_is_a_first_start() {
        let (settings, notes) = Settings::load_or_default(&scratch("missing").join(FILE_NAME));
        assert_eq!(settings, Settings { version: SETTINGS_VERSION, ..Settings::default() });
        assert!(notes.is_empty());
    }

    #[test]
    fn a_corrupt_file_is_reported_kept_aside_and_replaced_by_defaults() {
        let dir = scratch("corrupt");
        let path = Settings::path_in(&dir);
        std::fs::write(&path, "(version: 1, audio: (buffer: Some(64)").unwrap();
        let (settings, notes) = Settings::load_or_default(&path);
        assert_eq!(settings.audio, AudioSettings::default());
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("settings.ron:1:") && notes[0].contains("unreadable"), "{}", notes[0]);
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_to_string(dir.join("settings.ron.unreadable")).unwrap(),
            "(version: 1, audio: (buffer: Some(64)"
        );
        // The next save does not touch what the player had.
        settings.save(&path).unwrap();
        assert!(dir.join("settings.ron.unreadable").exists());
    }

    #[test]
    fn bad_values_and_unknown_fields() {
        let p = Path::new("settings.ron");
        let cases = [
            ("(audio: (input_channel: Some(0)))", "counts from 1"),
            ("(audio: (buffer: Some(3)))", "outside 16..=8192"),
            ("(audio: (sample_rate: Some(1)))", "outside 8000"),
            ("(version: 99)", "newer than this build"),
            ("(audio: (buffer: \"big\"))", "settings.ron:1:"),
        ];
        for (text, expected) in cases {
            let err = Settings::parse(text, p).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let (s, unknown) = Settings::parse("(version: 1, theme: \"dark\", audio: (buffer: Some(128)))", p).unwrap();
        assert_eq!(s.audio.buffer, Some(128));
        assert_eq!(unknown, vec!["theme".to_owned()]);
    }
}
