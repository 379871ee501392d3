//! Script flags: an EVAL script's `#!lua flags=...` first line and a function's `flags` list.

/// What a script declared about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// A shebang (or a function): the flags below are all it may do; without one, a script
    /// runs in Redis's compatibility mode (checked per command instead of up front).
    pub declared: bool,
    pub no_writes: bool,
    pub allow_oom: bool,
    pub allow_stale: bool,
    pub no_cluster: bool,
    pub allow_cross_slot: bool,
}

impl Flags {
    /// Sets the flag called `name`; false if there is no such flag.
    pub fn set(&mut self, name: &str) -> bool {
        match name {
            "no-writes" => self.no_writes = true,
            "allow-oom" => self.allow_oom = true,
            "allow-stale" => self.allow_stale = true,
            "no-cluster" => self.no_cluster = true,
            "allow-cross-slot-keys" => self.allow_cross_slot = true,
            _ => return false,
        }
        true
    }

    /// The flags' names, as FUNCTION LIST shows them.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.no_writes, "no-writes"),
            (self.allow_oom, "allow-oom"),
            (self.allow_stale, "allow-stale"),
            (self.no_cluster, "no-cluster"),
            (self.allow_cross_slot, "allow-cross-slot-keys"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// The shebang of an EVAL script: its flags and the length of its first line (replaced by an
/// empty line before compiling, so line numbers stay), or Redis's error.
pub fn eval_shebang(body: &[u8]) -> Result<(Flags, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((Flags::default(), 0));
    }
    let end = memchr::memchr(b'\n', body).unwrap_or(body.len());
    let line = String::from_utf8_lossy(&body[2..end]);
    let mut parts = line.split_ascii_whitespace();
    if parts.next() != Some("lua") {
        return Err("ERR Unexpected engine in script shebang".into());
    }
    let mut flags = Flags {
        declared: true,
        ..Flags::default()
    };
    for opt in parts {
        let Some(list) = opt.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {opt}"));
        };
        for name in list.split(',').filter(|n| !n.is_empty()) {
            if !flags.set(name) {
                return Err(format!("ERR Unexpected flag in script shebang: {name}"));
            }
        }
    }
    Ok((flags, end))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shebangs() {
        assert_eq!(eval_shebang(b"return 1").unwrap(), (Flags::default(), 0));
        let (f, n) = eval_shebang(b"#!lua flags=no-writes,allow-oom\nreturn 1").unwrap();
        assert!(f.declared && f.no_writes && f.allow_oom && !f.allow_stale);
        assert_eq!(n, 31);
        let (f, _) = eval_shebang(b"#!lua flags=\nreturn 1").unwrap();
        assert!(f.declared && !f.no_writes);
        assert!(eval_shebang(b"#!not-lua\n")
            .unwrap_err()
            .contains("Unexpected engine"));
        assert!(eval_shebang(b"#!lua badger=data\n")
            .unwrap_err()
            .contains("Unknown lua shebang option"));
        assert!(eval_shebang(b"#!lua flags=allow-oom,what?\n")
            .unwrap_err()
            .contains("Unexpected flag in script shebang"));
    }
}
