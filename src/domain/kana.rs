//! Kana normalisation. Banks match holders on kana, and a wrong kana misses
//! the account, so every name passes through here exactly once on the way in.
//!
//! * [`KanaName`] is the canonical form we store: full-width katakana, upper
//!   case latin, one space between family and given name.
//! * [`KanaName::zengin`] is the form bank systems keep (全銀 character set):
//!   half-width katakana, no small kana, `-` for the long vowel, voiced marks
//!   as separate characters (ﾀﾞ).

use super::DomainError;

/// Half-width katakana U+FF66..=U+FF9D in order, as full-width katakana.
const HALF_TO_FULL: &str = "ヲァィゥェォャュョッーアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン";

/// The longest holder name the zengin record has room for.
pub const MAX_ZENGIN_LEN: usize = 30;

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct KanaName(String);

enum Mark {
    Voiced,
    SemiVoiced,
}

fn voiced_mark(c: char) -> Option<Mark> {
    match c {
        'ﾞ' | '゛' | '\u{3099}' => Some(Mark::Voiced),
        'ﾟ' | '゜' | '\u{309A}' => Some(Mark::SemiVoiced),
        _ => None,
    }
}

fn is_long_vowel(c: char) -> bool {
    matches!(
        c,
        'ー' | 'ｰ' | '-' | '－' | '‐' | '‑' | '–' | '—' | '―' | '−' | '〜' | '～'
    )
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\u{3000}' | '\t' | '・' | '･')
}

fn half_to_full(c: char) -> Option<char> {
    let code = c as u32;
    (0xFF66..=0xFF9D)
        .contains(&code)
        .then(|| HALF_TO_FULL.chars().nth((code - 0xFF66) as usize))
        .flatten()
}

fn full_to_half(c: char) -> Option<char> {
    HALF_TO_FULL
        .chars()
        .position(|f| f == c)
        .and_then(|i| char::from_u32(0xFF66 + i as u32))
}

/// Katakana that take a voiced mark, with their voiced form.
fn with_mark(base: char, mark: &Mark) -> Option<char> {
    let code = base as u32;
    let ka_to_to = matches!(
        base,
        'カ' | 'キ'
            | 'ク'
            | 'ケ'
            | 'コ'
            | 'サ'
            | 'シ'
            | 'ス'
            | 'セ'
            | 'ソ'
            | 'タ'
            | 'チ'
            | 'ツ'
            | 'テ'
            | 'ト'
    );
    let ha_row = matches!(base, 'ハ' | 'ヒ' | 'フ' | 'ヘ' | 'ホ');
    match mark {
        Mark::Voiced if ka_to_to || ha_row => char::from_u32(code + 1),
        Mark::Voiced if base == 'ウ' => Some('ヴ'),
        Mark::Voiced if base == 'ワ' => Some('ヷ'),
        Mark::SemiVoiced if ha_row => char::from_u32(code + 2),
        _ => None,
    }
}

/// The unvoiced base and the mark of a voiced katakana, e.g. ガ → (カ, ﾞ).
fn split_mark(c: char) -> Option<(char, char)> {
    if c == 'ヴ' {
        return Some(('ウ', 'ﾞ'));
    }
    let code = c as u32;
    for (delta, mark) in [(1, 'ﾞ'), (2, 'ﾟ')] {
        if let Some(base) = code.checked_sub(delta).and_then(char::from_u32) {
            let m = if mark == 'ﾞ' {
                Mark::Voiced
            } else {
                Mark::SemiVoiced
            };
            if with_mark(base, &m) == Some(c) {
                return Some((base, mark));
            }
        }
    }
    None
}

/// Small kana are written large in the zengin set (ャ → ヤ, ッ → ツ).
fn enlarge(c: char) -> char {
    match c {
        'ァ' => 'ア',
        'ィ' => 'イ',
        'ゥ' => 'ウ',
        'ェ' => 'エ',
        'ォ' => 'オ',
        'ャ' => 'ヤ',
        'ュ' => 'ユ',
        'ョ' => 'ヨ',
        'ッ' => 'ツ',
        'ヮ' => 'ワ',
        'ヵ' => 'カ',
        'ヶ' => 'ケ',
        'ヰ' => 'イ',
        'ヱ' => 'エ',
        'ヲ' => 'オ',
        other => other,
    }
}

fn invalid(message: String) -> DomainError {
    DomainError::new("invalid_kana", message)
}

