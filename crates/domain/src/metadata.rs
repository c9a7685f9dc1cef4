//! A key's `metadata` (docs/api.md, "The key object"): string values under
//! short keys, for the services that verify the key to know who it is for
//! without a second lookup.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::key_string::{contains_key_material, quoted_in_error};

/// Why metadata is refused (400 `invalid_parameter`, `param` `metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetadataError {
    /// More than [`Metadata::MAX_ENTRIES`] entries (after a merge).
    #[error("metadata may hold at most 20 entries")]
    TooManyEntries,
    /// A key that is not 1 to 40 characters of `[A-Za-z0-9_.-]`, or that
    /// is (part of) an API key (the key as
    /// [`quoted_in_error`] shows it).
    #[error(
        "metadata key `{0}` must be 1 to 40 characters of A-Z, a-z, 0-9, `_`, `.` and `-`, and not an API key"
    )]
    InvalidKey(String),
    /// A value holding NUL (U+0000), which no JSON column of PostgreSQL
    /// can store.
    #[error("the value of metadata key `{0}` must not hold a NUL character (U+0000)")]
    NulInValue(String),
    /// A value longer than [`Metadata::MAX_VALUE_CHARS`] characters.
    #[error("the value of metadata key `{0}` is longer than 500 characters")]
    ValueTooLong(String),
    /// A value that holds an API key (docs/api.md, "Secrets").
    #[error(
        "the value of metadata key `{0}` looks like an API key; keys do not belong in metadata"
    )]
    KeyMaterial(String),
}

/// `metadata`: at most 20 entries, each key 1 to 40 characters of
/// `[A-Za-z0-9_.-]`, each value a string of at most 500 characters holding
/// no API key. Empty by default. Keys are kept in sorted order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// The most entries.
    pub const MAX_ENTRIES: usize = 20;
    /// The longest key, in characters.
    pub const MAX_KEY_CHARS: usize = 40;
    /// The longest value, in characters.
    pub const MAX_VALUE_CHARS: usize = 500;

    /// Checks every entry and the count.
    ///
    /// # Errors
    /// [`MetadataError`] for the first entry (in key order) that breaks a
    /// rule, or the count.
    pub fn new(entries: impl IntoIterator<Item = (String, String)>) -> Result<Self, MetadataError> {
        let map: BTreeMap<String, String> = entries.into_iter().collect();
        for (key, value) in &map {
            check_entry(key, value)?;
        }
        if map.len() > Self::MAX_ENTRIES {
            return Err(MetadataError::TooManyEntries);
        }
        Ok(Metadata(map))
    }

    /// The entries, by key.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// This metadata with `patch` merged in (PATCH's semantics).
    ///
    /// # Errors
    /// [`MetadataError::TooManyEntries`] when the result has more than 20.
    pub fn merged(&self, patch: &MetadataPatch) -> Result<Metadata, MetadataError> {
        let mut map = self.0.clone();
        for (key, value) in &patch.0 {
            match value {
                Some(value) => map.insert(key.clone(), value.clone()),
                None => map.remove(key),
            };
        }
        if map.len() > Self::MAX_ENTRIES {
            return Err(MetadataError::TooManyEntries);
        }
        Ok(Metadata(map))
    }
}

/// A change of metadata: each key set to a value, or to `None` to remove
/// it; keys not named stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataPatch(BTreeMap<String, Option<String>>);

impl MetadataPatch {
    /// Checks every key and value (a patch alone may name more than 20
    /// keys only if enough of them are removals; the merge checks the
    /// count).
    ///
    /// # Errors
    /// [`MetadataError`] for the first entry that breaks a rule.
    pub fn new(
        entries: impl IntoIterator<Item = (String, Option<String>)>,
    ) -> Result<Self, MetadataError> {
        let map: BTreeMap<String, Option<String>> = entries.into_iter().collect();
        for (key, value) in &map {
            match value {
                Some(value) => check_entry(key, value)?,
                None => check_key(key)?,
            }
        }
        Ok(MetadataPatch(map))
    }
}

