//! Where Neuralboard keeps a player's files, and where it finds the ones it ships.
//!
//! Per-user folders follow each platform's convention (through `directories`): on Linux
//! `~/.local/share/neuralboard/{presets,models,irs,takes}` and `~/.config/neuralboard/` for settings.
//! `NEURALBOARD_HOME` overrides the root of both (tests, portable installs).
//!
//! The shipped files (factory presets, models, impulse responses) are found where the board runs from: see
//! [`factory_root`]. On the first start the player gets their own copy of the factory presets: see
//! [`offer_factory_presets`].

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

/// The folder of the shipped files (factory presets, models, IRs), the first of:
/// 1. `NEURALBOARD_ASSETS`, when set;
/// 2. `share/neuralboard` beside the folder of the running executable (`/usr/bin/neuralboard` finds
///    `/usr/share/neuralboard`, `/usr/local/bin` finds `/usr/local/share`, an unpacked archive its own `share/`);
/// 3. the source tree the binary was built from, when it is still there (development: `cargo run`);
/// 4. `/usr/share/neuralboard`.
///
/// The executable's location comes before the source tree: an installed binary built from a checkout that still
/// exists (a CI machine, a developer's `cargo deb`) must play the files it was installed with, not the checkout's.
/// A folder counts only if it has a `presets` folder, so a half-made or removed location is passed over.
pub fn factory_root() -> PathBuf {
    let assets = std::env::var_os("NEURALBOARD_ASSETS").filter(|d| !d.is_empty()).map(PathBuf::from);
    let beside_exe = std::env::current_exe().ok().and_then(|exe| installed_root_for(&exe));
    let source_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    choose_factory_root(assets, beside_exe, &source_tree)
}

/// Where a binary at `exe` (`PREFIX/bin/neuralboard`) finds the shipped files: `PREFIX/share/neuralboard`.
fn installed_root_for(exe: &Path) -> Option<PathBuf> {
    Some(exe.parent()?.parent()?.join("share").join("neuralboard"))
}

/// [`factory_root`]'s choice, given what it found.
fn choose_factory_root(assets: Option<PathBuf>, beside_exe: Option<PathBuf>, source_tree: &Path) -> PathBuf {
    if let Some(dir) = assets {
        // Taken as given, even if wrong: the error then names the folder the player asked for.
        return dir;
    }
    let has_presets = |dir: &Path| dir.join("presets").is_dir();
    if let Some(dir) = beside_exe.filter(|dir| has_presets(dir)) {
        return dir;
    }
    if has_presets(source_tree) {
        return source_tree.to_owned();
    }
    PathBuf::from(INSTALLED_ROOT)
}

/// Where the Debian package puts the shipped files.
pub const INSTALLED_ROOT: &str = "/usr/share/neuralboard";

/// The factory presets folder.
pub fn factory_presets() -> PathBuf {
    factory_root().join("presets")
}

/// The preset file of Clean Practice, the factory preset the board starts with when nothing else is asked for.
pub const DEFAULT_PRESET: &str = "clean-practice.ron";

/// The preset the board starts with when none is asked for or remembered: the player's own copy of
/// [`DEFAULT_PRESET`] (see [`offer_factory_presets`]) when there is one, so that their edits are what plays and a
/// save goes back into that file; else the factory original.
pub fn default_preset(user_presets: Option<&Path>) -> PathBuf {
    user_presets
        .map(|dir| dir.join(DEFAULT_PRESET))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| factory_presets().join(DEFAULT_PRESET))
}

/// The list, in the player's presets folder, of the factory presets already copied there (or found there already):
/// one file name per line. A hidden file, beside the presets it describes: deleting the folder starts afresh.
pub const OFFERED_LIST: &str = ".factory-presets-offered";

/// What [`offer_factory_presets`] did.
#[derive(Debug, Default)]
pub struct FactoryOffer {
    /// File names of the factory presets copied into the player's folder this time.
    pub copied: Vec<String>,
    /// What could not be done; everything else was still done. A preset that could not be copied is tried again
    /// at the next start.
    pub problems: Vec<OfferError>,
}

/// A file [`offer_factory_presets`] could not read or write.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot {action}: {source}", path.display())]
pub struct OfferError {
    pub path: PathBuf,
    /// "read", "copy into your presets", …
    pub action: &'static str,
    pub source: std::io::Error,
}

