//! Zengin (全銀) institution and branch codes, and the directory format of
//! `shared/data/zengin/` (plain CSV: no quoting, fixed columns).

use super::DomainError;

macro_rules! digit_code {
    ($(#[$doc:meta])* $name:ident, $len:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                if raw.len() == $len && raw.bytes().all(|b| b.is_ascii_digit()) {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err(DomainError::new(
                        concat!("invalid_", $what, "_code"),
                        format!("{} code '{}' must be exactly {} digits", $what, raw, $len),
                    ))
                }
            }

            pub fn from_trusted(raw: String) -> Self {
                Self(raw)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

digit_code!(
    /// A 4-digit financial institution code, e.g. `0001`.
    InstitutionCode, 4, "institution"
);
digit_code!(
    /// A 3-digit branch code, unique within its institution.
    BranchCode, 3, "branch"
);

/// ゆうちょ銀行 reports accounts in the zengin form of its 記号・番号.
pub const JAPAN_POST_BANK: &str = "9900";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstitutionRecord {
    pub code: InstitutionCode,
    pub name: String,
    pub kana: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchRecord {
    pub institution: InstitutionCode,
    pub code: BranchCode,
    pub name: String,
    pub kana: String,
}

fn fields(line: &str, n: usize, lineno: usize) -> Result<Vec<&str>, DomainError> {
    let parts: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
    if parts.len() != n {
        return Err(DomainError::new(
            "invalid_directory",
            format!("line {lineno}: expected {n} fields, found {}", parts.len()),
        ));
    }
    Ok(parts)
}

fn at_line(lineno: usize, e: DomainError) -> DomainError {
    DomainError::new("invalid_directory", format!("line {lineno}: {}", e.message))
}

/// Parses `banks.csv`: `code,name,kana,romaji` with a header row.
pub fn parse_banks_csv(text: &str) -> Result<Vec<InstitutionRecord>, DomainError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f = fields(line, 4, i + 1)?;
        out.push(InstitutionRecord {
            code: InstitutionCode::parse(f[0]).map_err(|e| at_line(i + 1, e))?,
            name: f[1].to_owned(),
            kana: f[2].to_owned(),
        });
    }
    Ok(out)
}

/// Parses `branches.csv`: `bank_code,branch_code,name,kana,romaji`.
pub fn parse_branches_csv(text: &str) -> Result<Vec<BranchRecord>, DomainError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f = fields(line, 5, i + 1)?;
        out.push(BranchRecord {
            institution: InstitutionCode::parse(f[0]).map_err(|e| at_line(i + 1, e))?,
            code: BranchCode::parse(f[1]).map_err(|e| at_line(i + 1, e))?,
            name: f[2].to_owned(),
            kana: f[3].to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes() {
        assert!(InstitutionCode::parse("0001").is_ok());
        assert_eq!(
            InstitutionCode::parse("001").unwrap_err().code,
            "invalid_institution_code"
        );
        assert_eq!(
            BranchCode::parse("12a").unwrap_err().code,
            "invalid_branch_code"
        );
    }

    #[test]
    fn parses_directory() {
        let banks = parse_banks_csv("code,name,kana,romaji\n0001,みずほ,ミズホ,mizuho\n").unwrap();
        assert_eq!(banks[0].code.as_str(), "0001");
        assert_eq!(banks[0].kana, "ミズホ");
        let err = parse_banks_csv("code,name,kana,romaji\n01,x,y,z\n").unwrap_err();
        assert!(err.message.contains("line 2"), "{err}");
        let br = parse_branches_csv(
            "bank_code,branch_code,name,kana,romaji\n0001,001,東京営業部,トウキヨウ,toukiyou\n",
        )
        .unwrap();
        assert_eq!(br[0].code.as_str(), "001");
    }

    proptest! {
        #[test]
        fn code_parsers_accept_exactly_n_digits(raw in ".{0,6}") {
            let ok = InstitutionCode::parse(&raw).is_ok();
            prop_assert_eq!(ok, raw.len() == 4 && raw.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
