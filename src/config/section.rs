//! The seam every config struct implements ([`Section`]) and the reader that names the path
//! of a value it cannot read ([`deserialize`]).

use serde::{Deserialize, Deserializer};

use super::error::{ConfigPath, InvalidConfig};

/// A config section: plain data that serde reads, turned into the value its builder makes
/// with that builder's own validation.
///
/// Every field of a section is optional: a field left out keeps the builder's default (or
/// the base a caller starts from, see [`RetryConfig::build_from`](super::RetryConfig::build_from)),
/// so an empty section builds exactly what the builder builds by default. Errors name the
/// rejected value by its dotted path under the path the section is built at.
///
/// An adapter adds its config as one more section in its own file: a struct of the adapter
/// builder's knobs that nests the core sections (`retry`, `budget`, `health`, `router`) and
/// builds each at `at.join("retry")`, … so their errors read `redis.retry.max_attempts`.
pub trait Section {
    /// What the section builds: a policy, a budget, settings for a builder.
    type Output;

    /// Validates the section and builds its value; a rejected value is named by its path
    /// under `at`.
    ///
    /// # Errors
    ///
    /// An [`InvalidConfig`] naming the first rejected value.
    fn build_at(&self, at: &ConfigPath) -> Result<Self::Output, InvalidConfig>;

    /// [`build_at`](Self::build_at) the root: fields are named by themselves.
    ///
    /// # Errors
    ///
    /// An [`InvalidConfig`] naming the first rejected value.
    fn build(&self) -> Result<Self::Output, InvalidConfig> {
        self.build_at(&ConfigPath::root())
    }
}

/// Reads a `T` (a section, or a struct of your own that holds sections) from any serde
/// deserializer, naming the path of a value that cannot be read: `"2x"` where a duration
/// belongs, a misspelt field, a string where a number belongs.
///
/// ```
/// use serde::de::value::{Error, MapDeserializer};
/// use switchover::config::{self, RetryConfig};
///
/// // Any serde format will do (TOML, JSON, YAML, the environment); here a map of strings.
/// let fields = MapDeserializer::<_, Error>::new([("max_attempts", "four")].into_iter());
/// let err = config::deserialize::<RetryConfig, _>(fields).unwrap_err();
/// assert_eq!(err.path(), "max_attempts");
/// ```
///
/// # Errors
///
/// An [`InvalidConfig`] whose path is the dotted path of the value that could not be read
/// (empty when the document itself is malformed) and whose reason is the deserializer's
/// message.
pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, InvalidConfig>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        InvalidConfig::new(path, without_source_quote(&e.into_inner().to_string()))
    })
}

/// A deserializer's message without the lines that quote the document (TOML's
/// `3 | password = "…` excerpt and its `|` / `^^^` markers): the quoted line may hold a secret.
fn without_source_quote(message: &str) -> String {
    let quotes_source = |line: &str| {
        let rest = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit());
        rest.trim_start().starts_with('|')
    };
    if !message.lines().any(quotes_source) {
        return message.to_owned();
    }
    let kept: Vec<&str> = message
        .lines()
        .filter(|line| !quotes_source(line) && !line.trim().is_empty())
        .collect();
    kept.join(": ")
}

#[cfg(test)]
mod tests {
    use super::without_source_quote;

    #[test]
    fn source_quotes_are_left_out_of_messages() {
        let toml_error = "TOML parse error at line 3, column 12\n  |\n3 | password = \"hunter2\n  |            ^\ninvalid basic string\n";
        let cleaned = without_source_quote(toml_error);
        assert_eq!(
            cleaned,
            "TOML parse error at line 3, column 12: invalid basic string"
        );
        assert!(!cleaned.contains("hunter2"));
        assert_eq!(
            without_source_quote("invalid type: integer `5`"),
            "invalid type: integer `5`"
        );
    }
}
