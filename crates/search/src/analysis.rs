//! How text becomes searchable, shared by the index, the query parser and the snippet
//! highlighter so that all three agree on what a "word" is.
//!
//! Two analyses run over every chat's text:
//! - words: runs of letters and digits outside CJK scripts, lowercased, folded to ASCII where
//!   possible and stemmed as English ("meetings" finds "meeting");
//! - CJK: runs of Han, kana and Hangul, indexed as every single character plus every pair of
//!   neighbours (the bigrams Elasticsearch's `cjk_bigram` produces), so a phrase such as
//!   猫が好き matches as the sequence of its bigrams, and a single character still matches.

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// Tokenizer names under which the index registers the analyses.
pub const WORDS: &str = "chatmesh_words";
pub const CJK: &str = "chatmesh_cjk";

/// Longest query accepted, in characters (the wire crate checks it before the analyzer runs).
pub use chatmesh_wire::chat::MAX_QUERY_CHARS;

/// Whether `c` belongs to a script written without spaces between words (Han, kana) or one
/// searched by syllable (Hangul).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF       // Hangul Jamo
        | 0x3005 | 0x3007     // 々 〇
        | 0x3040..=0x30FF     // Hiragana, Katakana
        | 0x3130..=0x318F     // Hangul compatibility Jamo
        | 0x31F0..=0x31FF     // Katakana phonetic extensions
        | 0x3400..=0x4DBF     // CJK extension A
        | 0x4E00..=0x9FFF     // CJK unified ideographs
        | 0xAC00..=0xD7AF     // Hangul syllables
        | 0xF900..=0xFAFF     // CJK compatibility ideographs
        | 0xFF66..=0xFF9F     // half-width Katakana
        | 0x20000..=0x3134F   // CJK extensions B–G
    )
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() && !is_cjk(c)
}

/// Splits text into runs of word characters (CJK excluded).
#[derive(Clone, Default)]
pub struct WordTokenizer {
    token: Token,
}

pub struct WordStream<'a> {
    text: &'a str,
    at: usize,
    token: &'a mut Token,
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = WordStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream<'a> {
        self.token.reset();
        WordStream { text, at: 0, token: &mut self.token }
    }
}

impl TokenStream for WordStream<'_> {
    fn advance(&mut self) -> bool {
        let rest = &self.text[self.at..];
        let Some(start) = rest.char_indices().find(|(_, c)| is_word_char(*c)).map(|(i, _)| self.at + i) else {
            self.at = self.text.len();
            return false;
        };
        let end = self.text[start..]
            .char_indices()
            .find(|(_, c)| !is_word_char(*c))
            .map_or(self.text.len(), |(i, _)| start + i);
        self.at = end;
        self.token.text.clear();
        self.token.text.push_str(&self.text[start..end]);
        self.token.offset_from = start;
        self.token.offset_to = end;
        self.token.position = self.token.position.wrapping_add(1);
        true
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

/// Emits, for each CJK run, every character and every pair of neighbouring characters; a
/// character and the pair it starts share a position, so consecutive pairs form a phrase.
#[derive(Clone, Default)]
pub struct CjkTokenizer {
    token: Token,
}

pub struct CjkStream {
    /// (offset_from, offset_to, position, text)
    tokens: std::vec::IntoIter<(usize, usize, usize, String)>,
    token: Token,
}

impl Tokenizer for CjkTokenizer {
    type TokenStream<'a> = CjkStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CjkStream {
        self.token.reset();
        let mut tokens = Vec::new();
        let mut position = 0;
        for run in cjk_runs(text) {
            let chars: Vec<(usize, char)> = text[run.0..run.1].char_indices().map(|(i, c)| (run.0 + i, c)).collect();
            for (i, (from, c)) in chars.iter().enumerate() {
                let to = from + c.len_utf8();
                tokens.push((*from, to, position, c.to_string()));
                if let Some((next_from, next)) = chars.get(i + 1) {
                    tokens.push((*from, next_from + next.len_utf8(), position, format!("{c}{next}")));
                }
                position += 1;
            }
            // why: a gap keeps a phrase from matching across two separate runs.
            position += 1;
        }
        CjkStream { tokens: tokens.into_iter(), token: Token::default() }
    }
}

