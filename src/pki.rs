//! The development PKI (`shokai certs init`): one CA, the gateway's server
//! and client certificates, and a server/client pair per mock bank. For
//! production, an office uses certificates from its own CA (LGWAN).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// File names inside a PKI directory.
pub struct PkiLayout {
    pub dir: PathBuf,
}

impl PkiLayout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn gateway_server(&self) -> (PathBuf, PathBuf) {
        self.pair("gateway-server")
    }
    pub fn gateway_client(&self) -> (PathBuf, PathBuf) {
        self.pair("gateway-client")
    }
    pub fn bank_server(&self, code: &str) -> (PathBuf, PathBuf) {
        self.pair(&format!("bank-{code}-server"))
    }
    pub fn bank_client(&self, code: &str) -> (PathBuf, PathBuf) {
        self.pair(&format!("bank-{code}-client"))
    }
    fn pair(&self, stem: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}-key.pem")),
        )
    }
}

pub struct CertSpec<'a> {
    pub common_name: &'a str,
    pub server: bool,
    pub validity_days: i64,
}

fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    std::fs::write(path, text).map_err(|e| PkiError::Io(path.to_owned(), e))
}

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn generate(name: &str) -> Result<Ca, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Issues a leaf; returns (certificate PEM, key PEM).
    pub fn issue(&self, spec: &CertSpec<'_>) -> Result<(String, String), PkiError> {
        let names = if spec.server {
            vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if spec.server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params.use_authority_key_identifier_extension = true;
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(spec.validity_days);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Writes a complete development PKI into `dir` for the given banks.
pub fn init(dir: &Path, bank_codes: &[String]) -> Result<PkiLayout, PkiError> {
    std::fs::create_dir_all(dir).map_err(|e| PkiError::Io(dir.to_owned(), e))?;
    let layout = PkiLayout::new(dir);
    let ca = Ca::generate("Shokai development CA")?;
    write(&layout.ca_cert(), &ca.pem)?;
    let issue = |(cert, key): (PathBuf, PathBuf), cn: &str, server: bool| -> Result<(), PkiError> {
        let (c, k) = ca.issue(&CertSpec {
            common_name: cn,
            server,
            validity_days: 825,
        })?;
        write(&cert, &c)?;
        write(&key, &k)
    };
    issue(layout.gateway_server(), "shokai gateway", true)?;
    issue(layout.gateway_client(), "shokai gateway client", false)?;
    for code in bank_codes {
        issue(layout.bank_server(code), &format!("bank {code}"), true)?;
        issue(
            layout.bank_client(code),
            &format!("bank {code} client"),
            false,
        )?;
    }
    Ok(layout)
}
