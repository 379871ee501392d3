//! The driver restarting what died on its own, and healing everything after the load.

use std::time::Instant;

use super::{Driver, Fault};
use crate::churn::backend::{router_index, router_name};

impl Driver<'_> {
    /// Restarts whatever died without the harness killing it (and records it as a crash).
    pub fn check_liveness(&mut self) {
        for (name, tail) in self.backend.exited() {
            let at = self.elapsed();
            self.log(&format!("{name} exited on its own; {tail}"));
            self.crashes.push(format!(
                "t={:.1}s {name} exited on its own",
                at.as_secs_f64()
            ));
            let start = Instant::now();
            let router = router_index(&name);
            let restarted = if let Some(i) = router {
                let members = self.router_members();
                let r = self.backend.start_router(i, &members);
                self.forget_router(i);
                r.map_err(|e| format!("{e:#}"))
            } else {
                self.restart_node(&name)
            };
            if let Err(e) = restarted {
                self.crashes.push(format!("restarting {name}: {e}"));
            }
            let shards = name.rsplit_once('-').map(|(id, _)| vec![id.to_string()]);
            self.faults.push(Fault {
                start: self.shared.start,
                end: start.max(Instant::now()),
                shards: if router.is_some() { None } else { shards },
            });
        }
    }

    /// Starts node `name` again, as a replica of its shard's primary unless it is the primary.
    pub(super) fn restart_node(&mut self, name: &str) -> Result<(), String> {
        let Some(s) = self
            .shards
            .iter()
            .find(|s| s.primary == name || s.replica.as_deref() == Some(name))
        else {
            return Err(format!("{name} is in no shard"));
        };
        let of = (s.primary != name).then(|| self.addr(&s.primary));
        self.backend
            .start(name, of.as_deref())
            .map_err(|e| format!("{e:#}"))
    }

    /// After the load: heals paused and cut nodes, restarts whatever is down, and restarts
    /// missing routers.
    pub fn heal_all(&mut self) {
        self.backend.heal_faults();
        self.check_liveness();
        for i in 0..self.backend.routers() {
            if !self.backend.router_up(i) {
                let members = self.router_members();
                if let Err(e) = self.backend.start_router(i, &members) {
                    self.log(&format!("heal: {}: {e:#}", router_name(i)));
                }
                self.forget_router(i);
            }
            self.shared.routers.set_live(i, true);
        }
        let down: Vec<String> = self
            .shards
            .iter()
            .filter(|s| !self.backend.is_up(&s.primary))
            .map(|s| s.primary.clone())
            .collect();
        for node in down {
            if let Err(e) = self.restart_node(&node) {
                self.log(&format!("heal: {node}: {e}"));
            }
        }
    }
}
