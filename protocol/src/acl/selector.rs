//! One ACL selector: the commands, key patterns and channel patterns it allows, the rules that
//! change them (`+get`, `-@write`, `%R~k*`, `&ch`...) and how `ACL LIST` describes them, as
//! Redis 7.0 does.

use std::collections::HashMap;

use bytes::Bytes;

use super::spec::{self, Channels, KEY_ACCESS};
use super::{Denied, Reason, RuleError};
use crate::glob;
use crate::table::{self, flags, CommandSpec};

pub const READ: u8 = 1;
pub const WRITE: u8 = 2;

/// What one selector allows.
#[derive(Debug, Clone)]
pub struct Selector {
    /// A bit per command-table position.
    allowed: Vec<u64>,
    /// Commands added later would be allowed (`+@all` without a later `-@all`).
    future: bool,
    /// Every command, nothing taken away since `+@all`.
    pub all_commands: bool,
    /// Arguments allowed as argument 1 of a command otherwise denied (`+select|0`).
    first_args: HashMap<usize, Vec<String>>,
    pub all_keys: bool,
    keys: Vec<(String, u8)>,
    pub all_channels: bool,
    channels: Vec<String>,
}

impl Default for Selector {
    fn default() -> Self {
        Selector {
            allowed: vec![0; table::count().div_ceil(64)],
            future: false,
            all_commands: false,
            first_args: HashMap::new(),
            all_keys: false,
            keys: Vec::new(),
            all_channels: false,
            channels: Vec::new(),
        }
    }
}

fn lookup(name: &str) -> Option<&'static CommandSpec> {
    table::lookup(name.as_bytes())
}

/// The table positions of a command's subcommands.
fn children(parent: &CommandSpec) -> impl Iterator<Item = &'static CommandSpec> + '_ {
    table::all().filter(move |c| {
        c.name
            .strip_prefix(parent.name)
            .is_some_and(|rest| rest.starts_with('|'))
    })
}

impl Selector {
    fn bit(&self, pos: usize) -> bool {
        self.allowed
            .get(pos / 64)
            .is_some_and(|w| w & (1 << (pos % 64)) != 0)
    }

    fn set_bit(&mut self, pos: usize, on: bool) {
        if let Some(w) = self.allowed.get_mut(pos / 64) {
            if on {
                *w |= 1 << (pos % 64);
            } else {
                *w &= !(1 << (pos % 64));
                self.all_commands = false;
            }
        }
    }

    /// Allows or denies a command and, for a container, all its subcommands.
    fn change(&mut self, cmd: &'static CommandSpec, on: bool) {
        let pos = table::position(cmd);
        self.set_bit(pos, on);
        self.first_args.remove(&pos);
        if spec::has_subcommands(cmd) && !cmd.name.contains('|') {
            for sub in children(cmd) {
                self.set_bit(table::position(sub), on);
            }
        }
    }

    fn set_category(&mut self, bit: u32, on: bool) {
        for cmd in table::all() {
            if spec::acl_of(cmd).categories & bit == 0 {
                continue;
            }
            if cmd.name.contains('|') {
                let pos = table::position(cmd);
                self.set_bit(pos, on);
                self.first_args.remove(&pos);
            } else {
                self.change(cmd, on);
            }
        }
    }

    fn all(&mut self, on: bool) {
        for w in &mut self.allowed {
            *w = if on { u64::MAX } else { 0 };
        }
        self.future = on;
        self.all_commands = on;
        self.first_args.clear();
    }

    /// Applies one selector rule.
    pub fn apply(&mut self, op: &str) -> Result<(), RuleError> {
        let lower = op.to_ascii_lowercase();
        match lower.as_str() {
            "allkeys" | "~*" => {
                self.all_keys = true;
                self.keys.clear();
                return Ok(());
            }
            "resetkeys" => {
                self.all_keys = false;
                self.keys.clear();
                return Ok(());
            }
            "allchannels" | "&*" => {
                self.all_channels = true;
                self.channels.clear();
                return Ok(());
            }
            "resetchannels" => {
                self.all_channels = false;
                self.channels.clear();
                return Ok(());
            }
            "allcommands" | "+@all" => {
                self.all(true);
                return Ok(());
            }
            "nocommands" | "-@all" => {
                self.all(false);
                return Ok(());
            }
            _ => {}
        }
        let b = op.as_bytes();
        match b.first() {
            Some(b'~') | Some(b'%') => self.add_key_pattern(op),
            Some(b'&') => {
                if self.all_channels {
                    return Err(RuleError::ChannelsAfterAll);
                }
                let pat = &op[1..];
                if !self.channels.iter().any(|c| c == pat) {
                    self.channels.push(pat.to_string());
                }
                Ok(())
            }
            Some(b'+') | Some(b'-') if b.get(1) == Some(&b'@') => {
                let on = b[0] == b'+';
                let bit = spec::category(&op[2..]).ok_or(RuleError::Unknown)?;
                self.set_category(bit, on);
                Ok(())
            }
            Some(b'+') => self.allow_command(&op[1..]),
            Some(b'-') => {
                let cmd = lookup(&op[1..]).ok_or(RuleError::Unknown)?;
                self.change(cmd, false);
                Ok(())
            }
            _ => Err(RuleError::Syntax),
        }
    }

