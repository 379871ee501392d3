//! How a process's links to nodes identify themselves: the router's links to its shards, a
//! replica's link to its primary and a node's migration links send `AUTH` with these before
//! anything else.

use std::fmt;
use std::time::Duration;

use ringcache_protocol::tls::TlsClient;
use ringcache_protocol::Reply;

use crate::error::ClientError;
use crate::tokio_client::Client;

/// A user and password for `AUTH` (no user: `AUTH <password>`, Redis's `default` user).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: String,
}

impl Credentials {
    /// `AUTH [user] password` as arguments.
    pub fn auth_args(&self) -> Vec<&[u8]> {
        let mut a: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(u) = &self.user {
            a.push(u.as_bytes());
        }
        a.push(self.password.as_bytes());
        a
    }

    /// The user `AUTH` names: Redis's `default` when none is given.
    pub fn user_name(&self) -> &str {
        self.user.as_deref().unwrap_or("default")
    }
}

// Never print a password: these end up in logs and in `--help`-like dumps of settings.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user_name())
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What a link to a node needs besides its address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkSpec {
    pub auth: Option<Credentials>,
    /// TLS on the link (the peer's CA, a client certificate if it requires one).
    pub tls: Option<TlsClient>,
}

impl LinkSpec {
    pub fn with_auth(auth: Option<Credentials>) -> LinkSpec {
        LinkSpec { auth, tls: None }
    }

    /// The same link over TLS (or plain again with `None`).
    pub fn with_tls(mut self, tls: Option<TlsClient>) -> LinkSpec {
        self.tls = tls;
        self
    }
}

impl Client {
    /// Connects to `addr` within `timeout` and authenticates as `spec` says; a refused `AUTH`
    /// is [`ClientError::Auth`] naming the server and its reply.
    pub async fn open(
        addr: &str,
        timeout: Duration,
        spec: &LinkSpec,
    ) -> Result<Client, ClientError> {
        let mut c = Client::connect_with(addr, timeout, spec.tls.as_ref()).await?;
        if let Some(auth) = &spec.auth {
            if let Reply::Error(e) = c.call(&auth.auth_args(), timeout).await? {
                return Err(ClientError::Auth {
                    addr: addr.to_string(),
                    user: auth.user_name().to_string(),
                    reason: e,
                });
            }
        }
        Ok(c)
    }
}
