//! TLS for every Tandem server (region, gateway, witness): rustls on the
//! `ring` provider, the certificate chain and key read from PEM files. The
//! handshake happens in the connection's own task, bounded by the header
//! timeout, so a slow or broken handshake costs that connection only.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

/// A server's TLS settings, ready to accept connections with.
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    /// When the leaf certificate expires (RFC 3339, UTC), if it could be
    /// read: what `tandem doctor` warns about.
    pub not_after: Option<String>,
    /// The certificate file, for messages.
    pub cert_path: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads a PEM certificate chain (leaf first) and its PEM private key
    /// (PKCS#8, PKCS#1 or SEC1). Every error names the file and the fix.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Tls, String> {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|error| format!("cannot read the TLS certificate {}: {error}", cert.display()))?
            .collect::<Result<_, _>>()
            .map_err(|error| format!("the TLS certificate {} is not valid PEM: {error}", cert.display()))?;
        if certificates.is_empty() {
            return Err(format!("{} holds no PEM certificate", cert.display()));
        }
        let private_key = PrivateKeyDer::from_pem_file(key)
            .map_err(|error| format!("cannot read the TLS private key {}: {error}", key.display()))?;
        let not_after = not_after(&certificates[0]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS configuration: {error}"))?
            .with_no_client_auth()
            .with_single_cert(certificates, private_key)
            .map_err(|error| {
                format!(
                    "the TLS certificate {} and key {} do not make a usable pair: {error}",
                    cert.display(),
                    key.display()
                )
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            not_after,
            cert_path: cert.display().to_string(),
        })
    }
}

/// The leaf certificate's notAfter, read from its DER without a full X.509
/// parser: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version?,
/// serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter } … } }.
fn not_after(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, certificate) = der_element(certificate.as_ref(), 0x30)?;
    let (_, tbs) = der_element(certificate, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_skip(rest)?;
    }
    for _ in 0..3 {
        rest = der_skip(rest)?; // serialNumber, signature, issuer
    }
    let (_, validity) = der_element(rest, 0x30)?;
    let after_not_before = der_skip(validity)?;
    let tag = *after_not_before.first()?;
    let (_, time) = der_element(after_not_before, tag)?;
    let text = std::str::from_utf8(time).ok()?;
    // UTCTime YYMMDDHHMMSSZ (years 1950–2049) or GeneralizedTime YYYYMMDDHHMMSSZ.
    let full = match tag {
        0x17 if text.len() == 13 => {
            let year: i64 = text[..2].parse().ok()?;
            format!("{}{}", if year >= 50 { 19 } else { 20 }, text)
        }
        0x18 if text.len() == 15 => text.to_string(),
        _ => return None,
    };
    if !full[..14].bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    ))
}

/// (header length, content) of the DER element at the start of `bytes`,
/// which must carry `tag`.
fn der_element(bytes: &[u8], tag: u8) -> Option<(usize, &[u8])> {
    if *bytes.first()? != tag {
        return None;
    }
    let first = *bytes.get(1)? as usize;
    let (length, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return None;
        }
        let mut length = 0usize;
        for index in 0..count {
            length = (length << 8) | *bytes.get(2 + index)? as usize;
        }
        (length, 2 + count)
    };
    Some((header, bytes.get(header..header + length)?))
}

/// `bytes` after its first DER element.
fn der_skip(bytes: &[u8]) -> Option<&[u8]> {
    let (header, content) = der_element(bytes, *bytes.first()?)?;
    bytes.get(header + content.len()..)
}
