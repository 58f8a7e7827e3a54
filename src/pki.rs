//! The development PKI (`shokai certs init`): one CA, the gateway's server
//! and client certificates, and a server/client pair per mock bank. For
//! production, an office uses certificates from its own CA (LGWAN).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SerialNumber,
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
    /// The mock departments' HTTPS server.
    pub fn departments_server(&self) -> (PathBuf, PathBuf) {
        self.pair("departments-server")
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
        let mut leaf = if spec.server {
            LeafSpec::server(spec.common_name)
        } else {
            LeafSpec::client(spec.common_name)
        };
        leaf.not_after = OffsetDateTime::now_utc() + Duration::days(spec.validity_days);
        self.issue_leaf(&leaf)
    }

    /// Issues a leaf with every detail chosen by the caller: names, validity
    /// window and serial number (tests use it for wrong-name, expired and
    /// revoked certificates). Returns (certificate PEM, key PEM).
    pub fn issue_leaf(&self, spec: &LeafSpec) -> Result<(String, String), PkiError> {
        let mut params = CertificateParams::new(spec.names.clone())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if spec.server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params.use_authority_key_identifier_extension = true;
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.serial_number = spec.serial.map(SerialNumber::from);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A CRL signed by this CA revoking the given serial numbers (PEM,
    /// "X509 CRL"), valid from now for `valid_days`.
    pub fn crl_pem(
        &self,
        crl_number: u64,
        revoked_serials: &[u64],
        valid_days: i64,
    ) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now,
            next_update: now + Duration::days(valid_days.max(1)),
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs: revoked_serials
                .iter()
                .map(|&serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial),
                    revocation_time: now,
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)?;
        Ok(crl.pem()?)
    }

    /// Writes [`Ca::crl_pem`] to `path`.
    pub fn write_crl(
        &self,
        path: &Path,
        crl_number: u64,
        revoked_serials: &[u64],
    ) -> Result<(), PkiError> {
        write(path, &self.crl_pem(crl_number, revoked_serials, 7)?)
    }
}

/// A leaf certificate in full detail, for [`Ca::issue_leaf`].
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    /// Server (`serverAuth`) or client (`clientAuth`) certificate.
    pub server: bool,
    /// Subject alternative names: DNS names, or IP addresses as text.
    pub names: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// None lets rcgen derive one.
    pub serial: Option<u64>,
}

impl LeafSpec {
    /// A client certificate valid from yesterday for 825 days.
    pub fn client(common_name: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: common_name.to_owned(),
            server: false,
            names: Vec::new(),
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(825),
            serial: None,
        }
    }

    /// A server certificate for localhost, 127.0.0.1 and ::1, valid from
    /// yesterday for 825 days.
    pub fn server(common_name: &str) -> Self {
        Self {
            server: true,
            names: vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ],
            ..Self::client(common_name)
        }
    }
}

/// Writes a (certificate PEM, key PEM) pair to a (certificate, key) path
/// pair as [`PkiLayout`] names them.
pub fn write_pair(paths: &(PathBuf, PathBuf), pems: &(String, String)) -> Result<(), PkiError> {
    write(&paths.0, &pems.0)?;
    write(&paths.1, &pems.1)
}

/// Writes a complete development PKI into `dir` for the given banks.
pub fn init(dir: &Path, bank_codes: &[String]) -> Result<PkiLayout, PkiError> {
    init_with_ca(dir, bank_codes).map(|(layout, _)| layout)
}

/// Like [`init`], and also returns the CA (with its key, which is not
/// written to disk) to issue further certificates or CRLs.
pub fn init_with_ca(dir: &Path, bank_codes: &[String]) -> Result<(PkiLayout, Ca), PkiError> {
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
    issue(layout.departments_server(), "mock departments", true)?;
    for code in bank_codes {
        issue(layout.bank_server(code), &format!("bank {code}"), true)?;
        issue(
            layout.bank_client(code),
            &format!("bank {code} client"),
            false,
        )?;
    }
    Ok((layout, ca))
}
