//! Why a request got no reply. The texts name the server first (`127.0.0.1:7001: connection
//! refused`), since they end up in logs and in `RING STATUS` next to other servers' errors.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("{addr}: connect timed out")]
    ConnectTimeout { addr: String },
    /// Connecting, reading or writing failed (refused, reset, ...).
    #[error("{addr}: {reason}")]
    Io { addr: String, reason: String },
    #[error("{addr}: connection closed")]
    Closed { addr: String },
    #[error("{addr}: no reply within {} ms", .after.as_millis())]
    Timeout { addr: String, after: Duration },
    /// The server sent bytes that are not RESP.
    #[error("{addr}: {reason}")]
    Protocol { addr: String, reason: String },
    /// The server refused the link's `AUTH` (wrong password, disabled or unknown user).
    #[error("{addr}: authentication as '{user}' refused: {reason}")]
    Auth {
        addr: String,
        user: String,
        reason: String,
    },
}

impl ClientError {
    pub(crate) fn io(addr: &str, e: &std::io::Error) -> ClientError {
        // An OS error's kind reads better than its errno text ("connection refused").
        let reason = if e.raw_os_error().is_some() {
            e.kind().to_string()
        } else {
            e.to_string()
        };
        ClientError::Io {
            addr: addr.to_string(),
            reason,
        }
    }

    /// Whether the request may have reached the server (a timeout or a dropped link after the
    /// write) as opposed to never leaving (a failed connect).
    pub fn maybe_sent(&self) -> bool {
        !matches!(self, ClientError::ConnectTimeout { .. })
    }
}