/// Gives the player their own copy of every factory preset they have not been given yet: the first start copies
/// all of them into `user_presets`, later starts only the ones a new version ships. Copies are ordinary user
/// presets, edited and saved in place; the preset list shows them instead of the read-only originals.
///
/// Never overwrites: a preset file the player already has is left alone (and counts as given). Every preset given
/// is recorded in [`OFFERED_LIST`], so one the player deleted stays deleted. If the list exists but cannot be read,
/// nothing is copied: guessing would bring deleted presets back.
pub fn offer_factory_presets(factory_presets: &Path, user_presets: &Path) -> FactoryOffer {
    let mut offer = FactoryOffer::default();
    let list_path = user_presets.join(OFFERED_LIST);
    let mut offered: Vec<String> = match std::fs::read_to_string(&list_path) {
        Ok(text) => {
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            offer.problems.push(OfferError { path: list_path, action: "read", source });
            return offer;
        }
    };
    let mut names: Vec<String> = match std::fs::read_dir(factory_presets) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "ron") && e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(source) => {
            offer.problems.push(OfferError { path: factory_presets.to_owned(), action: "read", source });
            return offer;
        }
    };
    names.sort();
    names.retain(|name| !offered.contains(name));
    let before = offered.len();
    for name in names {
        let target = user_presets.join(&name);
        if target.exists() {
            // The player's file of that name wins; it stands in for the factory preset from now on.
            offered.push(name);
            continue;
        }
        let source = factory_presets.join(&name);
        let copied = std::fs::read(&source)
            .map_err(|source_error| OfferError { path: source.clone(), action: "read", source: source_error })
            .and_then(|bytes| {
                write_atomic(&target, &bytes).map_err(|source| OfferError {
                    path: target.clone(),
                    action: "copy into your presets",
                    source,
                })
            });
        match copied {
            Ok(()) => {
                offer.copied.push(name.clone());
                offered.push(name);
            }
            Err(problem) => offer.problems.push(problem),
        }
    }
    if offered.len() > before {
        let mut text = String::from(
            "# Factory presets Neuralboard has copied into this folder (or found here): they are not copied again,\n\
             # so a preset you deleted stays deleted. Remove a line to get that preset back at the next start.\n",
        );
        for name in &offered {
            text.push_str(name);
            text.push('\n');
        }
        if let Err(source) = write_atomic(&list_path, text.as_bytes()) {
            offer.problems.push(OfferError { path: list_path, action: "write", source });
        }
    }
    offer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nb-paths-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A folder of shipped files with the given factory presets.
    fn factory_with(root: &Path, presets: &[&str]) -> PathBuf {
        let dir = root.join("presets");
        std::fs::create_dir_all(&dir).unwrap();
        for name in presets {
            std::fs::write(dir.join(name), format!("factory {name}")).unwrap();
        }
        dir
    }

    fn offered(user: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(user.join(OFFERED_LIST)).unwrap();
        text.lines().filter(|l| !l.starts_with('#')).map(str::to_owned).collect()
    }

    #[test]
    fn factory_presets_are_found_from_the_source_tree() {
        assert!(factory_presets().join("clean-practice.ron").is_file());
    }

    #[test]
    fn an_installed_binary_finds_the_share_folder_beside_its_bin_folder() {
        assert_eq!(installed_root_for(Path::new("/usr/bin/neuralboard")).unwrap(), Path::new(INSTALLED_ROOT));
        assert_eq!(
            installed_root_for(Path::new("/opt/nb-0.1/bin/neuralboard")).unwrap(),
            Path::new("/opt/nb-0.1/share/neuralboard")
        );
    }

    #[test]
    fn the_installed_files_win_over_a_source_tree_that_still_exists() {
        let root = scratch("choose");
        let installed = root.join("prefix/share/neuralboard");
        let source = root.join("checkout");
        factory_with(&installed, &[]);
        factory_with(&source, &[]);
        assert_eq!(choose_factory_root(None, Some(installed.clone()), &source), installed);
        // NEURALBOARD_ASSETS is taken as given.
        assert_eq!(choose_factory_root(Some(root.join("mine")), Some(installed), &source), root.join("mine"));
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn locations_without_presets_are_passed_over() {
        let root = scratch("fallback");
        let source = root.join("checkout");
        factory_with(&source, &[]);
        // `cargo run`: target/debug/neuralboard has no share folder beside it.
        assert_eq!(choose_factory_root(None, Some(root.join("target/share/neuralboard")), &source), source);
        // An installed binary whose build tree is gone.
        assert_eq!(choose_factory_root(None, None, &root.join("gone")), Path::new(INSTALLED_ROOT));
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn the_first_start_copies_every_factory_preset_and_later_starts_copy_none() {
        let root = scratch("first-start");
        let factory = factory_with(&root.join("factory"), &["clean.ron", "crunch.ron"]);
        std::fs::write(factory.join("notes.txt"), "not a preset").unwrap();
        let user = UserDirs::under(&root.join("home/data"), &root.join("home/config")).presets;

        let offer = offer_factory_presets(&factory, &user);
        assert!(offer.problems.is_empty(), "{:?}", offer.problems);
        assert_eq!(offer.copied, ["clean.ron", "crunch.ron"]);
        assert_eq!(std::fs::read_to_string(user.join("clean.ron")).unwrap(), "factory clean.ron");
        assert!(!user.join("notes.txt").exists());
        assert_eq!(offered(&user), ["clean.ron", "crunch.ron"]);

        let again = offer_factory_presets(&factory, &user);
        assert!(again.copied.is_empty() && again.problems.is_empty());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn edited_presets_are_never_overwritten_and_deleted_ones_stay_deleted() {
        let root = scratch("keep");
        let factory = factory_with(&root.join("factory"), &["clean.ron", "crunch.ron", "metal.ron"]);
        let user = root.join("presets");
        std::fs::create_dir_all(&user).unwrap();
        // The player already has a preset of that file name before the first start.
        std::fs::write(user.join("metal.ron"), "mine").unwrap();
        let offer = offer_factory_presets(&factory, &user);
        assert_eq!(offer.copied, ["clean.ron", "crunch.ron"]);
        assert_eq!(std::fs::read_to_string(user.join("metal.ron")).unwrap(), "mine");

        std::fs::write(user.join("clean.ron"), "edited").unwrap();
        std::fs::remove_file(user.join("crunch.ron")).unwrap();
        // A later version ships a new factory preset and changes an old one.
        std::fs::write(factory.join("clean.ron"), "factory clean, improved").unwrap();
        factory_with(&root.join("factory"), &["lead.ron"]);
        let offer = offer_factory_presets(&factory, &user);
        assert!(offer.problems.is_empty(), "{:?}", offer.problems);
        assert_eq!(offer.copied, ["lead.ron"], "only the new one");
        assert_eq!(std::fs::read_to_string(user.join("clean.ron")).unwrap(), "edited");
        assert!(!user.join("crunch.ron").exists(), "a deleted preset is not brought back");
        assert_eq!(offered(&user), ["clean.ron", "crunch.ron", "metal.ron", "lead.ron"]);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn an_unreadable_list_copies_nothing_and_says_so() {
        let root = scratch("unreadable");
        let factory = factory_with(&root.join("factory"), &["clean.ron"]);
        let user = root.join("presets");
        // A folder where the list should be: it cannot be read as a file.
        std::fs::create_dir_all(user.join(OFFERED_LIST)).unwrap();
        let offer = offer_factory_presets(&factory, &user);
        assert!(offer.copied.is_empty());
        assert_eq!(offer.problems.len(), 1);
        assert!(offer.problems[0].to_string().contains(OFFERED_LIST), "{}", offer.problems[0]);
        assert!(!user.join("clean.ron").exists());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_missing_factory_folder_is_reported() {
        let root = scratch("no-factory");
        let offer = offer_factory_presets(&root.join("nowhere/presets"), &root.join("presets"));
        assert!(offer.copied.is_empty());
        assert!(offer.problems[0].to_string().starts_with(&root.join("nowhere/presets").display().to_string()));
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn the_board_starts_with_the_players_copy_of_clean_practice_when_there_is_one() {
        let root = scratch("default");
        assert_eq!(default_preset(Some(&root)), factory_presets().join(DEFAULT_PRESET));
        assert_eq!(default_preset(None), factory_presets().join(DEFAULT_PRESET));
        std::fs::write(root.join(DEFAULT_PRESET), "mine").unwrap();
        assert_eq!(default_preset(Some(&root)), root.join(DEFAULT_PRESET));
        let _ = std::fs::remove_dir_all(root);
    }
}
