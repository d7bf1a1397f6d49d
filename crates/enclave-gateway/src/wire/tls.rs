//! TLS on the wire (rustls, through pgwire): clients ask with `SSLRequest` (`sslmode=prefer`
//! or `require`); in `require` mode a plaintext startup is refused before authentication, so
//! no API key crosses the network in the clear.

use std::path::PathBuf;
use std::sync::Arc;

use enclave_core::{Error, Result};
use pgwire::tokio::tokio_rustls::rustls::crypto::ring::default_provider;
use pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
use pgwire::tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use pgwire::tokio::tokio_rustls::rustls::ServerConfig;
use pgwire::tokio::TlsAcceptor;

/// Where the certificate and key are, and whether plaintext is refused.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub require: bool,
}

/// A loaded TLS setup.
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) require: bool,
}

impl Tls {
    pub fn load(config: &TlsConfig) -> Result<Tls> {
        let invalid = |what: &str, path: &PathBuf, e: &dyn std::fmt::Display| {
            Error::validation(
                what,
                "pem",
                format!(
                    "cannot read the gateway's TLS {what} from {}: {e}",
                    path.display()
                ),
            )
        };
        let certs = CertificateDer::pem_file_iter(&config.cert)
            .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| invalid("certificate", &config.cert, &e))?;
        if certs.is_empty() {
            return Err(invalid(
                "certificate",
                &config.cert,
                &"no certificate in it",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&config.key)
            .map_err(|e| invalid("key", &config.key, &e))?;
        let server = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("certificate", &config.cert, &e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid("key", &config.key, &e))?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            require: config.require,
        })
    }
}
