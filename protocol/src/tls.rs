//! TLS settings shared by the node, the router and the client: certificates read from PEM files
//! into rustls configurations (the `ring` provider, so static musl builds need no C toolchain
//! beyond ring's), a server side whose certificates reload (SIGHUP) for new handshakes, and
//! client sides for links.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;

use crate::transport::TlsStream;

/// A handshake that takes longer than this is abandoned (a client that connects and says nothing
/// holds no task for long).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a TLS server asks for client certificates (Redis's `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Required (with a CA to check them against).
    Yes,
    No,
    /// Checked when given.
    Optional,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<ClientAuth> {
        match s.to_ascii_lowercase().as_str() {
            "yes" => Some(ClientAuth::Yes),
            "no" => Some(ClientAuth::No),
            "optional" => Some(ClientAuth::Optional),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::Yes => "yes",
            ClientAuth::No => "no",
            ClientAuth::Optional => "optional",
        }
    }
}

/// The files a TLS server is configured from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates are checked against it (see `auth`).
    pub ca: Option<PathBuf>,
    pub auth: ClientAuth,
}

// ring's provider (deprecated upstream for lacking post-quantum key exchange): aws-lc-rs would
// break scripts/build-static's musl build.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(path, "cannot read certificates from", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path, "cannot read certificates from", e))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| err(path, "cannot read a private key from", e))
}

/// A root store of every certificate in a PEM file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| err(path, "bad CA certificate in", e))?;
    }
    Ok(roots)
}

/// A rustls server configuration from `files`.
pub fn server_config(files: &ServerFiles) -> Result<Arc<ServerConfig>, String> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (&files.ca, files.auth) {
        (Some(ca), ClientAuth::Yes | ClientAuth::Optional) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if files.auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
        _ => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| err(&files.key, "the key does not fit the certificate in", e))?;
    Ok(Arc::new(config))
}

/// A TLS server side: its configuration, replaced by [`TlsServer::reload`] for new handshakes.
#[derive(Debug)]
pub struct TlsServer {
    files: Mutex<ServerFiles>,
    config: Mutex<Arc<ServerConfig>>,
}

/// Answers a connection the server will not serve (its client limit reached) with `reply`,
/// after the TLS handshake when it came in on a TLS listener, then drops it.
pub async fn refuse(sock: TcpStream, tls: Option<Arc<TlsServer>>, reply: &[u8]) {
    use crate::transport::Transport;
    let _ = match tls {
        Some(tls) => match tls.accept(sock).await {
            Ok(mut s) => s.write_all(reply).await,
            Err(e) => Err(e),
        },
        None => {
            let mut sock = sock;
            Transport::write_all(&mut sock, reply).await
        }
    };
}

impl TlsServer {
    pub fn new(files: ServerFiles) -> Result<Arc<TlsServer>, String> {
        let config = server_config(&files)?;
        Ok(Arc::new(TlsServer {
            files: Mutex::new(files),
            config: Mutex::new(config),
        }))
    }

    /// Reads the files again; on an error the old certificates stay.
    pub fn reload(&self) -> Result<(), String> {
        let files = crate::clients::lock(&self.files).clone();
        self.reload_from(files)
    }

    /// Takes certificates from `files` (a config reload may name new ones); on an error the old
    /// ones stay.
    pub fn reload_from(&self, files: ServerFiles) -> Result<(), String> {
        let config = server_config(&files)?;
        *crate::clients::lock(&self.config) = config;
        *crate::clients::lock(&self.files) = files;
        Ok(())
    }

    /// The server handshake on `sock`, within [`HANDSHAKE_TIMEOUT`].
    pub async fn accept(&self, sock: TcpStream) -> io::Result<TlsStream> {
        let config = crate::clients::lock(&self.config).clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let (sock, conn) = stream.into_inner();
        Ok(TlsStream::new(sock, rustls::Connection::Server(conn)))
    }
}

/// The files and names a TLS client side is configured from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFiles {
    /// The CA the servers' certificates are checked against.
    pub ca: PathBuf,
    /// A client certificate and key, for servers that require one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name the servers' certificates must carry; by default the host of the address dialed.
    pub server_name: Option<String>,
}

/// A TLS client side: the configuration every link's handshake uses.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &TlsClient) -> bool {
        Arc::ptr_eq(&self.config, &other.config) && self.server_name == other.server_name
    }
}

impl Eq for TlsClient {}

impl TlsClient {
    pub fn new(files: &ClientFiles) -> Result<TlsClient, String> {
        let roots = load_roots(&files.ca)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|e| err(key, "the key does not fit the certificate in", e))?,
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("a client certificate needs both its certificate and key".into()),
        };
        let server_name = match &files.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|e| format!("bad TLS server name {name:?}: {e}"))?,
            ),
            None => None,
        };
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The client handshake on `sock` connected to `addr` ("host:port"), within
    /// [`HANDSHAKE_TIMEOUT`].
    pub async fn connect(&self, sock: TcpStream, addr: &str) -> io::Result<TlsStream> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => host_name(addr)?,
        };
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, sock))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let (sock, conn) = stream.into_inner();
        Ok(TlsStream::new(sock, rustls::Connection::Client(conn)))
    }
}

/// The server name of "host:port" (an IP address or a DNS name).
fn host_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))
}
