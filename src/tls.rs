//! TLS material: loading PEM files and building rustls configurations. One
//! crypto provider (ring) serves the whole process.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct TlsError {
    pub what: String,
    pub message: String,
}

fn err(what: impl Into<String>, e: impl std::fmt::Display) -> TlsError {
    TlsError {
        what: what.into(),
        message: e.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide default, for clients built without a
/// preconfigured TLS setup. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(path.display().to_string(), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path.display().to_string(), e))?;
    if certs.is_empty() {
        return Err(err(
            path.display().to_string(),
            "no certificate in the file",
        ));
    }
    Ok(certs)
}

pub fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(what, e))?;
    if certs.is_empty() {
        return Err(err(what, "no certificate in the PEM text"));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| err(path.display().to_string(), e))
}

/// A configured CRL file that holds no CRL is an error, not "nothing is
/// revoked": a truncated file must not lift revocations.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| err(path.display().to_string(), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path.display().to_string(), e))?;
    if crls.is_empty() {
        return Err(err(path.display().to_string(), "no CRL in the file"));
    }
    Ok(crls)
}

/// SHA-256 of a certificate's DER, lower-case hex: how a bank is known.
pub fn fingerprint(cert: &[u8]) -> String {
    hex::encode(Sha256::digest(cert))
}

fn roots(certs: &[CertificateDer<'static>], what: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs {
        store.add(c.clone()).map_err(|e| err(what, e))?;
    }
    Ok(Arc::new(store))
}

/// A server that demands a client certificate issued by one of `client_cas`
/// and not revoked by `crls` (the bank API, and the mock banks).
pub fn mtls_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_cas: &[CertificateDer<'static>],
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<ServerConfig, TlsError> {
    let cert = ServerCert::new(&Identity {
        chain,
        key: Arc::new(key),
    })?;
    Ok(reloadable_server_config(
        cert,
        ClientVerifier::new(client_cas, crls)?,
    ))
}

/// A server config whose certificate and client verification can be
/// replaced while it serves (certificate rotation without a restart).
pub fn reloadable_server_config(
    cert: Arc<ServerCert>,
    verifier: Arc<ClientVerifier>,
) -> ServerConfig {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    // No session resumption: a resumed session skips client verification,
    // so a certificate revoked (or a CA removed) would keep working.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config
}

/// The server certificate, replaceable while running.
#[derive(Debug)]
pub struct ServerCert(RwLock<Arc<CertifiedKey>>);

fn certified(id: &Identity) -> Result<Arc<CertifiedKey>, TlsError> {
    let key = rustls::crypto::ring::sign::any_supported_type(&id.key)
        .map_err(|e| err("server key", e))?;
    Ok(Arc::new(CertifiedKey::new(id.chain.clone(), key)))
}

impl ServerCert {
    pub fn new(id: &Identity) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self(RwLock::new(certified(id)?))))
    }

    pub fn replace(&self, id: &Identity) -> Result<(), TlsError> {
        let next = certified(id)?;
        *self.0.write().expect("certificate lock") = next;
        Ok(())
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().expect("certificate lock").clone())
    }
}

/// Verifies bank client certificates against the configured CAs and CRLs,
/// which can be replaced while running (`replace`), and logs every refused
/// certificate (unknown CA, expired, revoked…) with its fingerprint: rustls
/// itself only tells the peer.
#[derive(Debug)]
pub struct ClientVerifier {
    inner: RwLock<Arc<dyn ClientCertVerifier>>,
    /// Root hints do not change on reload: rustls borrows them.
    hints: Vec<DistinguishedName>,
}

