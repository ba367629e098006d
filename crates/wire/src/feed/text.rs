//! The text of a status: the rule it is written under, and what is read out of it (#hashtags
//! and @mentions). A tag found in a text is always one `ListTagStatuses` takes, under the same
//! key.

use tonic::Status;
use unicode_normalization::char::is_combining_mark;

use crate::error::invalid_field;

/// Most characters (Unicode scalar values) in a status's text.
pub const MAX_TEXT: usize = 280;
/// Most letters, digits and `_` in a hashtag, its `#` not counted.
pub const MAX_TAG: usize = 64;
/// The shortest and longest username a mention names (the username rule: a letter, then 2 to
/// 31 ASCII letters, digits or `_`).
const USERNAME_CHARS: std::ops::RangeInclusive<usize> = 3..=32;

/// Checks a status's text as sent: 1 to [`MAX_TEXT`] characters, no control characters but
/// line breaks (`\n`, `\r`) and tabs, at least one character that is not white space. Returns
/// it as written (not trimmed).
pub fn status_text(field: &str, text: &str) -> Result<String, Status> {
    if text.is_empty() {
        return Err(invalid_field(field, "is required"));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(invalid_field(field, format!("must have at most {MAX_TEXT} characters")));
    }
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(invalid_field(field, "must not contain control characters other than line breaks and tabs"));
    }
    // why: `trim` drops Unicode White_Space, the set the not-blank patterns exclude.
    if text.trim().is_empty() {
        return Err(invalid_field(field, "must not be blank"));
    }
    Ok(text.to_owned())
}

/// A character a hashtag is made of: the contracts' `[\p{L}\p{N}_]`, a letter, a number or `_`.
pub fn is_tag_char(c: char) -> bool {
    // why: std knows no general category. Alphabetic is the letters, the letter numbers (numbers
    // anyway), the combining marks of Other_Alphabetic and the enclosed Latin letters (Ⓐ, 🄰),
    // which are symbols: those two are taken back out.
    c == '_' || c.is_numeric() || (c.is_alphabetic() && !is_combining_mark(c) && !is_enclosed_letter(c))
}

/// The symbols (General_Category=So) that Unicode counts as Alphabetic: circled, squared and
/// negative Latin letters.
fn is_enclosed_letter(c: char) -> bool {
    matches!(c, '\u{24B6}'..='\u{24E9}' | '\u{1F130}'..='\u{1F149}' | '\u{1F150}'..='\u{1F169}' | '\u{1F170}'..='\u{1F189}')
}

/// The key a hashtag is listed under: its letters in lower case, without the `#`.
pub fn tag_key(tag: &str) -> String {
    tag.to_lowercase()
}

/// Checks a hashtag as a request names it (`^#?[^\x00-\x20\x7F-\xA0#/?]{1,64}$`: any case,
/// `#` optional; a name no text could hold is valid and lists nothing); returns its [`tag_key`].
pub fn tag(field: &str, value: &str) -> Result<String, Status> {
    if value.is_empty() {
        return Err(invalid_field(field, "is required"));
    }
    let bare = value.strip_prefix('#').unwrap_or(value);
    let allowed = |c: char| !matches!(c, '\0'..=' ' | '\u{7F}'..='\u{A0}' | '#' | '/' | '?');
    if !(1..=MAX_TAG).contains(&bare.chars().count()) || !bare.chars().all(allowed) {
        return Err(invalid_field(
            field,
            format!("must be 1 to {MAX_TAG} characters, no white space, control characters, #, / or ?"),
        ));
    }
    Ok(tag_key(bare))
}

/// The #hashtags of a text as [`tag_key`]s, each once, in order of first appearance. A tag is
/// `#` and the whole run of tag characters after it, 1 to [`MAX_TAG`] of them (a longer run is
/// no tag); the `#` must not follow a tag character (`a#b` is no tag).
pub fn hashtags(text: &str) -> Vec<String> {
    let tags =
        runs_after(text, '#', is_tag_char).filter(|run| (1..=MAX_TAG).contains(&run.chars().count())).map(tag_key);
    distinct(tags)
}

/// The usernames @mentioned in a text, in lower case, each once, in order of first appearance.
/// A mention is `@` and the run of ASCII letters, digits and `_` after it when that run is a
/// username (a letter, then 2 to 31 more); the `@` must not follow a tag character
/// (`ada@example.com` mentions nobody).
pub fn mentions(text: &str) -> Vec<String> {
    let names = runs_after(text, '@', |c| c.is_ascii_alphanumeric() || c == '_')
        .filter(|run| USERNAME_CHARS.contains(&run.len()) && run.starts_with(|c: char| c.is_ascii_alphabetic()))
        .map(str::to_ascii_lowercase);
    distinct(names)
}

