//! Typed identifiers. Every id is a UUIDv7 in simple (32 hex digit) form: it
//! sorts by creation time and fits ISO 20022 Max35Text on the wire.

use super::DomainError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().simple().to_string())
            }

            /// Accepts an id from outside (a URL, a bank's document): 1 to 35
            /// characters of ASCII letters, digits and `-`.
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                let ok = !raw.is_empty()
                    && raw.len() <= 35
                    && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if ok {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err(DomainError::new(
                        "invalid_id",
                        format!("{} must be 1 to 35 letters, digits or '-'", stringify!($name)),
                    ))
                }
            }

            /// Wraps a value read back from our own database.
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

id_type!(
    /// A welfare case (世帯), which holds subjects.
    CaseId
);
id_type!(
    /// A person in a case whose deposits are inquired about.
    SubjectId
);
id_type!(
    /// What a caseworker filed: subjects × institutions × kinds.
    RequestId
);
id_type!(
    /// One subject at one institution; the unit a bank answers.
    InquiryId
);
id_type!(
    /// Inquiries for one institution sent together; stable across resends.
    BatchId
);
id_type!(
    /// One claim of a batch by a dispatcher: the fencing token.
    ClaimToken
);
id_type!(
    /// One event of the case-file feed; receivers de-duplicate on it.
    EventId
);
id_type!(
    /// One comprehensive inquiry or re-query of a case's departments.
    FetchRunId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_fit_max35_and_parse_back() {
        let id = InquiryId::generate();
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(InquiryId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    fn rejects_bad_ids() {
        assert!(BatchId::parse("").is_err());
        assert!(BatchId::parse(&"a".repeat(36)).is_err());
        assert!(BatchId::parse("a b").is_err());
        assert!(BatchId::parse("<x>").is_err());
    }
}
