//! Node settings: what `ringcache node` flags set and CONFIG GET/SET read and change.

use std::net::SocketAddr;
use std::time::Duration;

use ringcache_client::{Credentials, LinkSpec};
use ringcache_protocol::tls::{ClientAuth, ClientFiles, ServerFiles, TlsClient};
use ringcache_protocol::Limits;

/// Validated settings of one node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub bind: String,
    pub port: u16,
    /// Bytes the keyspace may hold; 0 = no limit (Redis's default).
    pub maxmemory: u64,
    pub requirepass: Option<String>,
    /// How this node's links to other nodes (replication, migration) authenticate; without
    /// credentials they send `AUTH requirepass` when the node has one.
    pub link: LinkSpec,
    /// A user made at start with every permission, the cluster's own commands included (the
    /// `ringcache` user of RINGCACHE_PASSWORD); kept across ACL LOAD.
    pub cluster_user: Option<Credentials>,
    /// Users file (Redis's aclfile format), loaded at start and by ACL LOAD, written by ACL SAVE.
    pub aclfile: Option<std::path::PathBuf>,
    /// Failed AUTHs a client address may make in a burst (then a quarter of it a second).
    pub auth_failure_limit: u64,
    pub maxclients: usize,
    /// Idle seconds before a client is closed; 0 = never.
    pub timeout: u64,
    pub limits: Limits,
    /// Replicate from this primary from the start (`--replica-of HOST:PORT`).
    pub replica_of: Option<String>,
    /// Name the node is known by in the cluster's topology (its shard id), if any.
    pub shard_id: Option<String>,
    /// CONFIG parameters kept only to be reported back (`hz`, `lazyfree-*`, ...).
    pub params: std::collections::BTreeMap<&'static str, String>,
    /// Redis's TLS settings (`--tls-port` and friends).
    pub tls: TlsSettings,
}

/// Redis's `tls-*` settings of a node.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The TLS listener's port; 0 = none.
    pub port: u16,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_cert_file: Option<String>,
    pub auth_clients: ClientAuth,
    /// A replica's link to its primary over TLS (`tls-replication`).
    pub replication: bool,
    /// Node-to-node migration links over TLS (`tls-cluster`).
    pub cluster: bool,
    /// The client side of those links (built at start from the CA and this node's certificate).
    pub client: Option<TlsClient>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            port: 0,
            cert_file: None,
            key_file: None,
            ca_cert_file: None,
            auth_clients: ClientAuth::Yes,
            replication: false,
            cluster: false,
            client: None,
        }
    }
}

impl TlsSettings {
    /// TLS for a replica's link to its primary, when `tls-replication` is on.
    pub fn for_replication(&self) -> Option<&TlsClient> {
        self.client.as_ref().filter(|_| self.replication)
    }

    /// TLS for migration links to other nodes, when `tls-cluster` is on.
    pub fn for_cluster(&self) -> Option<&TlsClient> {
        self.client.as_ref().filter(|_| self.cluster)
    }

    /// The TLS listener's files, when it has a port.
    pub fn server_files(&self) -> Result<Option<ServerFiles>, String> {
        if self.port == 0 {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Err("--tls-port needs --tls-cert-file and --tls-key-file".into());
        };
        let auth = match (&self.ca_cert_file, self.auth_clients) {
            (None, _) => ClientAuth::No,
            (Some(_), a) => a,
        };
        Ok(Some(ServerFiles {
            cert: cert.into(),
            key: key.into(),
            ca: self.ca_cert_file.as_ref().map(Into::into),
            auth,
        }))
    }

    /// The client side of this node's outbound TLS links: its CA, and its own certificate for
    /// peers that require one.
    pub fn client_files(&self) -> Result<ClientFiles, String> {
        let Some(ca) = &self.ca_cert_file else {
            return Err("--tls-replication and --tls-cluster need --tls-ca-cert-file".into());
        };
        Ok(ClientFiles {
            ca: ca.into(),
            cert: self.cert_file.as_ref().map(Into::into),
            key: self.key_file.as_ref().map(Into::into),
            server_name: None,
        })
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            bind: "127.0.0.1".into(),
            port: 7001,
            maxmemory: 0,
            requirepass: None,
            link: LinkSpec::default(),
            cluster_user: None,
            aclfile: None,
            auth_failure_limit: ringcache_protocol::acl::limit::DEFAULT_BURST,
            maxclients: 10000,
            timeout: 0,
            limits: Limits::default(),
            replica_of: None,
            shard_id: None,
            params: Default::default(),
            tls: TlsSettings::default(),
        }
    }
}

impl NodeConfig {
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.timeout > 0).then(|| Duration::from_secs(self.timeout))
    }

    /// What a link to another node sends: the configured credentials, else `AUTH requirepass`
    /// (the `default` user) when this node has a password.
    pub fn peer_link(&self) -> LinkSpec {
        match (&self.link.auth, &self.requirepass) {
            (None, Some(pw)) => LinkSpec::with_auth(Some(Credentials {
                user: None,
                password: pw.clone(),
            })),
            _ => self.link.clone(),
        }
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        format!("{}:{}", self.bind, self.port)
            .parse()
            .or_else(|_| format!("[{}]:{}", self.bind, self.port).parse())
            .map_err(|_| format!("invalid bind address '{}'", self.bind))
    }

    /// The TLS listener's address, when `--tls-port` is set.
    pub fn tls_listen_addr(&self) -> Option<SocketAddr> {
        if self.tls.port == 0 {
            return None;
        }
        let mut addr = self.listen_addr().ok()?;
        addr.set_port(self.tls.port);
        Some(addr)
    }
}

/// Parses a memory size the way redis.conf does: `100`, `1k`, `1kb`, `256mb`, `2gb`
/// (k = 1000, kb = 1024).
pub fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Formats bytes like Redis's `*_human` INFO fields (`1.00M`).
pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    let (v, unit) = if n < 1024.0 {
        return format!("{}B", n as u64);
    } else if n < 1024.0 * 1024.0 {
        (n / 1024.0, "K")
    } else if n < 1024.0 * 1024.0 * 1024.0 {
        (n / 1024.0 / 1024.0, "M")
    } else {
        (n / 1024.0 / 1024.0 / 1024.0, "G")
    };
    format!("{v:.2}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("256mb"), Some(256 * 1024 * 1024));
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("100"), Some(100));
        assert_eq!(parse_memory("1GB"), Some(1 << 30));
        assert_eq!(parse_memory("12xb"), None);
        assert_eq!(human_bytes(1536), "1.50K");
    }
}