impl KanaName {
    /// Normalises a name typed by a person or read from a file: hiragana or
    /// katakana, full- or half-width, with any of the usual spaces, dashes
    /// and voiced-mark forms.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let mut out = String::with_capacity(raw.len());
        let mut pending_space = false;
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            if is_separator(c) {
                pending_space = !out.is_empty();
                continue;
            }
            let mut k = if let Some(full) = half_to_full(c) {
                full
            } else if ('\u{3041}'..='\u{3096}').contains(&c) {
                char::from_u32(c as u32 + 0x60).expect("hiragana maps to katakana")
            } else if ('\u{30A1}'..='\u{30FA}').contains(&c) {
                c
            } else if is_long_vowel(c) {
                'ー'
            } else if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else if ('\u{FF10}'..='\u{FF19}').contains(&c)
                || ('\u{FF21}'..='\u{FF3A}').contains(&c)
                || ('\u{FF41}'..='\u{FF5A}').contains(&c)
            {
                char::from_u32(c as u32 - 0xFEE0)
                    .expect("full-width ASCII maps down")
                    .to_ascii_uppercase()
            } else if voiced_mark(c).is_some() {
                return Err(invalid(format!(
                    "the voiced mark '{c}' must follow a kana that takes it"
                )));
            } else {
                return Err(invalid(format!(
                    "'{c}' is not kana; give the name in katakana or hiragana"
                )));
            };
            if let Some(mark) = chars.peek().copied().and_then(voiced_mark) {
                k = with_mark(k, &mark)
                    .ok_or_else(|| invalid(format!("'{k}' cannot take a voiced mark")))?;
                chars.next();
            }
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            // Archaic voiced wa-row kana are written the modern way.
            match k {
                'ヷ' => out.push_str("ヴァ"),
                'ヸ' => out.push_str("ヴィ"),
                'ヹ' => out.push_str("ヴェ"),
                'ヺ' => out.push_str("ヴォ"),
                _ => out.push(k),
            }
        }
        if out.is_empty() {
            return Err(invalid("the kana name is empty".into()));
        }
        let name = Self(out);
        let len = name.zengin().chars().count();
        if len > MAX_ZENGIN_LEN {
            return Err(invalid(format!(
                "the name is {len} characters in zengin form; at most {MAX_ZENGIN_LEN} fit"
            )));
        }
        Ok(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a name read back from our own database (already normalised).
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The zengin half-width form bank systems keep, e.g. `ﾔﾏﾀﾞ ﾀﾛｳ`.
    pub fn zengin(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for c in self.0.chars() {
            let (base, mark) = split_mark(c).map_or((c, None), |(b, m)| (b, Some(m)));
            let base = enlarge(base);
            match base {
                'ー' => out.push('-'),
                ' ' => out.push(' '),
                _ => out.push(full_to_half(base).unwrap_or(base)),
            }
            if let Some(m) = mark {
                out.push(m);
            }
        }
        out
    }

    /// What two names are compared on: the zengin form without spaces, so
    /// that ｷﾖｳｺ matches キョウコ and a missing space does not miss.
    pub fn match_key(&self) -> String {
        self.zengin().replace(' ', "")
    }
}