/// For each `sigil` that does not follow a tag character, the longest run of `member`s right
/// after it (possibly empty), in order.
fn runs_after(text: &str, sigil: char, member: fn(char) -> bool) -> impl Iterator<Item = &str> {
    let mut previous = None;
    text.char_indices().filter_map(move |(at, c)| {
        let starts = c == sigil && !previous.is_some_and(is_tag_char);
        previous = Some(c);
        starts.then(|| {
            let rest = &text[at + c.len_utf8()..];
            &rest[..rest.find(|c: char| !member(c)).unwrap_or(rest.len())]
        })
    })
}

/// The items, repeats dropped (the first occurrence keeps its place).
fn distinct(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for item in items {
        if !kept.contains(&item) {
            kept.push(item);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::refuses;

    #[test]
    fn status_text_is_checked_as_sent_and_kept_as_written() {
        let longest = "é".repeat(MAX_TEXT);
        for good in ["hi", "  hi \n", "line\nnext\r\nthird\ttab", "\u{a0}x", "\u{200b}", "🌸", &longest] {
            assert_eq!(status_text("text", good).unwrap(), good, "{good:?}");
        }
        let too_long = format!("{longest}x");
        let blanks = [" ", "\n\r\t", "\u{a0}", "\u{3000}", "\u{2028}", "\u{85}"];
        let controls = ["bell\u{7}", "a\u{0}", "a\u{b}b", "a\u{c}b", "a\u{1b}[31m", "a\u{7f}", "a\u{85}b", "a\u{9f}"];
        for bad in ["", too_long.as_str()].into_iter().chain(blanks).chain(controls) {
            refuses(status_text("text", bad), "text");
        }
    }

    #[test]
    fn tag_characters_are_letters_numbers_and_underscore() {
        for good in ['a', 'Z', 'é', 'ß', 'ǅ', 'ʰ', '日', 'ك', '٣', '7', 'Ⅻ', '½', '²', '_'] {
            assert!(is_tag_char(good), "{good:?}");
        }
        for bad in ['#', '-', ' ', '\u{301}', '\u{903}', '\u{345}', 'Ⓐ', 'ⓩ', '🄰', '🅐', '🅰', '🌸', '\u{200d}', '.']
        {
            assert!(!is_tag_char(bad), "{bad:?}");
        }
    }

    #[test]
    fn tag_characters_are_the_contracts_letter_and_number_classes() {
        let contract = regex::Regex::new(r"^[\p{L}\p{N}_]$").expect("the contract's class");
        // why: std may know a newer Unicode than the regex crate; a character assigned since is
        // unassigned (Cn) to the regex crate, so only the ones it knows are compared.
        let unassigned = regex::Regex::new(r"^\p{Cn}$").expect("a class");
        let differ: Vec<String> = ('\0'..=char::MAX)
            .map(|c| (c, c.to_string()))
            .filter(|(c, one)| !unassigned.is_match(one) && is_tag_char(*c) != contract.is_match(one))
            .map(|(c, _)| format!("U+{:04X}", c as u32))
            .collect();
        assert!(differ.is_empty(), "{} differ: {:?}", differ.len(), &differ[..differ.len().min(20)]);
    }

    #[test]
    fn a_tag_is_named_with_or_without_its_hash_and_listed_in_lower_case() {
        assert_eq!(tag("tag", "Rust").unwrap(), "rust");
        assert_eq!(tag("tag", "#Straße_2024").unwrap(), "straße_2024");
        assert_eq!(tag("tag", "#日本").unwrap(), "日本");
        assert_eq!(tag("tag", &"É".repeat(MAX_TAG)).unwrap(), "é".repeat(MAX_TAG));
        assert_eq!(tag("tag", &format!("#{}", "a".repeat(MAX_TAG))).unwrap(), "a".repeat(MAX_TAG));
        let too_long = "a".repeat(MAX_TAG + 1);
        for bad in ["", "#", "##rust", "rust#", "ru st", " rust", "rust\n", "a/b", "a?b", "a\u{A0}b", &too_long] {
            refuses(tag("tag", bad), "tag");
        }
        // why: a name no text could hold as a tag is a valid name that lists nothing
        assert_eq!(tag("tag", "Rust-Lang").unwrap(), "rust-lang");
    }

    #[test]
    fn hashtags_are_whole_runs_after_a_free_hash() {
        assert_eq!(hashtags("#Rust and #rust, #RUST!"), ["rust"]);
        assert_eq!(hashtags("a #b #c_1 #日本語 #٣"), ["b", "c_1", "日本語", "٣"]);
        assert_eq!(hashtags("#rust-lang #tokio.rs"), ["rust", "tokio"], "a run ends at any other character");
        assert!(hashtags("a#b ü#b _#b 9#b").is_empty(), "a # after a tag character starts no tag");
        assert_eq!(hashtags("##double (#paren) \n#line"), ["double", "paren", "line"]);
        assert!(hashtags("# #-x #\u{301}a").is_empty(), "a # needs a tag character right after it");
        assert_eq!(hashtags("#Café #CAFÉ"), ["café"]);
        let longest = "x".repeat(MAX_TAG);
        assert_eq!(hashtags(&format!("#{longest} #{longest}y #ok")), [longest.as_str(), "ok"], "too long: no tag");
    }

    #[test]
    fn mentions_name_usernames_after_a_free_at() {
        assert_eq!(mentions("hi @Ada and @bob_1, @ADA again"), ["ada", "bob_1"]);
        assert_eq!(mentions("@@grace (@linus) \n@ken."), ["grace", "linus", "ken"]);
        assert!(mentions("ada@example.com é@ada _@ada 9@ada").is_empty(), "an @ after a tag character");
        assert!(mentions("@ab @9lives @_under @").is_empty(), "too short, or not starting with a letter");
        let longest = format!("a{}", "b".repeat(31));
        assert_eq!(mentions(&format!("@{longest} @{longest}c")), [longest.as_str()], "a longer run names nobody");
        assert_eq!(mentions("@adaé"), ["ada"], "a name ends where ASCII ends, as in chats");
    }

    /// A tiny deterministic generator (xorshift), so the properties below run the same each time.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        /// Text of up to `max` characters, dense in sigils, tag characters and boundaries.
        fn text(&mut self, max: usize) -> String {
            const PARTS: [&str; 20] = [
                "#", "@", "a", "Z", "_", "7", "é", "İ", "日", "٣", "\u{301}", "Ⓐ", " ", "\n", "\r", "\t", "-", "🌸",
                "\u{0}", "\u{85}",
            ];
            let len = self.below(max + 1);
            (0..len).map(|_| PARTS[self.below(PARTS.len())]).collect()
        }
    }

    #[test]
    fn every_tag_found_is_a_tag_a_request_may_name_under_the_same_key() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let text = rng.text(40);
            let tags = hashtags(&text);
            // what follows each `#` as written, up to the first character no tag has
            let written: Vec<&str> = text
                .match_indices('#')
                .map(|(at, _)| &text[at + 1..])
                .map(|rest| &rest[..rest.find(|c: char| !is_tag_char(c)).unwrap_or(rest.len())])
                .collect();
            for found in &tags {
                let named = written.iter().any(|run| tag("tag", run).ok().as_deref() == Some(found.as_str()));
                assert!(named, "{text:?} gave {found:?}, which no tag written there is listed under");
            }
            assert_eq!(distinct(tags.iter().cloned()), tags, "{text:?}: each once");
        }
    }

    #[test]
    fn every_mention_found_is_a_lowercase_username_written_after_an_at() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let text = rng.text(40);
            let names = mentions(&text);
            for name in &names {
                assert!(USERNAME_CHARS.contains(&name.len()), "{text:?} gave {name:?}");
                assert!(name.starts_with(|c: char| c.is_ascii_lowercase()), "{text:?} gave {name:?}");
                assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
                assert!(text.to_ascii_lowercase().contains(&format!("@{name}")), "{text:?} gave {name:?}");
            }
            assert_eq!(distinct(names.iter().cloned()), names, "{text:?}: each once");
        }
    }

    #[test]
    fn status_text_accepts_exactly_what_its_rule_says() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        for _ in 0..20_000 {
            let text = rng.text(300);
            let chars: Vec<char> = text.chars().collect();
            let expected = !chars.is_empty()
                && chars.len() <= MAX_TEXT
                && chars.iter().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
                && chars.iter().any(|c| !c.is_whitespace());
            assert_eq!(status_text("text", &text).is_ok(), expected, "{text:?}");
        }
    }
}