    fn allow_command(&mut self, name: &str) -> Result<(), RuleError> {
        let Some((parent, sub)) = name.split_once('|') else {
            let cmd = lookup(name).ok_or(RuleError::Unknown)?;
            self.change(cmd, true);
            return Ok(());
        };
        let cmd = lookup(parent).ok_or(RuleError::Unknown)?;
        if let Some((first, _)) = sub.split_once('|') {
            // `client|id|x` names an argument of a subcommand; `get|a|b` nothing at all.
            let is_sub =
                spec::has_subcommands(cmd) && lookup(&format!("{parent}|{first}")).is_some();
            return Err(if is_sub {
                RuleError::FirstArgOfSubcommand
            } else {
                RuleError::Unknown
            });
        }
        if sub.is_empty() {
            return Err(RuleError::Syntax);
        }
        if spec::has_subcommands(cmd) {
            let sub = lookup(name).ok_or(RuleError::Unknown)?;
            self.change(sub, true);
        } else {
            let list = self.first_args.entry(table::position(cmd)).or_default();
            let sub = sub.to_ascii_lowercase();
            if !list.contains(&sub) {
                list.push(sub);
            }
        }
        Ok(())
    }

    fn add_key_pattern(&mut self, op: &str) -> Result<(), RuleError> {
        if self.all_keys {
            return Err(RuleError::KeysAfterAll);
        }
        let b = op.as_bytes();
        let (flags, offset) = if b[0] == b'%' {
            let mut flags = 0;
            let mut i = 1;
            loop {
                match b.get(i).map(u8::to_ascii_uppercase) {
                    Some(b'R') if flags & READ == 0 => flags |= READ,
                    Some(b'W') if flags & WRITE == 0 => flags |= WRITE,
                    Some(b'~') => break,
                    _ => return Err(RuleError::Syntax),
                }
                i += 1;
            }
            if flags == 0 {
                return Err(RuleError::Syntax);
            }
            (flags, i + 1)
        } else {
            (READ | WRITE, 1)
        };
        let pat = &op[offset..];
        match self.keys.iter_mut().find(|(p, _)| p == pat) {
            Some((_, f)) => *f |= flags,
            None => self.keys.push((pat.to_string(), flags)),
        }
        Ok(())
    }

    /// Whether this selector allows the command: `top` is the command as looked up, `cmd` the
    /// subcommand it runs as (or `top` again).
    pub fn check(
        &self,
        top: &CommandSpec,
        cmd: &CommandSpec,
        args: &[Bytes],
    ) -> Result<(), Denied> {
        if !self.all_commands && !cmd.has(flags::NO_AUTH) {
            let pos = table::position(cmd);
            if !self.bit(pos) {
                let idx = if cmd.name.contains('|') { 2 } else { 1 };
                let allowed = match (self.first_args.get(&pos), args.get(idx)) {
                    (Some(list), Some(a)) => {
                        list.iter().any(|f| a.eq_ignore_ascii_case(f.as_bytes()))
                    }
                    _ => false,
                };
                if !allowed {
                    return Err(Denied {
                        reason: Reason::Command,
                        pos: 0,
                    });
                }
            }
        }
        if !self.all_keys {
            for pos in top.keys(args) {
                let kf = spec::key_flags(cmd, args, pos);
                if kf & spec::KEY_NOT_KEY != 0 {
                    continue;
                }
                if !self.key_allowed(&args[pos], kf) {
                    return Err(Denied {
                        reason: Reason::Key,
                        pos,
                    });
                }
            }
        }
        if !self.all_channels {
            let (range, pattern) = match spec::channels_of(cmd) {
                Channels::None => return Ok(()),
                Channels::First => (1..2.min(args.len()), false),
                Channels::All { pattern } => (1..args.len(), pattern),
            };
            for pos in range {
                if !self.channel_allowed(&args[pos], pattern) {
                    return Err(Denied {
                        reason: Reason::Channel,
                        pos,
                    });
                }
            }
        }
        Ok(())
    }