impl std::fmt::Display for KanaName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// True when every character belongs to the zengin set we emit.
pub fn is_zengin_charset(s: &str) -> bool {
    s.chars().all(|c| {
        ('\u{FF71}'..='\u{FF9F}').contains(&c)
            || c.is_ascii_uppercase()
            || c.is_ascii_digit()
            || c == ' '
            || c == '-'
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn z(s: &str) -> String {
        KanaName::parse(s).unwrap().zengin()
    }

    #[test]
    fn examples() {
        assert_eq!(z("やまだ　たろう"), "ﾔﾏﾀﾞ ﾀﾛｳ");
        assert_eq!(z("ヤマダ タロウ"), "ﾔﾏﾀﾞ ﾀﾛｳ");
        assert_eq!(z("ﾔﾏﾀﾞ ﾀﾛｳ"), "ﾔﾏﾀﾞ ﾀﾛｳ");
        assert_eq!(z("キョウコ"), "ｷﾖｳｺ");
        assert_eq!(z("サトウ　ユウキ"), "ｻﾄｳ ﾕｳｷ");
        assert_eq!(z("ミツビシユ－エフジエイ"), "ﾐﾂﾋﾞｼﾕ-ｴﾌｼﾞｴｲ");
        assert_eq!(z("ﾊﾟｰｸ"), "ﾊﾟ-ｸ");
        assert_eq!(z("ヴァン"), "ｳﾞｱﾝ");
        assert_eq!(z("ｽﾐｽ・ｼﾞｮﾝ"), "ｽﾐｽ ｼﾞﾖﾝ");
        assert_eq!(z("Ｊｏｈｎ  ｓｍｉｔｈ"), "JOHN SMITH");
        assert_eq!(z("  タナカ   ハナコ "), "ﾀﾅｶ ﾊﾅｺ");
        assert_eq!(z("カ\u{3099}"), "ｶﾞ");
        assert_eq!(z("ヸ"), "ｳﾞｲ");
        assert_eq!(KanaName::parse("ﾀﾞｲｽｹ").unwrap().as_str(), "ダイスケ");
    }

    #[test]
    fn rejects() {
        for bad in ["", "   ", "山田", "ﾞｱ", "アﾞ", "タロウ!", &"ア".repeat(31)] {
            let e = KanaName::parse(bad).unwrap_err();
            assert_eq!(e.code, "invalid_kana", "{bad}");
        }
    }

    #[test]
    fn match_key_ignores_small_kana_and_spaces() {
        let a = KanaName::parse("キョウコ ヤマダ").unwrap();
        let b = KanaName::parse("ｷﾖｳｺﾔﾏﾀﾞ").unwrap();
        assert_eq!(a.match_key(), b.match_key());
    }

    /// Syllables written both ways by hand, independent of the tables above.
    const PAIRS: &[(&str, &str)] = &[
        ("ア", "ｱ"),
        ("キ", "ｷ"),
        ("ス", "ｽ"),
        ("テ", "ﾃ"),
        ("ノ", "ﾉ"),
        ("ハ", "ﾊ"),
        ("ミ", "ﾐ"),
        ("ユ", "ﾕ"),
        ("ロ", "ﾛ"),
        ("ワ", "ﾜ"),
        ("ン", "ﾝ"),
        ("ガ", "ｶﾞ"),
        ("ジ", "ｼﾞ"),
        ("ヅ", "ﾂﾞ"),
        ("ド", "ﾄﾞ"),
        ("バ", "ﾊﾞ"),
        ("ピ", "ﾋﾟ"),
        ("プ", "ﾌﾟ"),
        ("ボ", "ﾎﾞ"),
        ("ポ", "ﾎﾟ"),
        ("ヴ", "ｳﾞ"),
        ("ャ", "ｬ"),
        ("ッ", "ｯ"),
        ("ー", "ｰ"),
        ("ォ", "ｫ"),
        ("ヲ", "ｦ"),
    ];

    fn name_parts() -> impl Strategy<Value = Vec<Vec<usize>>> {
        prop::collection::vec(prop::collection::vec(0..PAIRS.len(), 1..8), 1..3)
    }

    fn build(parts: &[Vec<usize>], half: bool, sep: &str) -> String {
        parts
            .iter()
            .map(|p| {
                p.iter()
                    .map(|&i| if half { PAIRS[i].1 } else { PAIRS[i].0 })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(sep)
    }

    proptest! {
        #[test]
        fn half_and_full_width_normalise_alike(parts in name_parts()) {
            let full = KanaName::parse(&build(&parts, false, "　")).unwrap();
            let half = KanaName::parse(&build(&parts, true, " ")).unwrap();
            prop_assert_eq!(full, half);
        }

        #[test]
        fn normalising_is_idempotent(raw in "[ぁ-ゖァ-ヺｦ-ﾝー 　a-zＡ-Ｚ]{1,20}") {
            if let Ok(once) = KanaName::parse(&raw) {
                let twice = KanaName::parse(once.as_str()).unwrap();
                prop_assert_eq!(&once, &twice);
            }
        }

        #[test]
        fn zengin_form_is_a_fixpoint_in_the_zengin_charset(raw in "[ぁ-ゖァ-ヺｦ-ﾟー 　a-z0-9]{1,20}") {
            if let Ok(name) = KanaName::parse(&raw) {
                let zen = name.zengin();
                prop_assert!(is_zengin_charset(&zen), "{zen:?}");
                let again = KanaName::parse(&zen).unwrap().zengin();
                prop_assert_eq!(zen, again);
            }
        }
    }
}
