//! A user's rules: enabled or not, passwords (SHA-256, hex), the root selector and any further
//! selectors; `ACL SETUSER`'s operations on them and `ACL LIST`'s description.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::selector::Selector;
use super::{Denied, RuleError};
use crate::resp::Reply;
use crate::table::CommandSpec;

/// Everything `ACL SETUSER` sets on one user.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub enabled: bool,
    pub nopass: bool,
    /// `sanitize-payload` / `skip-sanitize-payload`, kept to be shown back.
    pub sanitize: Option<bool>,
    /// SHA-256 hashes, lowercase hex.
    pub passwords: Vec<String>,
    pub root: Selector,
    pub selectors: Vec<Selector>,
}

/// Lowercase hex SHA-256 of a password.
pub fn hash_password(pw: &[u8]) -> String {
    let d = Sha256::digest(pw);
    let mut s = String::with_capacity(64);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn valid_hash(h: &str) -> bool {
    h.len() == 64
        && h.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Rules {
    /// The `default` user of a server with no ACL configuration: everything, no password.
    pub fn superuser() -> Rules {
        let mut r = Rules {
            enabled: true,
            nopass: true,
            ..Rules::default()
        };
        for op in ["+@all", "~*", "&*"] {
            let _ = r.root.apply(op);
        }
        r
    }

    fn all_selectors(&self) -> impl Iterator<Item = &Selector> {
        std::iter::once(&self.root).chain(&self.selectors)
    }

    /// A subscription some selector still allows: a channel, or a pattern as written.
    pub fn subscription_allowed(&self, name: &[u8], pattern: bool) -> bool {
        self.all_selectors()
            .any(|s| s.channel_allowed(name, pattern))
    }

    /// Every channel pattern `old` named, some selector here names too (compared as written,
    /// as Redis does before it looks at any subscriber).
    pub fn channels_cover(&self, old: &Rules) -> bool {
        if self.all_selectors().any(|s| s.all_channels) {
            return true;
        }
        old.all_selectors().all(|o| {
            !o.all_channels
                && o.channel_patterns().iter().all(|c| {
                    self.all_selectors()
                        .any(|s| s.channel_patterns().contains(c))
                })
        })
    }

    /// Applies one `ACL SETUSER` operation.
    pub fn apply(&mut self, op: &str) -> Result<(), RuleError> {
        let lower = op.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "skip-sanitize-payload" => self.sanitize = Some(false),
            "sanitize-payload" => self.sanitize = Some(true),
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "clearselectors" => self.selectors.clear(),
            "reset" => {
                self.nopass = false;
                self.passwords.clear();
                self.root = Selector::default();
                self.enabled = false;
                self.sanitize = Some(true);
                self.selectors.clear();
            }
            _ => return self.apply_other(op),
        }
        Ok(())
    }

    fn apply_other(&mut self, op: &str) -> Result<(), RuleError> {
        let b = op.as_bytes();
        match b.first() {
            Some(b'>') => {
                let h = hash_password(&b[1..]);
                if !self.passwords.contains(&h) {
                    self.passwords.push(h);
                }
                self.nopass = false;
            }
            Some(b'#') => {
                let h = &op[1..];
                if !valid_hash(h) {
                    return Err(RuleError::BadHash);
                }
                if !self.passwords.iter().any(|p| p == h) {
                    self.passwords.push(h.to_string());
                }
                self.nopass = false;
            }
            Some(b'<') => self.remove_password(&hash_password(&b[1..]))?,
            Some(b'!') => {
                let h = &op[1..];
                if !valid_hash(h) {
                    return Err(RuleError::BadHash);
                }
                self.remove_password(h)?;
            }
            Some(b'(') if b.len() > 1 && b[b.len() - 1] == b')' => {
                let mut s = Selector::default();
                for part in op[1..op.len() - 1].split(' ').filter(|p| !p.is_empty()) {
                    s.apply(part)?;
                }
                self.selectors.push(s);
            }
            _ => self.root.apply(op)?,
        }
        Ok(())
    }

    fn remove_password(&mut self, h: &str) -> Result<(), RuleError> {
        let at = self
            .passwords
            .iter()
            .position(|p| p == h)
            .ok_or(RuleError::NoSuchPassword)?;
        self.passwords.remove(at);
        Ok(())
    }

    /// True if `pass` opens this user (enabled, and nopass or one of its passwords).
    pub fn password_ok(&self, pass: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let h = hash_password(pass);
        let mut ok = false;
        for p in &self.passwords {
            ok |= same(p.as_bytes(), h.as_bytes());
        }
        ok
    }

    /// Every selector allows everything (checking can be skipped).
    pub fn unrestricted(&self) -> bool {
        let r = &self.root;
        r.all_commands && r.all_keys && r.all_channels
    }

    /// The first selector that allows the command, or the most telling denial (channel over
    /// key over command, then the later argument), as Redis picks it.
    pub fn check(
        &self,
        top: &CommandSpec,
        cmd: &CommandSpec,
        args: &[Bytes],
    ) -> Result<(), Denied> {
        let mut worst: Option<Denied> = None;
        for s in std::iter::once(&self.root).chain(&self.selectors) {
            match s.check(top, cmd, args) {
                Ok(()) => return Ok(()),
                Err(d) => {
                    let better = match &worst {
                        None => true,
                        Some(w) => d.reason > w.reason || (d.reason == w.reason && d.pos > w.pos),
                    };
                    if better {
                        worst = Some(d);
                    }
                }
            }
        }
        Err(worst.unwrap_or(Denied {
            reason: super::Reason::Command,
            pos: 0,
        }))
    }

    /// `ACL LIST`'s line for this user, after `user <name> `.
    pub fn describe(&self) -> String {
        let mut out = String::from(if self.enabled { "on " } else { "off " });
        if self.nopass {
            out.push_str("nopass ");
        }
        match self.sanitize {
            Some(true) => out.push_str("sanitize-payload "),
            Some(false) => out.push_str("skip-sanitize-payload "),
            None => {}
        }
        for p in &self.passwords {
            out.push('#');
            out.push_str(p);
            out.push(' ');
        }
        out.push_str(&self.root.describe());
        for s in &self.selectors {
            out.push_str(" (");
            out.push_str(&s.describe());
            out.push(')');
        }
        out
    }

    /// `ACL GETUSER`'s reply.
    pub fn getuser_reply(&self) -> Reply {
        let mut flags = vec![Reply::bulk_str(if self.enabled { "on" } else { "off" })];
        if self.nopass {
            flags.push(Reply::bulk_str("nopass"));
        }
        match self.sanitize {
            Some(true) => flags.push(Reply::bulk_str("sanitize-payload")),
            Some(false) => flags.push(Reply::bulk_str("skip-sanitize-payload")),
            None => {}
        }
        let sel = |s: &Selector| {
            vec![
                (
                    Reply::bulk_str("commands"),
                    Reply::bulk_str(&s.describe_commands()),
                ),
                (Reply::bulk_str("keys"), Reply::bulk_str(&s.describe_keys())),
                (
                    Reply::bulk_str("channels"),
                    Reply::bulk_str(&s.describe_channels()),
                ),
            ]
        };
        let mut map = vec![
            (Reply::bulk_str("flags"), Reply::Set(flags)),
            (
                Reply::bulk_str("passwords"),
                Reply::Array(self.passwords.iter().map(|p| Reply::bulk_str(p)).collect()),
            ),
        ];
        map.extend(sel(&self.root));
        map.push((
            Reply::bulk_str("selectors"),
            Reply::Array(self.selectors.iter().map(|s| Reply::Map(sel(s))).collect()),
        ));
        Reply::Map(map)
    }
}

/// `ACL SETUSER`'s arguments with selectors split over several (`(~x* +get)` sent as `(~x*`,
/// `+get)`) joined back; `Err(i)` names the argument whose parenthesis never closes.
pub fn merge_selectors(args: &[String]) -> Result<Vec<String>, usize> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize)> = None;
    for (i, op) in args.iter().enumerate() {
        if op.starts_with('(') && !op.ends_with(')') {
            open = Some((op.clone(), i));
            continue;
        }
        match open.take() {
            Some((mut s, at)) => {
                s.push(' ');
                s.push_str(op);
                if op.ends_with(')') {
                    out.push(s);
                } else {
                    open = Some((s, at));
                }
            }
            None => out.push(op.clone()),
        }
    }
    match open {
        Some((_, at)) => Err(at),
        None => Ok(out),
    }
}
