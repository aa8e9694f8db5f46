//! The word rule of search, shared by every backend: a word is a maximal run
//! of letters and digits, compared lower-cased; a message matches when it
//! contains every word of the query.

use crate::error::{Error, Result};

/// Longest query, in bytes.
pub const MAX_QUERY_BYTES: usize = 512;

/// The words of a text, lower-cased, in order.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// The distinct words of a query, or a clear error when it has none.
pub fn query_words(query: &str) -> Result<Vec<String>> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(Error::invalid(format!(
            "search query is {} bytes; at most {MAX_QUERY_BYTES} are allowed",
            query.len()
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for w in words(query) {
        if !out.contains(&w) {
            out.push(w);
        }
    }
    if out.is_empty() {
        return Err(Error::invalid(format!(
            "search query {query:?} has no words to look for"
        )));
    }
    Ok(out)
}

/// Whether `body` contains every one of `query` words.
pub fn matches(body: &str, query: &[String]) -> bool {
    let have: Vec<String> = words(body).collect();
    query.iter().all(|q| have.contains(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_non_alphanumerics_and_fold_case() {
        let w: Vec<_> = words("Hello, wörld! Привет-мир 42x").collect();
        assert_eq!(w, ["hello", "wörld", "привет", "мир", "42x"]);
    }

    #[test]
    fn every_word_must_match() {
        let q = query_words("HOMEWORK due").unwrap();
        assert!(matches("the homework is due friday", &q));
        assert!(!matches("the homework is late", &q));
        assert!(!matches("homeworks due", &q));
        assert!(query_words(" ,. ").is_err());
    }
}
