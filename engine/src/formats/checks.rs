//! What the JSON model formats share: reading a file no larger than a limit, and the checks that every number is
//! finite and vectors and matrices have the shape the file declares. Each failure names the field
//! (`decoder[3].weight[7]`) and what is wrong; the formats turn it into their own error type.

use std::path::Path;

/// Why a model file's text could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(std::io::Error),
    /// The file's size in bytes, over the limit: refused before reading, so a hostile file cannot make the player
    /// read gigabytes.
    TooLarge(u64),
}

/// The text of the file at `path`, if it is at most `max_bytes` long.
pub(crate) fn read_text(path: &Path, max_bytes: u64) -> Result<String, ReadError> {
    let size = std::fs::metadata(path).map_err(ReadError::Io)?.len();
    if size > max_bytes {
        return Err(ReadError::TooLarge(size));
    }
    std::fs::read_to_string(path).map_err(ReadError::Io)
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
