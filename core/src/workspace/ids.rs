//! Validation of the names that become paths or object names: instance ids, owners and meta ids.

use crate::error::{Error, Result};

const MAX_ID_LEN: usize = 128;

/// True for `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`: safe as one path component and in object names.
fn is_valid_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.len() <= MAX_ID_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks an instance id before any file is touched.
pub fn validate_instance_id(id: &str) -> Result<()> {
    if is_valid_name(id) {
        Ok(())
    } else {
        Err(Error::InvalidId(printable(id)))
    }
}

/// Checks the owner and meta id of an InitWorkspace request; both become parts of object names.
pub fn validate_metadata_field(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "metadata.{field} is required"
        )));
    }
    if !is_valid_name(value) {
        return Err(Error::InvalidArgument(format!(
            "metadata.{field} {:?} is not valid: use 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit",
            printable(value)
        )));
    }
    Ok(())
}

/// A bounded, control-character-free rendering of a user-supplied name for error messages.
/// Caller-supplied text made safe to echo in a message: bounded, control characters replaced.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .take(140)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for id in ["a", "ws-1", "A.b_c-d", "0abc", &"x".repeat(128)] {
            assert!(validate_instance_id(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_ids_that_could_escape_or_surprise() {
        for id in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/abs",
            "-rf",
            ".hidden",
            "a\0b",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(validate_instance_id(id).is_err(), "{id:?}");
        }
    }

    #[test]
    fn metadata_must_be_present_and_valid() {
        assert!(validate_metadata_field("owner", "").is_err());
        assert!(validate_metadata_field("owner", "user/1").is_err());
        assert!(validate_metadata_field("meta_id", "amber-ox-12").is_ok());
    }
}
