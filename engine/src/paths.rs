//! Where Neuralboard keeps a player's files, and where it finds the ones it ships.
//!
//! Per-user folders follow each platform's convention (through `directories`): on Linux
//! `~/.local/share/neuralboard/{presets,models,irs,takes}` and `~/.config/neuralboard/` for settings.
//! `NEURALBOARD_HOME` overrides the root of both (tests, portable installs).

use std::path::{Path, PathBuf};

/// The per-user folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDirs {
    pub presets: PathBuf,
    /// `.nam` and other neural models the player adds.
    pub models: PathBuf,
    /// Cabinet impulse responses.
    pub irs: PathBuf,
    /// Recorded takes.
    pub takes: PathBuf,
    /// Settings (audio device, MIDI mappings).
    pub config: PathBuf,
}

impl UserDirs {
    /// The player's folders (not created; see [`UserDirs::create`]). `None` when the platform reports no home.
    pub fn locate() -> Option<Self> {
        if let Some(home) = std::env::var_os("NEURALBOARD_HOME").filter(|h| !h.is_empty()) {
            let home = PathBuf::from(home);
            return Some(Self::under(&home.join("data"), &home.join("config")));
        }
        let dirs = directories::ProjectDirs::from("org", "Neuralboard", "neuralboard")?;
        Some(Self::under(dirs.data_dir(), dirs.config_dir()))
    }

    fn under(data: &Path, config: &Path) -> Self {
        Self {
            presets: data.join("presets"),
            models: data.join("models"),
            irs: data.join("irs"),
            takes: data.join("takes"),
            config: config.to_owned(),
        }
    }

    /// Creates every folder that does not exist yet.
    pub fn create(&self) -> std::io::Result<()> {
        for dir in [&self.presets, &self.models, &self.irs, &self.takes, &self.config] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }
}

/// Writes a file atomically: a temporary file in the same folder (created if missing), flushed to disk, then
/// renamed over the target. A crash or a full disk mid-write leaves the old file intact.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name =
        path.file_name().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", file_name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The folder of the shipped files (factory presets, models, IRs): `NEURALBOARD_ASSETS` if set, else the source
/// tree when running from it (development), else the installed location.
pub fn factory_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("NEURALBOARD_ASSETS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let source_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if source_tree.join("presets").is_dir() {
        return source_tree;
    }
    PathBuf::from("/usr/share/neuralboard")
}

/// The factory presets folder.
pub fn factory_presets() -> PathBuf {
    factory_root().join("presets")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factory_presets_are_found_from_the_source_tree() {
        assert!(factory_presets().join("clean-practice.ron").is_file());
    }
}
