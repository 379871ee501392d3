//! The final check: every test key read through the router once the faults are healed and the
//! migrations done, and compared with everything the load wrote.

use std::time::{Duration, Instant};

use ringcache_protocol::Reply;

use super::client::{as_u64, cmd, text, Answer, Cmd, Conn};
use super::model::{Anomaly, Keys, Kind};
use super::workload::Shared;

pub struct FinalRead {
    pub checked: usize,
    /// Keys that could not be read (error or no reply, after retries): not verified.
    pub unreadable: Vec<(String, String)>,
}

#[derive(Clone, Copy)]
enum Slot {
    Set(usize),
    Ctr(usize),
    App(usize),
}

impl Slot {
    fn key(self) -> String {
        match self {
            Slot::Set(i) => Keys::set_key(i),
            Slot::Ctr(i) => Keys::ctr_key(i),
            Slot::App(i) => Keys::app_key(i),
        }
    }
}

const ATTEMPTS: usize = 10;
const CHUNK: usize = 200;

pub async fn final_state(shared: &Shared) -> FinalRead {
    let keys = shared.model.keys;
    let mut todo: Vec<Slot> = (0..keys.n_set)
        .map(Slot::Set)
        .chain((0..keys.n_ctr).map(Slot::Ctr))
        .chain((0..keys.n_app).map(Slot::App))
        .collect();
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut checked = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut conn: Option<Conn> = None;
    for attempt in 0..ATTEMPTS {
        if todo.is_empty() || Instant::now() >= deadline {
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut retry = Vec::new();
        errors.clear();
        for chunk in todo.chunks(CHUNK) {
            if Instant::now() >= deadline {
                retry.extend_from_slice(chunk);
                continue;
            }
            let usable = matches!(&conn, Some(c) if !c.is_broken());
            if !usable {
                conn = Conn::connect(shared.router(), Duration::from_secs(2))
                    .await
                    .ok();
            }
            let Some(c) = conn.as_mut() else {
                retry.extend_from_slice(chunk);
                errors.push(("*".into(), "cannot connect to the router".into()));
                continue;
            };
            let cmds: Vec<Cmd> = chunk
                .iter()
                .map(|s| cmd(&["GET".to_string(), s.key()]))
                .collect();
            let answers = c.pipeline(&cmds, Duration::from_secs(10)).await;
            for (slot, (answer, at)) in chunk.iter().zip(answers) {
                match answer {
                    Answer::Reply(Reply::Error(e)) => {
                        let router = shared.routers.pick(0, 0);
                        super::routers::note_stale_router_error(shared, router, &e, at);
                        retry.push(*slot);
                        errors.push((slot.key(), e));
                    }
                    Answer::NoReply(why) => {
                        retry.push(*slot);
                        errors.push((slot.key(), why));
                    }
                    Answer::Reply(r) => {
                        checked += 1;
                        for a in check_one(shared, *slot, &r, at) {
                            shared.record(a);
                        }
                    }
                }
            }
        }
        todo = retry;
    }
    let unreadable = if todo.is_empty() {
        Vec::new()
    } else {
        todo.iter()
            .map(|s| {
                let key = s.key();
                let why = errors
                    .iter()
                    .find(|(k, _)| *k == key || k == "*")
                    .map_or_else(
                        || "not read before the deadline".to_string(),
                        |(_, e)| e.clone(),
                    );
                (key, why)
            })
            .collect()
    };
    FinalRead {
        checked,
        unreadable,
    }
}

fn check_one(shared: &Shared, slot: Slot, r: &Reply, at: Instant) -> Vec<Anomaly> {
    let model = &shared.model;
    let start = shared.start;
    let value: Option<&[u8]> = match r {
        Reply::Bulk(b) => Some(&b[..]),
        Reply::Nil => None,
        other => {
            return vec![Anomaly {
                kind: Kind::Unexpected,
                key: slot.key(),
                count: 1,
                since: start,
                at,
                detail: format!("final GET replied {}", super::client::brief(other)),
                final_check: true,
                write: 0,
            }]
        }
    };
    match slot {
        Slot::Set(i) => model.final_set(i, value, at, start),
        Slot::App(i) => model.final_append(i, value, at, start),
        Slot::Ctr(i) => {
            let n = match value {
                None => Some(0),
                Some(_) => as_u64(r),
            };
            match n {
                Some(n) => model.final_counter(i, n, at, start),
                None => vec![Anomaly {
                    kind: Kind::Phantom,
                    key: slot.key(),
                    count: 1,
                    since: start,
                    at,
                    detail: format!("final counter is not a number: {:?}", text(r)),
                    final_check: true,
                    write: 0,
                }],
            }
        }
    }
}
