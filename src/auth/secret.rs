//! [`Secret`]: a password or token that never prints.

use std::fmt;

/// A password or token. Its `Debug` and `Display` print `Secret(***)`, so a secret inside a
/// logged struct, an error or a `tracing` field never shows; [`expose`](Secret::expose) is the
/// one way to read it, for the code that sends it to the server.
///
/// It is not zeroized on drop (the client libraries it is handed to keep their own copies).
///
/// ```
/// use switchover::auth::Secret;
///
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s:?} {s}"), "Secret(***) Secret(***)");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, to hand to the server. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::from(String::from("p@ss"));
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s:#?}"), "Secret(***)");
        assert_eq!(s.to_string(), "Secret(***)");
        assert_eq!(s.expose(), "p@ss");
        assert_eq!(s, Secret::from("p@ss"));
    }
}
