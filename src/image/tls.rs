//! HTTPS for the registry client: rustls with the system's root certificates (as ureq's
//! `native-certs` feature loads them), set up on the first HTTPS connection rather than
//! with each HTTP agent. A pull that talks plain HTTP (a loopback registry) or no network
//! at all (an image pinned by a digest the store holds) so never reads and parses the few
//! hundred certificates of /etc/ssl/certs, which took most of a warm pull's time.

use std::io;
use std::sync::{Arc, OnceLock};

use ureq::rustls;
use ureq::{ReadWrite, TlsConnector};

/// The TLS set-up of every registry of the process, made once, when first needed.
static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();

/// ureq's TLS connector, its configuration built by the first HTTPS connection.
pub struct Lazy;

impl TlsConnector for Lazy {
    fn connect(
        &self,
        dns_name: &str,
        io: Box<dyn ReadWrite>,
    ) -> Result<Box<dyn ReadWrite>, ureq::Error> {
        match CONFIG.get_or_init(config) {
            Ok(c) => c.connect(dns_name, io),
            Err(e) => Err(io::Error::other(e.clone()).into()),
        }
    }
}

/// TLS 1.2 and 1.3 with ring, trusting the system's roots. Certificates that can't be read
/// or parsed are skipped, as ureq does; with none left, each handshake fails naming the
/// server's certificate as unknown.
fn config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    if let Ok(certs) = rustls_native_certs::load_native_certs() {
        roots.add_parsable_certificates(certs);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let c = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| format!("set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(c))
}
