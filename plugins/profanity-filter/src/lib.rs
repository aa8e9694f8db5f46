//! `profanity-filter`: a tidings plugin that masks listed words.
//!
//! Config: `{"words": ["darn", "heck"], "mask": "*"}`. A word matches
//! case-insensitively (Unicode lowercase) and only as a whole word, with
//! word boundaries as Unicode defines them (UAX #29), so `heck` is masked
//! in `Heck!` but not in `checkmate`, and non-Latin words work the same.
//! Each character of a matched word becomes one `mask` (`****`).

use std::collections::HashSet;

use serde::Deserialize;
use tidings_plugin::{Error, Host, Level, Message, Plugin, Verdict};
use unicode_segmentation::UnicodeSegmentation;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    words: Vec<String>,
    #[serde(default = "default_mask")]
    mask: String,
}

fn default_mask() -> String {
    "*".to_owned()
}

/// The plugin's state: the lowercased word list.
#[derive(Debug)]
pub struct ProfanityFilter {
    words: HashSet<String>,
    mask: String,
}

impl ProfanityFilter {
    /// A filter for these words.
    pub fn new<I, S>(words: I, mask: &str) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = HashSet::new();
        for word in words {
            let word = word.as_ref().trim();
            if word.is_empty() {
                return Err("an empty word in `words`".into());
            }
            if word.split_word_bounds().count() != 1 {
                return Err(format!("{word:?} is not a single word").into());
            }
            set.insert(word.to_lowercase());
        }
        if mask.chars().count() != 1 {
            return Err(format!("`mask` must be one character, got {mask:?}").into());
        }
        Ok(ProfanityFilter {
            words: set,
            mask: mask.to_owned(),
        })
    }

    /// `text` with every listed word masked, or `None` when nothing matched.
    pub fn mask(&self, text: &str) -> Option<String> {
        let mut out = String::with_capacity(text.len());
        let mut changed = false;
        for piece in text.split_word_bounds() {
            if self.words.contains(&piece.to_lowercase()) {
                changed = true;
                for _ in piece.graphemes(true) {
                    out.push_str(&self.mask);
                }
            } else {
                out.push_str(piece);
            }
        }
        changed.then_some(out)
    }
}

impl Plugin for ProfanityFilter {
    const NAME: &'static std::ffi::CStr = c"profanity-filter";
    const VERSION: &'static std::ffi::CStr = c"1.0.0";

    fn init(host: Host, config_json: &str) -> Result<Self, Error> {
        let config: Config = serde_json::from_str(config_json)
            .map_err(|e| format!("config {config_json}: {e} (expected {{\"words\": [...]}})"))?;
        let filter = ProfanityFilter::new(&config.words, &config.mask)?;
        host.log(
            Level::Info,
            &format!("profanity-filter masks {} words", filter.words.len()),
        );
        Ok(filter)
    }

    fn before_send(&self, message: &Message) -> Result<Verdict, Error> {
        Ok(match self.mask(&message.body) {
            Some(body) => Verdict::Rewrite(body),
            None => Verdict::Allow,
        })
    }
}

tidings_plugin::export_plugin!(ProfanityFilter);

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(words: &[&str]) -> ProfanityFilter {
        ProfanityFilter::new(words, "*").unwrap()
    }

    #[test]
    fn whole_words_only_any_case() {
        let f = filter(&["heck", "darn"]);
        assert_eq!(
            f.mask("Heck, what the HECK!").unwrap(),
            "****, what the ****!"
        );
        assert_eq!(f.mask("checkmate, darned"), None);
        assert_eq!(f.mask("darn-it").unwrap(), "****-it");
        assert_eq!(f.mask("nothing here"), None);
    }

    #[test]
    fn unicode_words_and_boundaries() {
        let f = filter(&["schei\u{df}e", "блин", "café"]);
        assert_eq!(f.mask("Ach SCHEIßE!").unwrap(), "Ach *******!");
        assert_eq!(f.mask("Ну Блин.").unwrap(), "Ну ****.");
        assert_eq!(f.mask("блинчик"), None, "a longer word is another word");
        // A combining mark stays part of its word: "café" + U+0301 is
        // another word.
        assert_eq!(f.mask("Café\u{301}"), None);
        assert_eq!(f.mask("CAFÉ au lait").unwrap(), "**** au lait");
    }

    #[test]
    fn config_errors_name_the_problem() {
        let err = ProfanityFilter::init(Host::detached(), "{}").unwrap_err();
        assert!(err.to_string().contains("words"), "{err}");
        let err =
            ProfanityFilter::init(Host::detached(), r#"{"words":["two words"]}"#).unwrap_err();
        assert!(err.to_string().contains("single word"), "{err}");
    }
}
