//! The router's TLS settings in `[router]`: a TLS client listener (`tls_listen`, `tls_cert`,
//! `tls_key`, optional `tls_ca`: client certificates required) and TLS links to the nodes
//! (`node_tls`, `node_tls_ca`, optional `node_tls_cert`/`node_tls_key`, `node_tls_server_name`).
//! Every file is read when the config loads, so a bad one is an error naming its field.

use std::path::PathBuf;

use ringcache_protocol::tls::{self, ClientAuth, ClientFiles, ServerFiles};

use crate::config::ConfigError;

/// The router's TLS client listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenTls {
    pub listen: String,
    pub files: ServerFiles,
}

/// The `[router]` keys, as written.
#[derive(Debug, Default, Clone)]
pub struct RawTls {
    pub tls_listen: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tls_ca: Option<String>,
    pub node_tls: Option<bool>,
    pub node_tls_ca: Option<String>,
    pub node_tls_cert: Option<String>,
    pub node_tls_key: Option<String>,
    pub node_tls_server_name: Option<String>,
}

fn invalid(field: &str, e: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: format!("router.{field}"),
        message: e.into(),
    }
}

fn required(field: &str, v: &Option<String>, because: &str) -> Result<PathBuf, ConfigError> {
    match v {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(invalid(field, format!("missing (needed by {because})"))),
    }
}

/// The TLS listener, if `tls_listen` is set (its files read and checked).
pub fn listener(raw: &RawTls) -> Result<Option<ListenTls>, ConfigError> {
    let Some(listen) = raw.tls_listen.clone() else {
        for (field, v) in [
            ("tls_cert", &raw.tls_cert),
            ("tls_key", &raw.tls_key),
            ("tls_ca", &raw.tls_ca),
        ] {
            if v.is_some() {
                return Err(invalid(field, "set without router.tls_listen"));
            }
        }
        return Ok(None);
    };
    crate::config::check_addr("router.tls_listen", &listen)?;
    let cert = required("tls_cert", &raw.tls_cert, "router.tls_listen")?;
    let key = required("tls_key", &raw.tls_key, "router.tls_listen")?;
    tls::load_certs(&cert).map_err(|e| invalid("tls_cert", e))?;
    tls::load_key(&key).map_err(|e| invalid("tls_key", e))?;
    let ca = match &raw.tls_ca {
        Some(ca) => {
            let ca = PathBuf::from(ca);
            tls::load_roots(&ca).map_err(|e| invalid("tls_ca", e))?;
            Some(ca)
        }
        None => None,
    };
    let files = ServerFiles {
        cert,
        key,
        auth: if ca.is_some() {
            ClientAuth::Yes
        } else {
            ClientAuth::No
        },
        ca,
    };
    tls::server_config(&files).map_err(|e| invalid("tls_key", e))?;
    Ok(Some(ListenTls { listen, files }))
}

/// The nodes' TLS client side, if `node_tls = true`.
pub fn links(raw: &RawTls) -> Result<Option<(ClientFiles, tls::TlsClient)>, ConfigError> {
    if raw.node_tls != Some(true) {
        for (field, v) in [
            ("node_tls_ca", &raw.node_tls_ca),
            ("node_tls_cert", &raw.node_tls_cert),
            ("node_tls_key", &raw.node_tls_key),
            ("node_tls_server_name", &raw.node_tls_server_name),
        ] {
            if v.is_some() {
                return Err(invalid(field, "set without router.node_tls = true"));
            }
        }
        return Ok(None);
    }
    let ca = required("node_tls_ca", &raw.node_tls_ca, "router.node_tls")?;
    tls::load_roots(&ca).map_err(|e| invalid("node_tls_ca", e))?;
    let (cert, key) = match (&raw.node_tls_cert, &raw.node_tls_key) {
        (Some(c), Some(k)) => {
            let (c, k) = (PathBuf::from(c), PathBuf::from(k));
            tls::load_certs(&c).map_err(|e| invalid("node_tls_cert", e))?;
            tls::load_key(&k).map_err(|e| invalid("node_tls_key", e))?;
            (Some(c), Some(k))
        }
        (None, None) => (None, None),
        (Some(_), None) => return Err(invalid("node_tls_key", "missing (node_tls_cert is set)")),
        (None, Some(_)) => return Err(invalid("node_tls_cert", "missing (node_tls_key is set)")),
    };
    let files = ClientFiles {
        ca,
        cert,
        key,
        server_name: raw.node_tls_server_name.clone(),
    };
    let client = tls::TlsClient::new(&files).map_err(|e| {
        let field = if e.contains("server name") {
            "node_tls_server_name"
        } else {
            "node_tls_key"
        };
        invalid(field, e)
    })?;
    Ok(Some((files, client)))
}

#[cfg(test)]
mod tests {
    use crate::config::parse_config;

    fn err(extra: &str) -> String {
        let text = format!(
            "[router]\nlisten = \"127.0.0.1:0\"\n{extra}\n[[shard]]\nid = \"a\"\nprimary = \"127.0.0.1:7001\"\n"
        );
        match parse_config(&text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err("tls_listen = \"127.0.0.1:0\"").starts_with("router.tls_cert: missing"));
        let e = err("tls_listen = \"127.0.0.1:0\"\ntls_cert = \"/nonexistent.crt\"\ntls_key = \"/nonexistent.key\"");
        assert!(e.starts_with("router.tls_cert: cannot read"), "{e}");
        assert!(err("tls_cert = \"x\"").starts_with("router.tls_cert: set without"));
        assert!(err("node_tls = true").starts_with("router.node_tls_ca: missing"));
        assert!(err("node_tls_ca = \"x\"").starts_with("router.node_tls_ca: set without"));
        assert_eq!(err("node_tls = false"), "");
    }
}
