//! The preset library: factory presets (read-only, shipped) and the player's own, with save, save-as, rename and
//! delete. Deleting moves the file into a `.trash` folder beside the presets, so nothing is lost by a slip.
//!
//! The first start copies the factory presets into the player's folder
//! ([`neuralboard_engine::paths::offer_factory_presets`]); a player's file stands in for the factory preset of the
//! same file name, so the list shows each preset once, as the editable copy. A factory preset whose copy was
//! deleted or renamed is listed again, read-only: the original is never out of reach.

use std::path::{Path, PathBuf};

use neuralboard_engine::preset::Preset;

/// One preset the selector offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetEntry {
    /// The name inside the file (the file name if it cannot be read).
    pub name: String,
    pub path: PathBuf,
    pub factory: bool,
    /// Why the file cannot be loaded, if it cannot (shown, not hidden).
    pub problem: Option<String>,
}

impl std::fmt::Display for PresetEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if self.factory {
            f.write_str(" (factory)")?;
        }
        if self.problem.is_some() {
            f.write_str(" ⚠")?;
        }
        Ok(())
    }
}

/// What can go wrong managing presets; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("there is no folder for your presets (no home folder; set NEURALBOARD_HOME)")]
    NoUserFolder,
    #[error("a preset needs a name")]
    EmptyName,
    #[error("factory presets cannot be renamed or deleted; save a copy with Save As")]
    Factory,
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Preset(#[from] neuralboard_engine::preset::PresetError),
}

/// The presets in the user's and the factory folder.
#[derive(Debug, Clone)]
pub struct Library {
    pub user_dir: Option<PathBuf>,
    pub factory_dir: PathBuf,
    /// User presets first, then the factory presets the user folder has no file of the same name for, each sorted
    /// by name.
    pub entries: Vec<PresetEntry>,
}

fn scan_dir(dir: &Path, factory: bool) -> Vec<PresetEntry> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut entries: Vec<PresetEntry> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ron") && p.is_file())
        .map(|path| match Preset::load(&path) {
            Ok(loaded) => PresetEntry { name: loaded.preset.name, path, factory, problem: None },
            Err(e) => PresetEntry {
                name: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                path,
                factory,
                problem: Some(e.to_string()),
            },
        })
        .collect();
    entries.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then(a.path.cmp(&b.path)));
    entries
}

/// A file name for a preset name: lower case, words joined by '-', nothing a file system could object to.
pub fn file_stem_for(name: &str) -> String {
    let mut stem = String::new();
    for c in name.trim().chars() {
        if c.is_alphanumeric() {
            stem.extend(c.to_lowercase());
        } else if !stem.ends_with('-') && !stem.is_empty() {
            stem.push('-');
        }
    }
    let stem = stem.trim_end_matches('-').chars().take(64).collect::<String>();
    if stem.is_empty() { "preset".to_owned() } else { stem }
}

impl Library {
    pub fn scan(user_dir: Option<PathBuf>, factory_dir: PathBuf) -> Self {
        let mut library = Self { user_dir, factory_dir, entries: Vec::new() };
        library.refresh();
        library
    }

    pub fn refresh(&mut self) {
        let mut entries = self.user_dir.as_deref().map(|d| scan_dir(d, false)).unwrap_or_default();
        let factory: Vec<PresetEntry> = scan_dir(&self.factory_dir, true)
            .into_iter()
            // The player's file of the same name stands in for it (see the module's doc).
            .filter(|factory| !entries.iter().any(|user| user.path.file_name() == factory.path.file_name()))
            .collect();
        entries.extend(factory);
        self.entries = entries;
    }

    pub fn index_of(&self, path: &Path) -> Option<usize> {
        self.entries.iter().position(|e| e.path == path)
    }

    fn user_dir(&self) -> Result<&Path, LibraryError> {
        self.user_dir.as_deref().ok_or(LibraryError::NoUserFolder)
    }

    /// A path in the user folder for `name` that no other preset uses (`except` may be reused: it is the file
    /// being overwritten or renamed).
    fn free_path(&self, name: &str, except: Option<&Path>) -> Result<PathBuf, LibraryError> {
        let dir = self.user_dir()?;
        let stem = file_stem_for(name);
        for n in 1.. {
            let file = if n == 1 { format!("{stem}.ron") } else { format!("{stem}-{n}.ron") };
            let path = dir.join(file);
            if !path.exists() || except == Some(path.as_path()) {
                return Ok(path);
            }
        }
        unreachable!("some numbered file name is free")
    }

    /// Saves `preset` over `current` if that is one of the player's presets, else as a new preset in the user
    /// folder. Returns where it went.
    pub fn save(&mut self, preset: &Preset, current: Option<&Path>) -> Result<PathBuf, LibraryError> {
        let path = match current {
            Some(path) if self.user_dir.as_deref().is_some_and(|d| path.parent() == Some(d)) => path.to_owned(),
            _ => self.free_path(&preset.name, None)?,
        };
        self.write(preset, &path)?;
        Ok(path)
    }

