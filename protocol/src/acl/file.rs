//! The aclfile: one `user <name> <rule>...` line per user, as Redis reads and writes it. A file
//! with any bad line is refused whole, naming the line.

use std::path::Path;

use super::user::{merge_selectors, Rules};
use super::Acl;

/// Reads the users of an aclfile (errors name the file and line, as Redis's do).
pub fn parse(path: &Path, text: &str) -> Result<Vec<(String, Rules)>, String> {
    let p = path.display();
    let mut users: Vec<(String, Rules)> = Vec::new();
    let mut errors = String::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if words[0] != "user" || words.len() < 2 {
            errors.push_str(&format!("{p}:{n}: should start with user keyword. "));
            continue;
        }
        let name = &words[1];
        if users.iter().any(|(u, _)| u == name) {
            errors.push_str(&format!(
                "WARNING: Duplicate user '{name}' found on line {n}. "
            ));
            continue;
        }
        let ops = match merge_selectors(&words[2..]) {
            Ok(ops) => ops,
            Err(at) => {
                errors.push_str(&format!(
                    "{p}:{n}: Unmatched parenthesis in acl selector starting at '{}'. ",
                    words[2 + at]
                ));
                continue;
            }
        };
        let mut rules = Rules::default();
        let mut bad = false;
        for op in &ops {
            if let Err(e) = rules.apply(op) {
                errors.push_str(&format!(
                    "{p}:{n}: Error in applying operation '{op}': {}. ",
                    e.text()
                ));
                bad = true;
                break;
            }
        }
        if !bad {
            users.push((name.clone(), rules));
        }
    }
    if errors.is_empty() {
        Ok(users)
    } else {
        Err(errors.trim_end().to_string())
    }
}

impl Acl {
    /// Loads the aclfile (`--aclfile`, ACL LOAD): the users it names replace all others. The
    /// names of users that went away (their clients are to be disconnected).
    pub fn load_file(&self) -> Result<Vec<String>, String> {
        let Some(path) = self.file_path() else {
            return Err(NO_FILE.into());
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("Error loading ACLs, opening file '{}': {e}", path.display()))?;
        let users = parse(&path, &text)?;
        let gone = self.replace_all(users);
        self.restore_pinned();
        Ok(gone)
    }

    /// ACL SAVE: every user, written to a temporary file renamed over the aclfile.
    pub fn save_file(&self) -> Result<(), String> {
        let Some(path) = self.file_path() else {
            return Err(NO_FILE.into());
        };
        let mut text = self.list().join("\n");
        text.push('\n');
        let tmp = path.with_extension("tmp-acl");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("There was an error trying to save the ACLs. Please check the server logs for more information ({e})"))
    }

    pub fn file_path(&self) -> Option<std::path::PathBuf> {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub const NO_FILE: &str = "This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bad_line_is_named() {
        let p = Path::new("/x/users.acl");
        let e = parse(p, "user a on >x ~* +@all\n\nuser b +nosuch\n").unwrap_err();
        assert!(
            e.starts_with("/x/users.acl:3: Error in applying operation '+nosuch'"),
            "{e}"
        );
        let e = parse(p, "usr a\n").unwrap_err();
        assert!(e.contains(":1: should start with user keyword"), "{e}");
        let ok = parse(p, "user a on >x (~k* +get) ~* &* +@all\n").unwrap();
        assert_eq!(ok[0].1.selectors.len(), 1);
    }
}