impl TokenStream for CjkStream {
    fn advance(&mut self) -> bool {
        match self.tokens.next() {
            Some((from, to, position, text)) => {
                self.token = Token { offset_from: from, offset_to: to, position, text, position_length: 1 };
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// Byte ranges of the maximal CJK runs of `text`.
pub fn cjk_runs(text: &str) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (is_cjk(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, text.len()));
    }
    runs
}

/// The word analysis: tokenizer and filters.
pub fn words_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(WordTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(Stemmer::new(Language::English))
        .build()
}

pub fn cjk_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(CjkTokenizer::default()).build()
}

/// Analyzed words of `text` with their byte ranges.
fn analyzed_words(text: &str) -> Vec<(String, usize, usize)> {
    let mut analyzer = words_analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        let t = stream.token();
        out.push((t.text.clone(), t.offset_from, t.offset_to));
    }
    out
}

/// One thing a query asks for: a word, a phrase of words, or a CJK run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    /// Analyzed words that must appear in this order (one word: anywhere).
    Words(Vec<String>),
    /// A CJK run as written: its characters must appear in this order.
    Cjk(String),
}

/// A parsed query: every clause must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedQuery {
    pub clauses: Vec<Clause>,
}

/// Parses what a user typed: words, `"quoted phrases"` and CJK runs, all required. A query
/// with no word the analyzer keeps ("?!", an emoji) has no clauses and matches nothing. Each
/// clause takes at least one of the query's characters, so their number is bounded by
/// [`MAX_QUERY_CHARS`]. The error says what is wrong, for a message naming the field.
pub fn parse_query(query: &str) -> Result<ParsedQuery, String> {
    let query = query.trim();
    if query.is_empty() {
        return Err("is required".into());
    }
    if query.chars().count() > MAX_QUERY_CHARS {
        return Err(format!("must have at most {MAX_QUERY_CHARS} characters"));
    }
    let mut clauses = Vec::new();
    // why: an unbalanced quote quotes to the end, as most search boxes do.
    for (i, part) in query.split('"').enumerate() {
        let quoted = i % 2 == 1;
        let words: Vec<String> = analyzed_words(part).into_iter().map(|(w, _, _)| w).collect();
        if quoted && words.len() > 1 {
            clauses.push(Clause::Words(words));
        } else {
            clauses.extend(words.into_iter().map(|w| Clause::Words(vec![w])));
        }
        for (from, to) in cjk_runs(part) {
            clauses.push(Clause::Cjk(part[from..to].to_owned()));
        }
    }
    clauses.dedup();
    Ok(ParsedQuery { clauses })
}

/// Whether `text` (as it is now) matches every clause of `query`: what a search result is
/// checked against before it is shown, since the index may hold an older text.
pub fn matches(text: &str, query: &ParsedQuery) -> bool {
    let words: Vec<String> = analyzed_words(text).into_iter().map(|(w, _, _)| w).collect();
    query.clauses.iter().all(|clause| match clause {
        Clause::Words(phrase) => words.windows(phrase.len()).any(|w| w == phrase.as_slice()),
        Clause::Cjk(run) => text.contains(run.as_str()),
    })
}

/// Characters of context shown around the first hit.
const SNIPPET_CHARS: usize = 160;

/// A snippet of `text` around the first hit of `query`: HTML-escaped, `<em>` around hits,
/// `…` where text was cut. Text without a hit (e.g. found through a stem the highlighter
/// misses) gives its beginning.
pub fn snippet(text: &str, query: &ParsedQuery) -> String {
    let mut hits = highlights(text, query);
    hits.sort_unstable();
    let merged = hits.into_iter().fold(Vec::<(usize, usize)>::new(), |mut acc, (from, to)| {
        match acc.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => acc.push((from, to)),
        }
        acc
    });
    // why: a window of SNIPPET_CHARS starting a little before the first hit.
    let first = merged.first().map_or(0, |h| h.0);
    let lead = text[..first].chars().rev().take(SNIPPET_CHARS / 4).map(char::len_utf8).sum::<usize>();
    let start = first - lead;
    let end = text[start..].char_indices().nth(SNIPPET_CHARS).map_or(text.len(), |(i, _)| start + i);
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut at = start;
    for (from, to) in merged.into_iter().filter(|(from, _)| *from < end) {
        let to = to.min(end);
        escape_into(&mut out, &text[at..from]);
        out.push_str("<em>");
        escape_into(&mut out, &text[from..to]);
        out.push_str("</em>");
        at = to;
    }
    escape_into(&mut out, &text[at..end]);
    if end < text.len() {
        out.push('…');
    }
    out
}