fn webpki_verifier(
    client_cas: &[CertificateDer<'static>],
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(roots(client_cas, "client CA")?, provider())
        .with_crls(crls)
        .build()
        .map_err(|e| err("client verifier", e))
}

impl ClientVerifier {
    pub fn new(
        client_cas: &[CertificateDer<'static>],
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Arc<Self>, TlsError> {
        let inner = webpki_verifier(client_cas, crls)?;
        let hints = inner.root_hint_subjects().to_vec();
        Ok(Arc::new(Self {
            inner: RwLock::new(inner),
            hints,
        }))
    }

    /// New CAs and CRLs for every handshake from now on.
    pub fn replace(
        &self,
        client_cas: &[CertificateDer<'static>],
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<(), TlsError> {
        let next = webpki_verifier(client_cas, crls)?;
        *self.inner.write().expect("verifier lock") = next;
        Ok(())
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.inner.read().expect("verifier lock").clone()
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.current().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.current().client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result = self
            .current()
            .verify_client_cert(end_entity, intermediates, now);
        if let Err(e) = &result {
            tracing::warn!(error = %e, fingerprint = %fingerprint(end_entity), "client certificate refused");
            crate::metrics::inc(
                "shokai_tls_client_refused_total",
                "Client certificates refused in the TLS handshake, by reason.",
                &[("reason", refusal_reason(e))],
            );
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// A short, stable label for a refusal (metric label, not free text).
fn refusal_reason(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "expired",
        rustls::Error::InvalidCertificate(C::Revoked) => "revoked",
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => "unknown_issuer",
        rustls::Error::InvalidCertificate(C::BadSignature) => "bad_signature",
        rustls::Error::InvalidCertificate(_) => "invalid",
        _ => "other",
    }
}

/// A client that presents `chain` and trusts only `server_cas` (the
/// dispatcher towards one bank, and the mock banks towards the gateway).
pub fn mtls_client_config(
    server_cas: &[CertificateDer<'static>],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, TlsError> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("client config", e))?
        .with_root_certificates(roots(server_cas, "server CA")?)
        .with_client_auth_cert(chain, key)
        .map_err(|e| err("client certificate", e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A client that trusts only `server_cas` and presents no certificate (the
/// department connectors and the case-file feed).
pub fn client_config(server_cas: &[CertificateDer<'static>]) -> Result<ClientConfig, TlsError> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("client config", e))?
        .with_root_certificates(roots(server_cas, "server CA")?)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A server without client authentication (the mock departments).
pub fn server_config(id: &Identity) -> Result<ServerConfig, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("server config", e))?
        .with_no_client_auth()
        .with_single_cert(id.chain.clone(), id.key())
        .map_err(|e| err("server certificate", e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The certificate and key a party presents, loaded from PEM files.
#[derive(Clone)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl Identity {
    pub fn load(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
        Ok(Identity {
            chain: load_certs(cert)?,
            key: Arc::new(load_key(key)?),
        })
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

/// Reads one DER element: (tag, content, rest).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The end of a certificate's validity (ms since the epoch), read from its
/// DER: Certificate → TBSCertificate → [version] serial signature issuer
/// validity(notBefore, notAfter).
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let (_, certificate, _) = der_element(cert)?;
    let (_, mut tbs, _) = der_element(certificate)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der_element(tbs)?.2;
    }
    let rest = der_element(tbs)?.2; // serial
    let rest = der_element(rest)?.2; // signature algorithm
    let rest = der_element(rest)?.2; // issuer
    let (_, validity, _) = der_element(rest)?;
    let after = der_element(validity)?.2; // past notBefore
    let (tag, value, _) = der_element(after)?;
    let text = std::str::from_utf8(value).ok()?;
    let full = match tag {
        // UTCTime: YYMMDDHHMMSSZ, years 1950-2049.
        0x17 => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            format!(
                "{}{}",
                if yy >= 50 { 1900 + yy } else { 2000 + yy },
                text.get(2..)?
            )
        }
        // GeneralizedTime: YYYYMMDDHHMMSSZ.
        0x18 => text.to_owned(),
        _ => return None,
    };
    chrono::NaiveDateTime::parse_from_str(full.trim_end_matches('Z'), "%Y%m%d%H%M%S")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_expiry_of_a_generated_certificate() {
        let ca = crate::pki::Ca::generate("expiry test").unwrap();
        let (pem, _) = ca
            .issue(&crate::pki::CertSpec {
                common_name: "x",
                server: false,
                validity_days: 30,
            })
            .unwrap();
        let der = parse_certs(&pem, "test").unwrap().remove(0);
        let expires = not_after(der.as_ref()).unwrap();
        let expected = crate::domain::time::now_millis() + 30 * 86_400_000;
        assert!(
            (expires - expected).abs() < 120_000,
            "{expires} vs {expected}"
        );
        assert_eq!(not_after(b"\x30\x03\x01\x01\x00"), None);
        assert_eq!(not_after(&[]), None);
    }
}
