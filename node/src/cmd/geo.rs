//! Scaffolding: the geo commands are being written.

use bytes::Bytes;
use ringcache_protocol::table::CommandSpec;
use ringcache_protocol::Reply;

use super::args::unknown_command;
use super::ctx::Ctx;

pub const NAMES: &[&str] = &[];

pub fn run(_ctx: &mut Ctx, _spec: &CommandSpec, a: &[Bytes]) -> Reply {
    unknown_command(a)
}