/// Byte ranges of `text` that `query` matched.
fn highlights(text: &str, query: &ParsedQuery) -> Vec<(usize, usize)> {
    let mut wanted = std::collections::HashSet::new();
    let mut runs = Vec::new();
    for clause in &query.clauses {
        match clause {
            Clause::Words(words) => wanted.extend(words.iter().map(String::as_str)),
            Clause::Cjk(run) => runs.push(run.as_str()),
        }
    }
    let mut hits: Vec<(usize, usize)> = analyzed_words(text)
        .into_iter()
        .filter(|(word, _, _)| wanted.contains(word.as_str()))
        .map(|(_, from, to)| (from, to))
        .collect();
    for run in runs {
        hits.extend(text.match_indices(run).map(|(i, m)| (i, i + m.len())));
    }
    hits
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(mut analyzer: TextAnalyzer, text: &str) -> Vec<(String, usize)> {
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push((stream.token().text.clone(), stream.token().position));
        }
        out
    }

    #[test]
    fn words_are_stemmed_folded_and_split_from_cjk() {
        let words: Vec<String> =
            tokens(words_analyzer(), "Meetings at the Café猫が好きtomorrow").into_iter().map(|t| t.0).collect();
        assert_eq!(words, vec!["meet", "at", "the", "cafe", "tomorrow"]);
    }

    #[test]
    fn cjk_runs_become_characters_and_overlapping_pairs() {
        let got = tokens(cjk_analyzer(), "猫が好き and 犬");
        let expected = [("猫", 0), ("猫が", 0), ("が", 1), ("が好", 1), ("好", 2), ("好き", 2), ("き", 3), ("犬", 5)];
        assert_eq!(got, expected.iter().map(|(t, p)| (t.to_string(), *p)).collect::<Vec<_>>());
    }

    #[test]
    fn queries_parse_into_required_clauses() {
        let q = parse_query(r#"Planning "Release Notes" 猫が好き"#).unwrap();
        assert_eq!(
            q.clauses,
            vec![
                Clause::Words(vec!["plan".into()]),
                Clause::Words(vec!["releas".into(), "note".into()]),
                Clause::Cjk("猫が好き".into()),
            ]
        );
        assert_eq!(parse_query("  ").unwrap_err(), "is required");
        assert!(parse_query("?!").unwrap().clauses.is_empty(), "no word: matches nothing");
        assert_eq!(parse_query(&"a ".repeat(20)).unwrap().clauses.len(), 1, "repeated words count once");
        let many = (0..60).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        assert_eq!(parse_query(&many).unwrap().clauses.len(), 60);
        assert!(parse_query(&"x".repeat(257)).is_err());
    }

    #[test]
    fn current_text_is_checked_clause_by_clause() {
        let q = parse_query(r#"meeting "release notes" 猫が"#).unwrap();
        assert!(matches("The release notes: meetings about 猫が好き", &q));
        assert!(!matches("The notes release: meetings about 猫が好き", &q), "the phrase in order");
        assert!(!matches("release notes meetings 猫", &q), "the CJK run whole");
    }

    #[test]
    fn snippets_escape_and_mark_hits() {
        let q = parse_query("meeting 猫").unwrap();
        assert_eq!(snippet("<b>Meetings</b> & 猫", &q), "&lt;b&gt;<em>Meetings</em>&lt;/b&gt; &amp; <em>猫</em>");
        let long = format!("{} needle {}", "a ".repeat(200), "b ".repeat(200));
        let s = snippet(&long, &parse_query("needle").unwrap());
        assert!(s.starts_with('…') && s.ends_with('…') && s.contains("<em>needle</em>"), "{s}");
        assert!(s.chars().count() < 200);
        assert_eq!(snippet("no hit here", &parse_query("absent").unwrap()), "no hit here");
    }
}