    /// A key under the permissions its key spec asks for (`KEY_*` flags).
    pub fn key_allowed(&self, key: &[u8], key_flags: u16) -> bool {
        if self.all_keys {
            return true;
        }
        let mut need = 0;
        if key_flags & KEY_ACCESS != 0 {
            need |= READ;
        }
        if key_flags & spec::WRITES != 0 {
            need |= WRITE;
        }
        self.keys
            .iter()
            .any(|(p, f)| f & need == need && glob::matches(p.as_bytes(), key, false))
    }

    /// A channel (or, for PSUBSCRIBE, a pattern, which must be allowed as written).
    pub fn channel_allowed(&self, channel: &[u8], pattern: bool) -> bool {
        self.all_channels
            || self.channels.iter().any(|p| {
                if pattern {
                    p.as_bytes() == channel
                } else {
                    glob::matches(p.as_bytes(), channel, false)
                }
            })
    }

    /// `allkeys`, or a `*` pattern that may be read.
    pub fn reads_any_key(&self) -> bool {
        self.all_keys || self.keys.iter().any(|(p, f)| p == "*" && f & READ != 0)
    }

    /// The channel patterns it names (`&...`), as written.
    pub fn channel_patterns(&self) -> &[String] {
        &self.channels
    }

    /// The selector's key patterns as `ACL GETUSER` shows them.
    pub fn describe_keys(&self) -> String {
        if self.all_keys {
            return "~*".into();
        }
        let v: Vec<String> = self
            .keys
            .iter()
            .map(|(p, f)| match *f {
                READ => format!("%R~{p}"),
                WRITE => format!("%W~{p}"),
                _ => format!("~{p}"),
            })
            .collect();
        v.join(" ")
    }

    pub fn describe_channels(&self) -> String {
        if self.all_channels {
            return "&*".into();
        }
        let v: Vec<String> = self.channels.iter().map(|c| format!("&{c}")).collect();
        v.join(" ")
    }

    /// The command rules as Redis 7.0 describes them: `+@all` or `-@all`, then the categories
    /// that fit best (each allowing, or denying, more of the user's commands than not), then
    /// the single commands and first arguments still different, in command-table order.
    pub fn describe_commands(&self) -> String {
        let additive = !self.future;
        let sign = if additive { '+' } else { '-' };
        let mut rules = String::from(if additive { "-@all " } else { "+@all " });
        let mut fake = Selector::default();
        fake.all(!additive);
        let mut temp = self.clone();
        let mut applied = [false; spec::CATEGORY_NAMES.len()];
        loop {
            let mut best = None;
            let (mut mindiff, mut maxsame) = (usize::MAX, 0);
            for (j, _) in spec::CATEGORY_NAMES.iter().enumerate() {
                if applied[j] {
                    continue;
                }
                let (mut on, mut off) = (0, 0);
                for cmd in table::all() {
                    if spec::acl_of(cmd).categories & (1 << j) != 0 {
                        if temp.bit(table::position(cmd)) {
                            on += 1;
                        } else {
                            off += 1;
                        }
                    }
                }
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < mindiff || (diff == mindiff && same > maxsame)) {
                    best = Some(j);
                    mindiff = diff;
                    maxsame = same;
                }
            }
            let Some(j) = best else { break };
            let name = spec::CATEGORY_NAMES[j];
            fake.set_category(1 << j, additive);
            temp.set_category(1 << j, !additive);
            rules.push_str(&format!("{sign}@{name} "));
            applied[j] = true;
        }
        for cmd in table::top_level() {
            self.describe_single(cmd, &mut fake, &mut rules);
            if spec::has_subcommands(cmd) {
                for sub in children(cmd) {
                    self.describe_single(sub, &mut fake, &mut rules);
                }
            }
            let pos = table::position(cmd);
            if !self.bit(pos) {
                for arg in self.first_args.get(&pos).into_iter().flatten() {
                    rules.push_str(&format!("+{}|{arg} ", cmd.name));
                }
            }
        }
        rules.pop();
        rules
    }

    fn describe_single(&self, cmd: &'static CommandSpec, fake: &mut Selector, rules: &mut String) {
        let pos = table::position(cmd);
        let user = self.bit(pos);
        if user != fake.bit(pos) {
            rules.push(if user { '+' } else { '-' });
            rules.push_str(cmd.name);
            rules.push(' ');
            fake.change(cmd, user);
        }
    }

    /// The whole selector as `ACL LIST` writes it.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let keys = self.describe_keys();
        if !keys.is_empty() {
            out.push_str(&keys);
            out.push(' ');
        }
        if self.all_channels {
            out.push_str("&* ");
        } else {
            out.push_str("resetchannels ");
            for c in &self.channels {
                out.push('&');
                out.push_str(c);
                out.push(' ');
            }
        }
        out.push_str(&self.describe_commands());
        out
    }
}