    /// Saves `preset` under a new name as a new file.
    pub fn save_as(&mut self, preset: &mut Preset, name: &str) -> Result<PathBuf, LibraryError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(LibraryError::EmptyName);
        }
        preset.name = name.to_owned();
        let path = self.free_path(name, None)?;
        self.write(preset, &path)?;
        Ok(path)
    }

    /// Renames a user preset: the name inside and the file name.
    pub fn rename(&mut self, path: &Path, name: &str) -> Result<PathBuf, LibraryError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(LibraryError::EmptyName);
        }
        self.ensure_user(path)?;
        let mut preset = Preset::load(path)?.preset;
        preset.name = name.to_owned();
        let new_path = self.free_path(name, Some(path))?;
        // Written under the new name first: a failure leaves the old file as it was.
        self.write(&preset, &new_path)?;
        if new_path != path {
            std::fs::remove_file(path).map_err(|source| LibraryError::Io { path: path.to_owned(), source })?;
        }
        self.refresh();
        Ok(new_path)
    }

    /// Moves a user preset into the trash folder (`presets/.trash`).
    pub fn delete(&mut self, path: &Path) -> Result<PathBuf, LibraryError> {
        self.ensure_user(path)?;
        let trash = self.user_dir()?.join(".trash");
        std::fs::create_dir_all(&trash).map_err(|source| LibraryError::Io { path: trash.clone(), source })?;
        let stamp = neuralboard_engine::takes::take_stamp(std::time::SystemTime::now());
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let target = trash.join(format!("{stamp}-{file}"));
        std::fs::rename(path, &target).map_err(|source| LibraryError::Io { path: path.to_owned(), source })?;
        self.refresh();
        Ok(target)
    }

    fn ensure_user(&self, path: &Path) -> Result<(), LibraryError> {
        match self.user_dir.as_deref() {
            Some(dir) if path.parent() == Some(dir) => Ok(()),
            _ => Err(LibraryError::Factory),
        }
    }

    fn write(&mut self, preset: &Preset, path: &Path) -> Result<(), LibraryError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| LibraryError::Io { path: dir.to_owned(), source })?;
        }
        preset.save(path)?;
        self.refresh();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nb-library-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn file_names_are_safe_and_readable() {
        assert_eq!(file_stem_for("Crunch Rhythm"), "crunch-rhythm");
        assert_eq!(file_stem_for("  ../../etc/passwd "), "etc-passwd");
        assert_eq!(file_stem_for("Solo!!  Boost"), "solo-boost");
        assert_eq!(file_stem_for("///"), "preset");
    }

    #[test]
    fn save_as_rename_and_delete_keep_every_file_recoverable() {
        let root = scratch("cycle");
        let user = root.join("user");
        let factory = root.join("factory");
        std::fs::create_dir_all(&factory).unwrap();
        Preset::empty("Factory Clean").save(&factory.join("clean.ron")).unwrap();
        let mut library = Library::scan(Some(user.clone()), factory.clone());
        assert_eq!(library.entries.len(), 1);
        assert!(library.entries[0].factory);

        // Saving a factory preset makes a user copy; the factory file is untouched.
        let mut preset = Preset::load(&factory.join("clean.ron")).unwrap().preset;
        let copy = library.save(&preset, Some(&factory.join("clean.ron"))).unwrap();
        assert_eq!(copy, user.join("factory-clean.ron"));
        let path = library.save_as(&mut preset, "My Lead").unwrap();
        assert_eq!(path, user.join("my-lead.ron"));
        assert_eq!(Preset::load(&path).unwrap().preset.name, "My Lead");
        // A second preset with the same name gets its own file.
        let second = library.save_as(&mut preset, "My Lead").unwrap();
        assert_eq!(second, user.join("my-lead-2.ron"));

        let renamed = library.rename(&second, "Solo").unwrap();
        assert!(!second.exists());
        assert_eq!(Preset::load(&renamed).unwrap().preset.name, "Solo");
        assert!(matches!(library.rename(&factory.join("clean.ron"), "x"), Err(LibraryError::Factory)));

        let trashed = library.delete(&renamed).unwrap();
        assert!(!renamed.exists() && trashed.exists(), "deleted presets go to the trash folder");
        let names: Vec<&str> = library.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["Factory Clean", "My Lead", "Factory Clean"]);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_copied_factory_preset_is_listed_once_and_the_original_returns_when_the_copy_goes() {
        let root = scratch("copies");
        let user = root.join("user");
        let factory = root.join("factory");
        std::fs::create_dir_all(&factory).unwrap();
        Preset::empty("Clean").save(&factory.join("clean.ron")).unwrap();
        Preset::empty("Crunch").save(&factory.join("crunch.ron")).unwrap();
        let offer = neuralboard_engine::paths::offer_factory_presets(&factory, &user);
        assert_eq!(offer.copied.len(), 2);

        let mut library = Library::scan(Some(user.clone()), factory.clone());
        let listed: Vec<(&str, bool)> = library.entries.iter().map(|e| (e.name.as_str(), e.factory)).collect();
        assert_eq!(listed, [("Clean", false), ("Crunch", false)], "the copies, editable, each once");

        library.delete(&user.join("crunch.ron")).unwrap();
        let listed: Vec<(&str, bool)> = library.entries.iter().map(|e| (e.name.as_str(), e.factory)).collect();
        assert_eq!(listed, [("Clean", false), ("Crunch", true)], "the factory original is back, read-only");
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn unreadable_presets_are_listed_with_their_problem() {
        let root = scratch("bad");
        std::fs::write(root.join("broken.ron"), "(version: 1, name: ").unwrap();
        let library = Library::scan(Some(root.clone()), root.join("none"));
        assert_eq!(library.entries.len(), 1);
        assert_eq!(library.entries[0].name, "broken");
        assert!(library.entries[0].problem.as_deref().unwrap().contains("broken.ron"));
        let _ = std::fs::remove_dir_all(root);
    }
}
