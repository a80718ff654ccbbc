//! What the JSON model formats (`neuralboard-reverb`, `neuralboard-s4d`) share: their error type, reading a file no
//! larger than a limit, the header check, and the checks that every number is finite and vectors and matrices have
//! the shape the file declares. Each failure names the field (`decoder[3].weight[7]`) and what is wrong.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A JSON model format, as its errors name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonFormat {
    /// The file's `format` field (`neuralboard-s4d`).
    pub name: &'static str,
    /// What its files are called in a sentence ("S4D model").
    pub kind: &'static str,
    /// Files larger than this are refused before reading, so a hostile file cannot make the player read gigabytes.
    pub max_bytes: u64,
    /// The newest version this player reads (it reads every one from 1).
    pub max_version: u32,
}

/// Why a JSON model file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<ModelFileError>,
    },
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the file is {size} bytes; {kind} files over {limit} bytes are refused")]
    FileTooLarge { size: u64, limit: u64, kind: &'static str },
    #[error("not a valid {format} file: {message}")]
    Json { format: &'static str, message: String },
    #[error("format \"{found}\" is not {expected}")]
    WrongFormat { found: String, expected: &'static str },
    #[error("version {found} is not supported (this player reads {})", readable(*max))]
    UnsupportedVersion { found: u32, max: u32 },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The versions a player reads, in words.
fn readable(max: u32) -> String {
    if max == 1 { "version 1".to_owned() } else { format!("versions 1 to {max}") }
}

/// A field that is not what it must be, as a [`ModelFileError`].
pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> ModelFileError {
    ModelFileError::Invalid { path: path.into(), message: message.into() }
}

impl From<Invalid> for ModelFileError {
    fn from(invalid: Invalid) -> Self {
        ModelFileError::Invalid { path: invalid.path, message: invalid.message }
    }
}

impl JsonFormat {
    /// The `format` and `version` fields of a file of this format (version 1).
    pub(crate) fn check_header(&self, format: &str, version: u32) -> Result<(), ModelFileError> {
        if format != self.name {
            return Err(ModelFileError::WrongFormat { found: format.to_owned(), expected: self.name });
        }
        if !(1..=self.max_version).contains(&version) {
            return Err(ModelFileError::UnsupportedVersion { found: version, max: self.max_version });
        }
        Ok(())
    }

    /// `text` parsed as this format's JSON (not yet validated).
    pub(crate) fn parse<T: DeserializeOwned>(&self, text: &str) -> Result<T, ModelFileError> {
        serde_json::from_str(text).map_err(|e| ModelFileError::Json { format: self.name, message: e.to_string() })
    }

    /// Reads the file at `path` (no larger than [`JsonFormat::max_bytes`], checked before reading) and parses and
    /// validates it with `parse`; every error names the file.
    pub(crate) fn load<T>(
        &self,
        path: &Path,
        parse: impl FnOnce(&str) -> Result<T, ModelFileError>,
    ) -> Result<T, ModelFileError> {
        let in_file = |e: ModelFileError| ModelFileError::InFile { path: path.to_owned(), source: Box::new(e) };
        let size = std::fs::metadata(path).map_err(|e| in_file(e.into()))?.len();
        if size > self.max_bytes {
            return Err(in_file(ModelFileError::FileTooLarge { size, limit: self.max_bytes, kind: self.kind }));
        }
        let text = std::fs::read_to_string(path).map_err(|e| in_file(e.into()))?;
        parse(&text).map_err(in_file)
    }
}

/// A field that is not what it must be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invalid {
    pub path: String,
    pub message: String,
}

pub(crate) fn check_finite(path: &str, values: &[f32]) -> Result<(), Invalid> {
    match values.iter().find(|v| !v.is_finite()) {
        Some(v) => Err(Invalid { path: path.to_owned(), message: format!("{v} is not a finite number") }),
        None => Ok(()),
    }
}

pub(crate) fn check_vec(path: &str, values: &[f32], len: usize) -> Result<(), Invalid> {
    if values.len() != len {
        return Err(Invalid { path: path.to_owned(), message: format!("{} values, expected {len}", values.len()) });
    }
    check_finite(path, values)
}

pub(crate) fn check_matrix(path: &str, rows: &[Vec<f32>], n_rows: usize, n_cols: usize) -> Result<(), Invalid> {
    if rows.len() != n_rows {
        return Err(Invalid { path: path.to_owned(), message: format!("{} rows, expected {n_rows}", rows.len()) });
    }
    for (r, row) in rows.iter().enumerate() {
        check_vec(&format!("{path}[{r}]"), row, n_cols)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_field_is_named_with_its_row() {
        assert_eq!(check_vec("bias", &[1.0, 2.0], 2), Ok(()));
        let e = check_matrix("weight", &[vec![1.0, 2.0], vec![f32::NAN, 0.0]], 2, 2).unwrap_err();
        assert_eq!((e.path.as_str(), e.message.as_str()), ("weight[1]", "NaN is not a finite number"));
        assert_eq!(check_vec("bias", &[1.0], 2).unwrap_err().message, "1 values, expected 2");
        assert_eq!(check_matrix("w", &[], 1, 1).unwrap_err().message, "0 rows, expected 1");
    }
}
