//! Certificates for the TLS tests and the churn harness's `--tls` mode, made at run time by
//! `ringcache_protocol::pki`: a CA and one certificate for 127.0.0.1 / localhost that serves every
//! listener and, as a client certificate, every link. Nothing is committed.

use std::path::{Path, PathBuf};

use ringcache_protocol::pki;
use ringcache_protocol::tls::{ClientFiles, TlsClient};

/// A CA and a certificate it signed, as PEM files in one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// Makes a fresh CA and certificate in `dir` (created if missing): `ca.crt`, `node.crt`,
    /// `node.key`.
    pub fn create(dir: &Path) -> Result<Pki, String> {
        let hosts = ["localhost", "127.0.0.1"].map(String::from);
        ringcache_protocol::pki::create(dir, &hosts)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    pub fn ca(&self) -> PathBuf {
        pki::file(&self.dir, pki::CA_FILE)
    }

    pub fn cert(&self) -> PathBuf {
        pki::file(&self.dir, pki::CERT_FILE)
    }

    pub fn key(&self) -> PathBuf {
        pki::file(&self.dir, pki::KEY_FILE)
    }

    /// The node flags of a TLS listener with these files (client certificates required).
    pub fn node_flags(&self) -> Vec<String> {
        vec![
            "--tls-cert-file".into(),
            self.cert().display().to_string(),
            "--tls-key-file".into(),
            self.key().display().to_string(),
            "--tls-ca-cert-file".into(),
            self.ca().display().to_string(),
        ]
    }

    /// A client trusting this CA, without a client certificate.
    pub fn client(&self) -> TlsClient {
        self.client_files(false)
    }

    /// A client trusting this CA and presenting the certificate.
    pub fn client_with_cert(&self) -> TlsClient {
        self.client_files(true)
    }

    fn client_files(&self, with_cert: bool) -> TlsClient {
        let files = ClientFiles {
            ca: self.ca(),
            cert: with_cert.then(|| self.cert()),
            key: with_cert.then(|| self.key()),
            server_name: None,
        };
        TlsClient::new(&files).unwrap_or_else(|e| panic!("TLS client from {:?}: {e}", self.dir))
    }
}

/// The process-wide TLS mode (`churn --tls`): set once, before any process starts.
static MODE: std::sync::OnceLock<(Pki, TlsClient)> = std::sync::OnceLock::new();

/// Turns on TLS for every node, router and client this process starts from now on: nodes serve
/// TLS only (`--port 0 --tls-port P`, replication and migration links over TLS), routers take
/// clients on a TLS listener (client certificates required) and reach nodes over TLS.
pub fn enable(pki: Pki) {
    let client = pki.client_with_cert();
    let _ = MODE.set((pki, client));
}

/// The certificates of the TLS mode, if on.
pub fn mode() -> Option<&'static Pki> {
    MODE.get().map(|(p, _)| p)
}

/// What clients of the TLS mode connect with (CA and client certificate), if on.
pub fn client() -> Option<&'static TlsClient> {
    MODE.get().map(|(_, c)| c)
}

/// The node prints this once its TLS listener is bound (then the address).
pub const NODE_TLS_LISTENING: &str = "ringcache node listening for TLS on ";
/// The router prints this once its TLS listener is bound (then the address).
pub const ROUTER_TLS_LISTENING: &str = "ringcache router listening for TLS on ";

/// In TLS mode, node flags for a TLS-only node on `port` (0: a free one) with TLS links.
pub fn node_flags(port: u16) -> Option<Vec<String>> {
    let pki = mode()?;
    let port = if port == 0 {
        crate::procs::free_port()
    } else {
        port
    };
    let mut flags = vec!["--tls-port".to_string(), port.to_string()];
    flags.extend(pki.node_flags());
    flags.extend(
        ["--tls-replication", "yes", "--tls-cluster", "yes"]
            .iter()
            .map(|s| s.to_string()),
    );
    Some(flags)
}

/// In TLS mode, the `[router]` keys of a TLS client listener on `listen` and TLS node links.
pub fn router_keys(listen: &str) -> Option<String> {
    let pki = mode()?;
    let p = |p: PathBuf| p.display().to_string();
    Some(format!(
        "tls_listen = \"{listen}\"\ntls_cert = {:?}\ntls_key = {:?}\ntls_ca = {:?}\n\
         node_tls = true\nnode_tls_ca = {:?}\nnode_tls_cert = {:?}\nnode_tls_key = {:?}\n",
        p(pki.cert()),
        p(pki.key()),
        p(pki.ca()),
        p(pki.ca()),
        p(pki.cert()),
        p(pki.key()),
    ))
}
