//! The project's RON files (presets, settings): read with a size limit and UTF-8 check, parsed with errors that
//! name the file, line and column, unknown fields reported instead of fatal (files from newer versions still load),
//! and saved atomically.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a RON file could not be loaded or saved. Every message starts with the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum RonFileError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: cannot save: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// Reads a text file of at most `max_bytes`; `what` names the kind of file in the error ("a preset").
pub fn read_text(path: &Path, max_bytes: u64, what: &str) -> Result<String, RonFileError> {
    let read_error = |source| RonFileError::Read { path: path.to_owned(), source };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > max_bytes {
        return Err(RonFileError::Invalid {
            path: path.to_owned(),
            message: format!("{size} bytes is too large for {what} (at most {max_bytes})"),
        });
    }
    let bytes = std::fs::read(path).map_err(read_error)?;
    String::from_utf8(bytes).map_err(|e| RonFileError::Invalid {
        path: path.to_owned(),
        message: format!("not a text file (invalid UTF-8 at byte {})", e.utf8_error().valid_up_to()),
    })
}

/// Parses RON text into `T`; `path` names the source in errors. Also returns the paths of the fields `T` does not
/// have (e.g. `chain.0.colour`), which were skipped.
pub fn parse<T: DeserializeOwned>(text: &str, path: &Path) -> Result<(T, Vec<String>), RonFileError> {
    let syntax = |e: ron::error::SpannedError| RonFileError::Syntax {
        path: path.to_owned(),
        line: e.span.start.line,
        column: e.span.start.col,
        message: e.code.to_string(),
    };
    let mut unknown = Vec::new();
    let mut de = ron::de::Deserializer::from_str(text).map_err(syntax)?;
    let value: T = serde_ignored::deserialize(&mut de, |ignored| unknown.push(ignored.to_string()))
        .map_err(|e| syntax(de.span_error(e)))?;
    de.end().map_err(|e| syntax(de.span_error(e)))?;
    Ok((value, unknown))
}

/// Writes atomically (see [`crate::paths::write_atomic`]): a crash or full disk mid-save leaves the old file intact.
pub fn save(path: &Path, text: &str) -> Result<(), RonFileError> {
    crate::paths::write_atomic(path, text.as_bytes())
        .map_err(|source| RonFileError::Write { path: path.to_owned(), source })
}
