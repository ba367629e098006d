//! TLS to the data stores (Redis, ScyllaDB, Elasticsearch, S3): a CA bundle read once at
//! start-up, and the rustls client configuration of the drivers that take one. A store with no
//! CA bundle configured is checked against the public web roots.

use std::{path::Path, sync::Arc};

use rustls::pki_types::{CertificateDer, pem::PemObject as _};

/// Makes aws-lc-rs the process's rustls crypto provider (a no-op once one is installed):
/// drivers that build their rustls configuration themselves use the process default, and with
/// two providers compiled in (aws-lc-rs and ring, through other crates) rustls cannot choose.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The PEM CA bundle at `path`, checked to hold at least one certificate, every one readable.
pub fn read_ca_bundle(path: &Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("reading the CA bundle {}: {e}", path.display()))?;
    certificates(&pem).map_err(|e| format!("the CA bundle {}: {e}", path.display()))?;
    Ok(pem)
}

/// The certificates of a PEM bundle; an error when there is none or one does not parse.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate bundle ({e})"))?;
    if certificates.is_empty() {
        return Err("no certificate in it (PEM, -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certificates)
}

/// A rustls client configuration trusting the CA bundle at `ca_file`, or the public web roots
/// when it is `None`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = read_ca_bundle(path)?;
            for certificate in certificates(&pem)? {
                roots.add(certificate).map_err(|e| format!("the CA bundle {}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::{PrivateKeyDer, ServerName};

    use super::*;

    const CA: &str = include_str!("../testdata/tls/ca.pem");
    const SERVER_CERT: &str = include_str!("../testdata/tls/server.pem");
    const SERVER_KEY: &str = include_str!("../testdata/tls/server.key");

    /// A TLS handshake in memory between `client` and a server holding the test CA's
    /// certificate for `localhost` and 127.0.0.1: `Ok` once both ends finished it.
    fn handshake(client: Arc<rustls::ClientConfig>, name: ServerName<'static>) -> Result<(), rustls::Error> {
        let chain = CertificateDer::pem_slice_iter(SERVER_CERT.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        let mut client = rustls::ClientConnection::new(client, name).unwrap();
        for _ in 0..10 {
            let mut bytes = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut bytes).unwrap();
            }
            let mut read = bytes.as_slice();
            while !read.is_empty() {
                server.read_tls(&mut read).unwrap();
            }
            server.process_new_packets()?;
            let mut bytes = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut bytes).unwrap();
            }
            let mut read = bytes.as_slice();
            while !read.is_empty() {
                client.read_tls(&mut read).unwrap();
            }
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        Err(rustls::Error::General("the handshake did not finish".into()))
    }

    #[test]
    fn a_client_trusting_the_ca_bundle_verifies_a_server_it_signed_and_the_web_roots_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, CA).unwrap();
        assert_eq!(read_ca_bundle(&path).unwrap(), CA.as_bytes());
        let private = client_config(Some(&path)).expect("a client configuration with the CA");
        // ScyllaDB's driver names each node by its address, so the address is what is checked
        let by_address = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        handshake(private.clone(), by_address.clone()).expect("the CA's server certificate verifies");
        handshake(private.clone(), ServerName::try_from("localhost").unwrap()).expect("by name too");
        let other = handshake(private, ServerName::try_from("redis.example.com").unwrap()).unwrap_err();
        assert!(matches!(other, rustls::Error::InvalidCertificate(_)), "a name the certificate lacks: {other:?}");

        let public = client_config(None).expect("a client configuration with the web roots");
        let refused = handshake(public, by_address).unwrap_err();
        assert!(
            matches!(refused, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)),
            "a private CA is not among the web roots: {refused:?}"
        );
    }

    #[test]
    fn a_ca_bundle_without_a_certificate_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, SERVER_KEY).unwrap();
        let err = read_ca_bundle(&path).unwrap_err();
        assert!(err.contains("ca.pem") && err.contains("no certificate"), "{err}");
        let err = client_config(Some(&dir.path().join("absent.pem"))).unwrap_err();
        assert!(err.contains("absent.pem"), "{err}");
    }
}
