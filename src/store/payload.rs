//! How batch payloads are kept: deflated, since the XML of a batch
//! (about 1.5 KB per inquiry) was half of all the bytes the database wrote
//! and held. The bytes sent to a bank are always the original document;
//! only the stored copy is compressed.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

use super::{Result, StoreError};

/// The `encoding` column of `batch_payloads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    /// As written before migration 9, and blanked payloads.
    Identity,
    /// Raw deflate (RFC 1951).
    Deflate,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Deflate => "deflate",
        }
    }

    fn parse(raw: &str) -> Result<Self> {
        match raw {
            "identity" => Ok(Self::Identity),
            "deflate" => Ok(Self::Deflate),
            other => Err(StoreError::Corrupt(format!(
                "unknown payload encoding '{other}'"
            ))),
        }
    }
}

/// The stored form of a payload. The fastest level: the XML's tags repeat
/// for every inquiry, so even that shrinks it several times over, and
/// sealing a batch stays cheap.
pub(super) fn pack(document: &[u8]) -> (Encoding, Vec<u8>) {
    let mut encoder =
        DeflateEncoder::new(Vec::with_capacity(document.len() / 4), Compression::fast());
    let packed = encoder
        .write_all(document)
        .and_then(|()| encoder.finish())
        .expect("deflating into a Vec cannot fail");
    (Encoding::Deflate, packed)
}

/// The document a stored payload holds.
pub(super) fn unpack(encoding: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
    match Encoding::parse(encoding)? {
        Encoding::Identity => Ok(stored),
        Encoding::Deflate => {
            let mut document = Vec::with_capacity(stored.len() * 6);
            DeflateDecoder::new(stored.as_slice())
                .read_to_end(&mut document)
                .map_err(|e| {
                    StoreError::Corrupt(format!("a stored payload does not inflate: {e}"))
                })?;
            Ok(document)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Encoding, pack, unpack};
    use proptest::prelude::*;

    #[test]
    fn a_batch_document_shrinks_and_comes_back_whole() {
        let document: Vec<u8> = (0..500)
            .map(|i| format!("<Inq><Id>{i:032x}</Id><Nm>ヤマダ タロウ</Nm><BirthDt>1950-01-01</BirthDt></Inq>"))
            .collect::<String>()
            .into_bytes();
        let (encoding, stored) = pack(&document);
        assert_eq!(encoding, Encoding::Deflate);
        assert!(stored.len() * 4 < document.len(), "{} bytes", stored.len());
        assert_eq!(unpack(encoding.as_str(), stored).unwrap(), document);
    }

    #[test]
    fn old_and_blanked_payloads_are_read_as_they_are() {
        assert_eq!(unpack("identity", b"<x/>".to_vec()).unwrap(), b"<x/>");
        assert_eq!(unpack("identity", Vec::new()).unwrap(), b"");
    }

    #[test]
    fn damage_is_reported_not_passed_on() {
        assert!(unpack("gzip", b"<x/>".to_vec()).is_err());
        let (_, mut stored) = pack(b"<Document>some text</Document>");
        stored.truncate(stored.len() / 2);
        assert!(unpack("deflate", stored).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(document in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let (encoding, stored) = pack(&document);
            prop_assert_eq!(unpack(encoding.as_str(), stored).unwrap(), document);
        }
    }
}