fn check_key(key: &str) -> Result<(), MetadataError> {
    let ok = (1..=Metadata::MAX_KEY_CHARS).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        // The part of a key after its tag fits the characters and length.
        && !contains_key_material(key);
    if ok {
        Ok(())
    } else {
        Err(MetadataError::InvalidKey(quoted_in_error(key)))
    }
}

fn check_entry(key: &str, value: &str) -> Result<(), MetadataError> {
    check_key(key)?;
    if value.chars().count() > Metadata::MAX_VALUE_CHARS {
        return Err(MetadataError::ValueTooLong(key.to_owned()));
    }
    if contains_key_material(value) {
        return Err(MetadataError::KeyMaterial(key.to_owned()));
    }
    if value.contains('\0') {
        return Err(MetadataError::NulInValue(key.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_key_name_holding_an_api_key_is_refused_without_repeating_it() {
        let key = crate::PlainKey::generate(
            crate::KeyType::Secret,
            crate::Mode::Live,
            &crate::testing::SeqSecretSource::new(5),
        );
        // The part after the tag fits the key names' characters and length.
        let tail = key.expose_secret()[8..].to_owned();
        assert_eq!(
            Metadata::new(entries(&[(&tail, "x")])),
            Err(MetadataError::InvalidKey("[redacted]".into()))
        );
        assert_eq!(
            MetadataPatch::new([(tail, None)]),
            Err(MetadataError::InvalidKey("[redacted]".into()))
        );
    }

    #[test]
    fn a_value_holding_nul_is_refused() {
        assert_eq!(
            Metadata::new(entries(&[("k", "a\0b")])),
            Err(MetadataError::NulInValue("k".into()))
        );
        assert_eq!(
            MetadataPatch::new([("k".to_owned(), Some("\0".to_owned()))]),
            Err(MetadataError::NulInValue("k".into()))
        );
    }

    #[test]
    fn keys_values_and_counts_are_checked() {
        assert!(Metadata::new(entries(&[("customer_id", "cus_42"), ("a.b-C_9", "")])).is_ok());
        assert_eq!(
            Metadata::new(entries(&[("", "x")])),
            Err(MetadataError::InvalidKey(String::new()))
        );
        assert_eq!(
            Metadata::new(entries(&[("with space", "x")])),
            Err(MetadataError::InvalidKey("with space".into()))
        );
        let long_key = "k".repeat(41);
        assert_eq!(
            Metadata::new(vec![(long_key.clone(), "x".into())]),
            Err(MetadataError::InvalidKey(long_key))
        );
        assert!(Metadata::new(vec![("k".into(), "é".repeat(500))]).is_ok());
        assert_eq!(
            Metadata::new(vec![("k".into(), "x".repeat(501))]),
            Err(MetadataError::ValueTooLong("k".into()))
        );
        let many = (0..21).map(|i| (format!("k{i}"), String::new()));
        assert_eq!(Metadata::new(many), Err(MetadataError::TooManyEntries));
    }

    #[test]
    fn a_patch_merges_and_null_removes() {
        let base = Metadata::new(entries(&[("a", "1"), ("b", "2")])).unwrap();
        let patch = MetadataPatch::new(vec![
            ("a".into(), None),
            ("c".into(), Some("3".into())),
            ("b".into(), Some("two".into())),
        ])
        .unwrap();
        let merged = base.merged(&patch).unwrap();
        assert_eq!(
            merged.iter().collect::<Vec<_>>(),
            [("b", "two"), ("c", "3")]
        );
        let full = Metadata::new((0..20).map(|i| (format!("k{i}"), String::new()))).unwrap();
        let one_more = MetadataPatch::new(vec![("z".into(), Some(String::new()))]).unwrap();
        assert_eq!(full.merged(&one_more), Err(MetadataError::TooManyEntries));
    }
}
