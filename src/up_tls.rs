//! `ringcache up --tls`: every listener and link of the local cluster on TLS.
//!
//! Certificates (a CA and one certificate for the cluster's hosts, `ringcache_protocol::pki`) are
//! made in `--tls-dir` unless they are there already, so a client keeps trusting the same CA
//! across restarts. Nodes listen for TLS only and use it to each other (replication, migration);
//! the router takes clients over TLS at the file's `listen` address and speaks TLS to the nodes.
//! Its plain listener moves to an ephemeral loopback port, for `up`'s own readiness check and
//! local tools. The router reads a copy of the cluster file with these settings added.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ringcache_protocol::pki;
use ringcache_protocol::tls::{ClientFiles, TlsClient};

/// Keys of `[router]` that `--tls` sets itself.
const ROUTER_TLS_KEYS: [&str; 9] = [
    "tls_listen",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "node_tls",
    "node_tls_ca",
    "node_tls_cert",
    "node_tls_key",
    "node_tls_server_name",
];

/// The certificates of a TLS cluster and a client that trusts them.
pub struct UpTls {
    dir: PathBuf,
    client: TlsClient,
}

impl UpTls {
    /// Uses the certificates in `dir`, making them for `hosts` (and the local host) if missing;
    /// certificates already there are used as they are (delete the directory to make them again
    /// for other hosts).
    pub fn prepare(dir: &Path, hosts: &[String]) -> Result<UpTls> {
        if !pki::exists(dir) {
            let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
            for h in hosts {
                if !names.contains(h) && !h.is_empty() && h != "0.0.0.0" && h != "::" {
                    names.push(h.clone());
                }
            }
            pki::create(dir, &names)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("making certificates in {}", dir.display()))?;
            println!(
                "ringcache up: made a CA and a certificate for {} in {}",
                names.join(", "),
                dir.display()
            );
        }
        let dir = dir
            .canonicalize()
            .with_context(|| format!("{}", dir.display()))?;
        let files = ClientFiles {
            ca: pki::file(&dir, pki::CA_FILE),
            cert: None,
            key: None,
            server_name: None,
        };
        let client = TlsClient::new(&files)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("the CA in {}", dir.display()))?;
        Ok(UpTls { dir, client })
    }

    /// What clients trust.
    pub fn ca(&self) -> PathBuf {
        pki::file(&self.dir, pki::CA_FILE)
    }

    /// A client for `up`'s PINGs.
    pub fn client(&self) -> &TlsClient {
        &self.client
    }

    fn path(&self, name: &str) -> String {
        pki::file(&self.dir, name).display().to_string()
    }

    /// A node's listener flags: TLS only on `port`, TLS to its primary and migration targets.
    pub fn node_args(&self, port: u16) -> Vec<String> {
        [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &self.path(pki::CERT_FILE),
            "--tls-key-file",
            &self.path(pki::KEY_FILE),
            "--tls-ca-cert-file",
            &self.path(pki::CA_FILE),
            "--tls-auth-clients",
            "no",
            "--tls-replication",
            "yes",
            "--tls-cluster",
            "yes",
        ]
        .map(String::from)
        .to_vec()
    }

    /// Writes the router's copy of `config` (whose clients' address is `listen`) with TLS on
    /// its client listener and its links; returns its path.
    pub fn router_config(&self, config: &Path, listen: &str) -> Result<PathBuf> {
        let text = std::fs::read_to_string(config)
            .with_context(|| format!("reading {}", config.display()))?;
        let mut doc: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}", config.display()))?;
        let router = doc
            .entry("router")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(router) = router.as_table_mut() else {
            bail!("{}: [router] is not a table", config.display());
        };
        if let Some(k) = ROUTER_TLS_KEYS.iter().find(|k| router.contains_key(**k)) {
            bail!(
                "{}: [router] {k} is set; --tls sets the router's TLS itself (remove it, or start without --tls)",
                config.display()
            );
        }
        let s = |v: String| toml::Value::String(v);
        router.insert("listen".into(), s("127.0.0.1:0".into()));
        router.insert("tls_listen".into(), s(listen.to_string()));
        router.insert("tls_cert".into(), s(self.path(pki::CERT_FILE)));
        router.insert("tls_key".into(), s(self.path(pki::KEY_FILE)));
        router.insert("node_tls".into(), toml::Value::Boolean(true));
        router.insert("node_tls_ca".into(), s(self.path(pki::CA_FILE)));
        let out = self.dir.join("router.toml");
        let body = toml::to_string(&doc).context("writing the router's TLS config")?;
        let header = format!(
            "# Written by `ringcache up --tls` from {}; edit that file, not this one.\n",
            config.display()
        );
        // The copy holds what the file holds (node passwords, say): its owner's only.
        ringcache_protocol::pki::write_private(&out, &(header + &body))
            .map_err(anyhow::Error::msg)?;
        Ok(out)
    }
}
