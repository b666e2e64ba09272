//! Document names: `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`. The same rule guards the URL, the store's
//! file names and the command line, so a name can never climb out of the data directory (no `/`, no
//! leading `.`, nothing percent-encoded).

pub const MAX_LEN: usize = 128;

/// Returns why `name` is not a valid document name, or `None` if it is.
pub fn invalid_reason(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Some("document name is empty");
    }
    if bytes.len() > MAX_LEN {
        return Some("document name is longer than 128 characters");
    }
    if !bytes[0].is_ascii_alphanumeric() {
        return Some("document name must start with a letter or digit");
    }
    if !bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Some("document name may only hold letters, digits, '.', '_' and '-'");
    }
    None
}

pub fn is_valid(name: &str) -> bool {
    invalid_reason(name).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["a", "Session-2026_11.private", "0", &"x".repeat(128)] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in ["", ".hidden", "..", "a/b", "a%2Fb", "%2e%2e", "a\0b", "é", "a b", &"x".repeat(129)] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
