//! Deterministic simulation of the single-copy secrets beyond the refresh
//! (issue 22; docs/protocol.md, "The fault model of the simulation"): a
//! browser login's code exchange (`rotation::secrets::login`), a service
//! account's client-secret rotation in both modes (`rotate_secret`,
//! zero-downtime and `replace`), and `register-app`'s new client secret
//! (`rotation::persist`, as src/broker/register.rs calls it).
//!
//! In the manner of tests/sim.rs: several agents run the **real** code on
//! one thread (each operation a future polled with a no-op waker), against
//! in-process models of Snyk (refresh tokens and client secrets it issued,
//! which are valid, which revoked; a `replace` revokes every other secret
//! at once, a zero-downtime rotation keeps the old one until `retire`;
//! authorization codes, each usable once), the secret store (versions,
//! check-and-set, `cas_required` as snykey sets it, outages, answers lost
//! after the write was applied) and each agent's own journal (fsync'd, kept
//! on SIGKILL, sometimes full). Every call to the world is a step; between
//! steps a seeded scheduler moves an agent, advances time or injects a fault,
//! and the invariants are checked after **every** step.
//!
//! Faults: SIGKILL at any step (then a restart recovers every journal entry
//! with `Memory::recover` and lands it, as the agent's start-up does), Snyk
//! answers lost after Snyk processed the request or before it did (a
//! timeout, a proxy's 3xx/4xx page, a bodyless 429, a gateway's 5xx,
//! classified by the agent's own `classify_error`), OAuth 429/503, the store
//! down or losing a write's answer, the journal refusing writes, and two
//! agents working on one credential at once.
//!
//! Invariants:
//! * **never lost**: the newest valid secret Snyk issued for a credential is
//!   in the store, in a journal, in a live agent's memory or on its way —
//!   unless a fault lost exactly *its* answer, or a kill took it before the
//!   agent could do anything but try to make it durable (exact excuses, per
//!   secret). A login may replace another login's token (rule 4): a
//!   refresh token is also kept when a later landing superseded it.
//! * **durable before anything else can fail**: the store never holds a
//!   secret Snyk revoked while a valid newer one is in memory only and its
//!   holder has already called Snyk again (the test grant, a delete).
//! * **I2**: an access token is handed out only once its secret is durable.
//! * **no replay**: an authorization code is exchanged once.
//! * two agents never share a journal directory (the real journal refuses
//!   the second: `a_second_agent_on_one_journal_directory_is_refused`).
//!
//! `SNYKEY_SIM_SEED=N cargo test --test sim_secrets` replays a seed
//! (`SNYKEY_SIM_TRACE=1` prints every step), `SNYKEY_SIM_SEEDS=N` runs more,
//! `scripts/sim N` runs both simulations in release mode.

mod sim_support;
use sim_support::{Rng, seeds, step, tracing_on};
use snykey::broker::journal::{Base, Entry, Journal};
use snykey::broker::rotation::secrets::{
    self, Exchange, Issued, LoginFailed, Rotated, RotationStopped, SecretRotation,
};
use snykey::broker::rotation::{self, Claims, Io, Landing, Memory, Rules};
use snykey::credential::Kind;
use snykey::secret::Secret;
use snykey::snyk::{GrantError, RestError, TokenGrant};
use snykey::store::{Record, StoreError, Versioned};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

macro_rules! trace {
    ($($t:tt)*) => {
        if tracing_on() {
            println!($($t)*);
        }
    };
}

// ---------------------------------------------------------------- Snyk

/// A secret Snyk issued: a login's refresh token or a client secret.
#[derive(Debug, Clone)]
struct Sec {
    cred: usize,
    /// Snyk accepts it (not revoked by a `replace`, not deleted by `retire`).
    valid: bool,
    /// Issue order.
    seq: u64,
    /// The step the operation that asked for it started at (a login reads
    /// the generation it lands above then).
    op_started: u64,
    /// Snyk processed the request; the answer carrying it is on its way
    /// to this agent.
    in_transit: Option<usize>,
    /// The agent whose memory holds it (a running operation, or
    /// `Memory::unlanded`).
    holder: Option<usize>,
    /// Its holder called Snyk again while it was in memory only.
    exposed: bool,
    /// Its holder did something else before trying the journal, or left it
    /// out of a journal write: a kill then is no longer excused.
    unsaved: bool,
    /// A journal write of it failed (disk full): the store is the next try.
    journal_failed: bool,
    /// A fault lost exactly its answer, or a kill took it before the agent
    /// could do anything but try to make it durable.
    excused: bool,
    /// The step it was last written to the store at.
    stored_step: Option<u64>,
    /// It reached the store or a journal (a later login may replace it).
    was_durable: bool,
    /// A second secret Snyk issued but refuses at every grant
    /// (`invalid_client`) while the old one still works.
    refused: bool,
    /// The old secret of a rotation whose holder learned that Snyk refuses
    /// the new one: at a kill only the holder's own journal counts as
    /// durable (the store may hold it, but the rotation's journaled new
    /// secret lands over it at the restart; another agent's stale entry
    /// of it would be discarded).
    back: bool,
    /// ... and its holder has not tried the journal since.
    just_learned: bool,
}

// ---------------------------------------------------------------- the world

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Login,
    Rotate {
        replace: bool,
    },
    Register,
    /// The lander (`spawn_lander`'s body): the journal first if the secret
    /// is in memory only, then `land`.
    Land,
}

#[derive(Debug)]
enum Done {
    Login(Result<Issued, LoginFailed>),
    Rotate(Result<Rotated, RotationStopped>),
    // Read through `Debug` in traces.
    #[allow(dead_code)]
    Register(Option<Landing>),
    /// The landing, whether the successor is journaled, and the secret the
    /// landing brought (what a held access token waits for).
    Land(Landing, bool, Option<String>),
}

type Task = Pin<Box<dyn Future<Output = (Memory, Done)>>>;

struct Running {
    op: Op,
    cred: usize,
    task: Task,
}

struct Agent {
    name: String,
    /// Its journal directory (one per agent: the real journal locks it).
    journal_dir: String,
    /// Per credential, fsync'd: kept on SIGKILL.
    journal: BTreeMap<usize, Entry>,
    mem: HashMap<usize, Memory>,
    running: Option<Running>,
    alive: bool,
    dead_since: u64,
    /// Credentials whose lander runs (`spawn_lander`).
    landers: HashSet<usize>,
    /// Start-up's replay: journaled successors landed before anything
    /// else runs (src/broker/revive.rs `replay`).
    replay: Vec<usize>,
    /// An access token held back until its secret is durable (login.rs),
    /// and the secret it waits for (`Flight::held_for`).
    held: HashMap<usize, (Secret, Option<String>)>,
    journal_full_until: u64,
    /// The step its running operation started at.
    op_started: u64,
    /// When its running operation last moved: a process is never starved
    /// by the scheduler longer than a fault would stop it.
    last_polled: u64,
    last_kill: Option<u64>,
}

#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    steps: u64,
    faults: u64,
    kills: u64,
    logins: u64,
    rotations: u64,
    replaces: u64,
    registers: u64,
    issued: u64,
    handed_out: u64,
    excused: u64,
    lost: u64,
    replays: u64,
    refusals: u64,
}

struct World {
    rng: Rng,
    now: u64,
    secs: HashMap<String, Sec>,
    next_seq: u64,
    /// Access token → the secret it was minted with.
    access: HashMap<String, String>,
    codes_used: HashSet<String>,
    /// Per credential: its kind and its store versions (index = version - 1).
    creds: Vec<(Kind, Vec<Record>)>,
    agents: Vec<Agent>,
    violations: Vec<String>,
    stats: Stats,
    faults: bool,
    store_down_until: u64,
    /// No new store outage before this time.
    store_quiet_until: u64,
    rules: Rules,
}

type W = Rc<RefCell<World>>;

/// The credentials every world starts with.
const APP: usize = 0;
const SA: usize = 1;

fn secret_of(kind: Kind, r: &Record) -> Option<String> {
    let s = match kind {
        Kind::OauthApp if r.refresh_token.is_some() => r.refresh_token.as_ref(),
        _ => r.client_secret.as_ref(),
    };
    s.map(|s| s.expose().to_string())
}

impl World {
    fn violation(&mut self, what: String) {
        let msg = format!("step {} at {}ms: {what}", self.stats.steps, self.now);
        trace!("VIOLATION {msg}");
        if self.violations.len() < 5 {
            self.violations.push(msg);
        }
    }

    fn issue(&mut self, cred: usize, prefix: &str, to: Option<usize>) -> String {
        self.next_seq += 1;
        self.stats.issued += 1;
        let name = format!("{prefix}-{cred}-{}", self.next_seq);
        self.secs.insert(
            name.clone(),
            Sec {
                cred,
                valid: true,
                seq: self.next_seq,
                op_started: to.map_or(self.stats.steps, |a| self.agents[a].op_started),
                in_transit: to,
                holder: None,
                exposed: false,
                unsaved: false,
                journal_failed: false,
                excused: false,
                stored_step: None,
                was_durable: false,
                refused: false,
                back: false,
                just_learned: false,
            },
        );
        name
    }

    fn current(&self, cred: usize) -> Option<Versioned> {
        let versions = &self.creds[cred].1;
        versions.last().map(|r| Versioned {
            record: r.clone(),
            version: versions.len() as u64,
            hidden: false,
        })
    }

    fn stored_secret(&self, cred: usize) -> Option<String> {
        let kind = self.creds[cred].0;
        self.creds[cred]
            .1
            .last()
            .filter(|r| !r.deleted)
            .and_then(|r| secret_of(kind, r))
    }

    fn in_journal(&self, cred: usize, name: &str) -> bool {
        let kind = self.creds[cred].0;
        self.agents.iter().any(|a| {
            a.journal
                .get(&cred)
                .and_then(|e| e.record.as_ref())
                .and_then(|r| secret_of(kind, r))
                .is_some_and(|s| s == name)
        })
    }

    fn durable(&self, cred: usize, name: &str) -> bool {
        self.stored_secret(cred).as_deref() == Some(name) || self.in_journal(cred, name)
    }

    /// Before every call to Snyk by `agent` about `cred`: what it holds in
    /// memory only is exposed from now on (no longer "could not be saved").
    fn calls_snyk(&mut self, agent: usize, cred: usize) {
        let names: Vec<String> = self
            .secs
            .iter()
            .filter(|(_, s)| s.holder == Some(agent) && s.cred == cred && !s.exposed)
            .map(|(n, _)| n.clone())
            .collect();
        for n in names {
            if !self.durable(cred, &n) {
                trace!(
                    "{}ms agent {agent} calls Snyk while {n} is in memory only",
                    self.now
                );
                if let Some(s) = self.secs.get_mut(&n) {
                    s.exposed = true;
                    // Before even trying the journal: a kill is no longer excused.
                    s.unsaved |= !s.journal_failed;
                }
            }
        }
    }

    /// Before every store call by `agent` about `cred`: a secret it holds
    /// in memory only, whose journal write it has not tried yet, is unsaved.
    fn calls_store(&mut self, agent: usize, cred: usize) {
        for (n, s) in self.secs.iter_mut() {
            if s.holder == Some(agent) && s.cred == cred && s.just_learned {
                trace!("agent {agent} calls the store before journaling {n}");
                s.just_learned = false;
                s.unsaved = true;
            }
        }
        let names: Vec<String> = self
            .secs
            .iter()
            .filter(|(_, s)| {
                s.holder == Some(agent) && s.cred == cred && !s.journal_failed && !s.unsaved
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in names {
            if !self.durable(cred, &n) {
                trace!(
                    "{}ms agent {agent} calls the store before journaling {n}",
                    self.now
                );
                if let Some(s) = self.secs.get_mut(&n) {
                    s.unsaved = true;
                }
            }
        }
    }

    /// After every step.
    fn check(&mut self) {
        for cred in 0..self.creds.len() {
            self.check_cred(cred);
        }
    }

    fn check_cred(&mut self, cred: usize) {
        let newest = self
            .secs
            .iter()
            .filter(|(_, s)| s.cred == cred && s.valid)
            .max_by_key(|(_, s)| s.seq)
            .map(|(n, s)| (n.clone(), s.clone()));
        let Some((name, sec)) = newest else {
            return;
        };
        let alive_holder = sec.holder.is_some_and(|a| self.agents[a].alive);
        let held = self.durable(cred, &name) || alive_holder || sec.in_transit.is_some();
        if !held && !sec.excused {
            // A login's token dropped for another login's that landed after
            // it began (rule 4: a login lands unless something newer than
            // what it read landed since; two humans logging in at once).
            let superseded = self.creds[cred].0 == Kind::OauthApp
                && self.stored_secret(cred).is_some_and(|s| {
                    self.secs.get(&s).is_some_and(|t| {
                        t.valid && t.stored_step.is_some_and(|at| at >= sec.op_started)
                    })
                });
            if !superseded {
                self.stats.lost += 1;
                self.violation(format!(
                    "the newest valid secret {name} of credential {cred} is neither stored, journaled, held nor on its way: lost"
                ));
                // Reported once.
                if let Some(s) = self.secs.get_mut(&name) {
                    s.excused = true;
                }
            }
        }
        // The store holds a revoked secret while a newer valid one is in
        // memory only, and its holder already called Snyk again.
        let revoked_stored = self
            .stored_secret(cred)
            .and_then(|s| self.secs.get(&s).cloned())
            .filter(|s| !s.valid);
        if let Some(old) = revoked_stored {
            let exposed: Vec<String> = self
                .secs
                .iter()
                .filter(|(n, s)| {
                    s.cred == cred
                        && s.valid
                        && s.seq > old.seq
                        && s.exposed
                        && s.holder.is_some()
                        && !self.durable(cred, n)
                })
                .map(|(n, _)| n.clone())
                .collect();
            for n in exposed {
                self.violation(format!(
                    "the store holds a revoked secret of credential {cred} while the valid {n} is in memory only and its holder went on calling Snyk"
                ));
                if let Some(s) = self.secs.get_mut(&n) {
                    s.exposed = false;
                }
            }
        }
    }

    fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(1_800_000_000)
            + Duration::from_millis(self.now)
    }

    fn store_call(&mut self) -> Result<(), StoreError> {
        if self.now < self.store_down_until {
            return Err(StoreError::Unavailable("down".into()));
        }
        if self.faults && self.rng.chance(0.03) {
            self.stats.faults += 1;
            return Err(StoreError::Unavailable("request lost".into()));
        }
        Ok(())
    }

    fn store_write(
        &mut self,
        agent: usize,
        cred: usize,
        record: &Record,
        cas: u64,
    ) -> Result<u64, StoreError> {
        self.store_call()?;
        let current = self.creds[cred].1.len() as u64;
        if cas != current {
            return Err(StoreError::Conflict { expected: cas });
        }
        if let Some(old) = self.creds[cred].1.last() {
            if record.generation < old.generation {
                let g = (old.generation, record.generation);
                self.violation(format!(
                    "generation of credential {cred} went down from {} to {}",
                    g.0, g.1
                ));
            }
        }
        self.creds[cred].1.push(record.clone());
        let kind = self.creds[cred].0;
        let step = self.stats.steps;
        if let Some(s) = secret_of(kind, record).and_then(|s| self.secs.get_mut(&s)) {
            s.stored_step = Some(step);
            s.was_durable = true;
        }
        trace!(
            "{}ms agent {agent} wrote cred {cred} v{} secret={:?} gen={} claim={}",
            self.now,
            current + 1,
            secret_of(kind, record),
            record.generation,
            record.claim.is_some()
        );
        if self.faults && self.rng.chance(0.03) {
            self.stats.faults += 1;
            return Err(StoreError::Unavailable(
                "answer lost after the write".into(),
            ));
        }
        Ok(current + 1)
    }

    fn note(&mut self, agent: usize, cred: usize, entry: &Entry) -> Result<(), String> {
        let kind = self.creds[cred].0;
        let noted = entry.record.as_ref().and_then(|r| secret_of(kind, r));
        for s in self.secs.values_mut() {
            if s.holder == Some(agent) && s.cred == cred {
                s.just_learned = false;
            }
        }
        if self.now < self.agents[agent].journal_full_until
            || (self.faults && self.rng.chance(0.02))
        {
            self.stats.faults += 1;
            if let Some(s) = noted.as_ref().and_then(|n| self.secs.get_mut(n)) {
                s.journal_failed = true;
            }
            return Err("disk full".into());
        }
        // What it holds in memory only and leaves out of its journal.
        let left_out: Vec<String> = self
            .secs
            .iter()
            .filter(|(n, s)| {
                s.holder == Some(agent) && s.cred == cred && noted.as_ref() != Some(*n)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in left_out {
            if !self.durable(cred, &n) {
                if let Some(s) = self.secs.get_mut(&n) {
                    s.unsaved = true;
                }
            }
        }
        trace!(
            "{}ms agent {agent} journal cred {cred} claim={} record={:?}",
            self.now,
            entry.claim.is_some(),
            entry.record.as_ref().and_then(|r| secret_of(kind, r))
        );
        if let Some(s) = entry
            .record
            .as_ref()
            .and_then(|r| secret_of(kind, r))
            .and_then(|s| self.secs.get_mut(&s))
        {
            s.was_durable = true;
        }
        let a = &mut self.agents[agent];
        if entry.is_empty() {
            a.journal.remove(&cred);
        } else {
            a.journal.insert(cred, entry.clone());
        }
        Ok(())
    }

    /// A request to Snyk that it does not process: an OAuth 503 or 429, or
    /// a page from something in front of it, classified as the agent does.
    fn grant_refused(&mut self) -> GrantError {
        match self.rng.below(4) {
            0 => GrantError::Unavailable {
                status: 503,
                retry_after: None,
            },
            1 => GrantError::Unavailable {
                status: 429,
                retry_after: Some(Duration::from_secs(2)),
            },
            2 => {
                let status = self.page_status();
                snykey::snyk::classify_error(status, b"<html>blocked</html>", None)
            }
            _ => GrantError::Unreachable {
                endpoint: "sim".into(),
                message: "connection refused".into(),
            },
        }
    }

    /// An answer lost after Snyk processed the request: a timeout, or a
    /// page that replaced the answer.
    fn grant_lost(&mut self) -> GrantError {
        if self.rng.chance(0.5) {
            GrantError::Unknown {
                timed_out: true,
                message: "timed out".into(),
            }
        } else {
            let status = self.page_status();
            snykey::snyk::classify_error(status, b"<html>blocked</html>", None)
        }
    }

    fn rest_refused(&mut self) -> RestError {
        match self.rng.below(4) {
            0 => RestError::Unavailable {
                status: 503,
                detail: "unavailable".into(),
            },
            1 => RestError::Refused {
                status: 429,
                detail: "HTTP 429".into(),
            },
            2 => {
                let status = self.page_status();
                RestError::Refused {
                    status,
                    detail: format!("HTTP {status}"),
                }
            }
            _ => RestError::Unreachable("connection refused".into()),
        }
    }

    fn rest_lost(&mut self) -> RestError {
        if self.rng.chance(0.5) {
            RestError::Unreachable("timed out".into())
        } else {
            let status = self.page_status();
            RestError::Refused {
                status,
                detail: format!("HTTP {status}"),
            }
        }
    }

    fn page_status(&mut self) -> u16 {
        const PAGES: [u16; 9] = [302, 401, 403, 407, 408, 429, 502, 503, 504];
        PAGES[self.rng.below(PAGES.len() as u64) as usize]
    }

    /// Does Snyk process this request (else: refused before it got there)?
    fn snyk_processes(&mut self) -> bool {
        !(self.faults && self.rng.chance(0.08))
    }

    /// Is the answer lost on its way back?
    fn answer_lost(&mut self) -> bool {
        let lost = self.faults && self.rng.chance(0.06);
        if lost {
            self.stats.faults += 1;
        }
        lost
    }

    /// The answer carrying `name` reached `agent`, or was lost (excused: exactly that answer).
    fn deliver(&mut self, agent: usize, name: &str) -> bool {
        let lost = self.answer_lost();
        let alive = self.agents[agent].alive;
        if let Some(s) = self.secs.get_mut(name) {
            s.in_transit = None;
            if lost || !alive {
                s.excused = true;
            } else {
                s.holder = Some(agent);
            }
        }
        if lost {
            self.stats.excused += 1;
        }
        trace!(
            "{}ms agent {agent} answer carrying {name} lost={lost}",
            self.now
        );
        !lost
    }

    /// `agent` learned that Snyk refuses `refused` for good: from now on
    /// it is not a valid secret, and the old one (`old`, read by the
    /// rotation before the new one replaced it in the store) is the one
    /// the agent holds — in memory, until it makes it durable again.
    fn refusal_learned(&mut self, agent: usize, refused: &str, old: Option<&str>) {
        trace!(
            "{}ms agent {agent} learns Snyk refuses {refused} (old {old:?})",
            self.now
        );
        if let Some(s) = self.secs.get_mut(refused) {
            s.valid = false;
        }
        let Some(o) = old.filter(|o| *o != refused) else {
            return;
        };
        if let Some(s) = self.secs.get_mut(o).filter(|s| s.valid) {
            s.holder = Some(agent);
            s.exposed = false;
            s.unsaved = false;
            s.journal_failed = false;
            s.back = true;
            s.just_learned = true;
        }
    }

    /// SIGKILL: the running operation and every memory are gone; the
    /// journal stays.
    fn kill(&mut self, agent: usize) {
        trace!("{}ms agent {agent} KILLED", self.now);
        self.stats.kills += 1;
        let a = &mut self.agents[agent];
        a.running = None;
        a.mem.clear();
        a.landers.clear();
        a.replay.clear();
        a.held.clear();
        a.alive = false;
        a.dead_since = self.now;
        let names: Vec<String> = self
            .secs
            .iter()
            .filter(|(_, s)| s.holder == Some(agent) || s.in_transit == Some(agent))
            .map(|(n, _)| n.clone())
            .collect();
        for n in names {
            let cred = self.secs[&n].cred;
            let durable = if self.secs[&n].back {
                // Its own journal: its restart lands what that holds.
                let kind = self.creds[cred].0;
                self.agents[agent]
                    .journal
                    .get(&cred)
                    .and_then(|e| e.record.as_ref())
                    .and_then(|r| secret_of(kind, r))
                    .is_some_and(|s| s == n)
            } else {
                self.durable(cred, &n)
            };
            let s = self.secs.get_mut(&n).expect("listed");
            if s.in_transit.take().is_some() {
                // Its answer was on its way: the kill lost exactly it.
                s.excused = true;
                self.stats.excused += 1;
                continue;
            }
            s.holder = None;
            // Taken before anything but making it durable was tried: the
            // kill lost exactly this answer.
            if !durable && !s.unsaved {
                s.excused = true;
                self.stats.excused += 1;
            }
        }
    }
}

// ---------------------------------------------------------------- Io

struct SimIo {
    w: W,
    agent: usize,
    cred: usize,
    /// A login's authorization code.
    code: String,
    /// The secret the last read found stored.
    last_read: Option<String>,
    /// A rotation's old secret (stored when it asked for a new one): it
    /// holds it in memory once the new one replaced it in the store.
    old: Option<String>,
}

impl SimIo {
    fn world(&self) -> std::cell::RefMut<'_, World> {
        let mut w = self.w.borrow_mut();
        w.stats.steps += 1;
        w
    }
}

impl Io for SimIo {
    fn mono(&self) -> Duration {
        Duration::from_millis(self.w.borrow().now)
    }
    fn wall(&self) -> SystemTime {
        self.w.borrow().wall()
    }
    fn nonce(&mut self) -> String {
        let mut w = self.w.borrow_mut();
        format!("{:016x}{:016x}", w.rng.next(), w.rng.next())
    }
    fn agent(&self) -> String {
        self.w.borrow().agents[self.agent].name.clone()
    }
    async fn read(&mut self) -> Result<Option<Versioned>, StoreError> {
        step().await;
        let (current, stored) = {
            let mut w = self.world();
            w.calls_store(self.agent, self.cred);
            w.store_call()?;
            (w.current(self.cred), w.stored_secret(self.cred))
        };
        self.last_read = stored;
        Ok(current)
    }
    async fn write(&mut self, record: &Record, cas: u64) -> Result<u64, StoreError> {
        step().await;
        let (agent, cred) = (self.agent, self.cred);
        let mut w = self.world();
        w.calls_store(agent, cred);
        w.store_write(agent, cred, record, cas)
    }
    async fn note(&mut self, entry: &Entry) -> Result<(), String> {
        step().await;
        let (agent, cred) = (self.agent, self.cred);
        self.world().note(agent, cred, entry)
    }
    async fn send(
        &mut self,
        _: &Secret,
        _: &Record,
        _: Duration,
    ) -> Result<TokenGrant, GrantError> {
        self.world()
            .violation("a refresh token was sent: no path simulated here sends one".into());
        Err(GrantError::Unreachable {
            endpoint: "sim".into(),
            message: "no refresh here".into(),
        })
    }
}

fn grant(access: String, refresh: Option<String>) -> TokenGrant {
    TokenGrant {
        access_token: Secret::new(access),
        expires_in: Duration::from_secs(3600),
        token_type: "bearer".into(),
        scope: None,
        refresh_token: refresh.map(Secret::new),
        refresh_expires_in: None,
    }
}

impl Exchange for SimIo {
    async fn exchange(&mut self, _: Option<&Secret>) -> Result<TokenGrant, GrantError> {
        step().await;
        let (agent, cred) = (self.agent, self.cred);
        let name = {
            let mut w = self.world();
            w.calls_snyk(agent, cred);
            if w.codes_used.contains(&self.code) {
                w.stats.replays += 1;
                let code = self.code.clone();
                w.violation(format!("replay: authorization code {code} exchanged twice"));
            }
            if !w.snyk_processes() {
                w.stats.faults += 1;
                return Err(w.grant_refused());
            }
            w.codes_used.insert(self.code.clone());
            w.issue(cred, "rt", Some(agent))
        };
        // The answer is on its way: others move, a kill may come.
        step().await;
        let mut w = self.world();
        if !w.deliver(agent, &name) {
            return Err(w.grant_lost());
        }
        let access = format!("at-{name}");
        w.access.insert(access.clone(), name.clone());
        Ok(grant(access, Some(name)))
    }
}

impl SecretRotation for SimIo {
    async fn new_secret(&mut self, replace: bool) -> Result<Secret, RestError> {
        step().await;
        let (agent, cred) = (self.agent, self.cred);
        self.old = self.last_read.clone();
        let old = self.old.clone().unwrap_or_default();
        let name = {
            let mut w = self.world();
            w.calls_snyk(agent, cred);
            if !w.snyk_processes() {
                w.stats.faults += 1;
                return Err(w.rest_refused());
            }
            let name = w.issue(cred, "cs", Some(agent));
            // A second secret Snyk will refuse at its test grant while the
            // old one still works (the rollback's case).
            let old_works = w.secs.get(&old).is_some_and(|s| s.valid && !s.refused);
            if !replace && old_works && w.faults && w.rng.chance(0.1) {
                w.stats.refusals += 1;
                if let Some(s) = w.secs.get_mut(&name) {
                    s.refused = true;
                }
            }
            if replace {
                for (n, s) in w.secs.iter_mut() {
                    if s.cred == cred && *n != name {
                        s.valid = false;
                    }
                }
            }
            trace!(
                "{}ms agent {agent} new secret {name} replace={replace}",
                w.now
            );
            name
        };
        step().await;
        let mut w = self.world();
        if !w.deliver(agent, &name) {
            return Err(w.rest_lost());
        }
        Ok(Secret::new(name))
    }

    async fn prove(&mut self, secret: &Secret) -> Result<TokenGrant, GrantError> {
        step().await;
        let (agent, cred) = (self.agent, self.cred);
        let answer = {
            let mut w = self.world();
            w.calls_snyk(agent, cred);
            if !w.snyk_processes() {
                w.stats.faults += 1;
                return Err(w.grant_refused());
            }
            let valid = w
                .secs
                .get(secret.expose())
                .is_some_and(|s| s.valid && !s.refused);
            if valid {
                let access = format!("at-{}-{}", secret.expose(), w.rng.next() % 1000);
                w.access.insert(access.clone(), secret.expose().to_string());
                Ok(grant(access, None))
            } else {
                Err(GrantError::Permanent {
                    error: "invalid_client".into(),
                    description: None,
                })
            }
        };
        step().await;
        let mut w = self.world();
        if w.answer_lost() {
            return Err(w.grant_lost());
        }
        if w.secs.get(secret.expose()).is_some_and(|s| s.refused) {
            w.refusal_learned(agent, secret.expose(), self.old.as_deref());
        }
        answer
    }

    async fn retire(&mut self, secret: &Secret) -> Result<(), RestError> {
        step().await;
        let (agent, cred) = (self.agent, self.cred);
        {
            let mut w = self.world();
            w.calls_snyk(agent, cred);
            if !w.snyk_processes() {
                w.stats.faults += 1;
                return Err(w.rest_refused());
            }
            trace!("{}ms agent {agent} retires {}", w.now, secret.expose());
            if let Some(s) = w.secs.get_mut(secret.expose()) {
                s.valid = false;
            }
        }
        step().await;
        let mut w = self.world();
        if w.answer_lost() {
            return Err(w.rest_lost());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- the run

#[derive(Clone, Copy)]
struct Config {
    agents: usize,
    steps: u64,
    sabotage: rotation::Sabotage,
}

fn rules(cfg: &Config) -> Rules {
    let mut r = Rules::new(Claims::Store, false, Duration::from_secs(30));
    r.sabotage = cfg.sabotage;
    r
}

fn start_op(w: &W, agent: usize, op: Op, cred: usize) {
    let mut mem = w.borrow_mut().agents[agent]
        .mem
        .remove(&cred)
        .unwrap_or_default();
    let r = w.borrow().rules;
    trace!(
        "{}ms agent {agent} starts {op:?} on cred {cred}",
        w.borrow().now
    );
    let code = format!("code-{}", w.borrow_mut().rng.next() % 1_000_000_007);
    {
        let mut wb = w.borrow_mut();
        wb.agents[agent].op_started = wb.stats.steps;
    }
    let mut io = SimIo {
        w: Rc::clone(w),
        agent,
        cred,
        code,
        last_read: None,
        old: None,
    };
    let task: Task = match op {
        Op::Login => {
            w.borrow_mut().stats.logins += 1;
            Box::pin(async move {
                let d = secrets::login(&mut io, &mut mem, &r, None, None).await;
                (mem, Done::Login(d))
            })
        }
        Op::Rotate { replace } => {
            let mut wb = w.borrow_mut();
            wb.stats.rotations += 1;
            wb.stats.replaces += u64::from(replace);
            drop(wb);
            Box::pin(async move {
                let d = secrets::rotate_secret(&mut io, &mut mem, &r, replace).await;
                (mem, Done::Rotate(d))
            })
        }
        Op::Register => {
            w.borrow_mut().stats.registers += 1;
            Box::pin(async move {
                let landing = register(&mut io, &mut mem, &r).await;
                (mem, Done::Register(landing))
            })
        }
        Op::Land => Box::pin(async move {
            // spawn_lander's body (src/broker/refresh/land.rs).
            let kind = io.w.borrow().creds[io.cred].0;
            let waiting_for = mem
                .unlanded
                .as_ref()
                .and_then(|u| secret_of(kind, &u.record));
            if mem.unlanded.as_ref().is_some_and(|u| !u.journaled) {
                let entry = mem.entry(io.wall());
                if io.note(&entry).await.is_ok() {
                    if let Some(u) = mem.unlanded.as_mut() {
                        u.journaled = true;
                    }
                }
            }
            let landing = rotation::land(&mut io, &mut mem, &r).await;
            let journaled = mem.unlanded.as_ref().is_none_or(|u| u.journaled);
            (mem, Done::Land(landing, journaled, waiting_for))
        }),
    };
    w.borrow_mut().agents[agent].running = Some(Running { op, cred, task });
}

/// `register-app` (src/broker/register.rs): Snyk registers the app and
/// answers its client secret; the secret goes through `persist` at once.
async fn register(io: &mut SimIo, mem: &mut Memory, r: &Rules) -> Option<Landing> {
    step().await;
    let (agent, cred) = (io.agent, io.cred);
    let name = {
        let mut w = io.world();
        if !w.snyk_processes() {
            w.stats.faults += 1;
            return None;
        }
        w.issue(cred, "app", Some(agent))
    };
    step().await;
    if !io.world().deliver(agent, &name) {
        return None;
    }
    let record = Record {
        kind: Some(Kind::OauthApp),
        client_secret: Some(Secret::new(name)),
        // (Informational: register.rs writes the wall-clock time.)
        updated_at: None,
        generation: 1,
        ..Default::default()
    };
    let base = Base {
        fp: None,
        generation: 0,
        login: false,
        via: Vec::new(),
    };
    Some(rotation::persist(io, mem, r, record, base).await)
}

fn poll_agent(w: &W, agent: usize) {
    let Some(mut running) = w.borrow_mut().agents[agent].running.take() else {
        return;
    };
    {
        let mut wb = w.borrow_mut();
        wb.agents[agent].last_polled = wb.now;
    }
    let mut cx = Context::from_waker(Waker::noop());
    match running.task.as_mut().poll(&mut cx) {
        Poll::Pending => {
            let mut wb = w.borrow_mut();
            // A kill during the poll dropped the operation.
            if wb.agents[agent].alive {
                wb.agents[agent].running = Some(running);
            }
        }
        Poll::Ready((mem, done)) => finish(w, agent, running.op, running.cred, mem, done),
    }
}

/// An operation ended: what the agent does with its outcome (publish, a
/// lander), and I2 at every access token handed out.
fn finish(w: &W, agent: usize, op: Op, cred: usize, mem: Memory, done: Done) {
    let mut wb = w.borrow_mut();
    trace!(
        "{}ms agent {agent} finished {op:?} on cred {cred}: {done:?}",
        wb.now
    );
    // Secrets this operation held and did not keep stay only if its memory
    // keeps them (`Memory::unlanded`: a lander's).
    let kind = wb.creds[cred].0;
    let kept = mem
        .unlanded
        .as_ref()
        .and_then(|u| secret_of(kind, &u.record));
    for (name, s) in wb.secs.iter_mut() {
        if s.holder == Some(agent) && s.cred == cred && kept.as_deref() != Some(name.as_str()) {
            s.holder = None;
        }
    }
    let unlanded = mem.unlanded.is_some();
    let held_for = mem
        .unlanded
        .as_ref()
        .and_then(|u| secret_of(kind, &u.record));
    wb.agents[agent].mem.insert(cred, mem);
    let mut hand_out = None;
    match done {
        Done::Login(Ok(issued)) => match issued.landing {
            Landing::Landed | Landing::Pending => hand_out = Some(issued.access_token),
            _ => {
                wb.agents[agent]
                    .held
                    .insert(cred, (issued.access_token, held_for));
            }
        },
        Done::Rotate(Ok(rotated)) => {
            if matches!(rotated.issued.landing, Landing::Landed | Landing::Pending) {
                hand_out = Some(rotated.issued.access_token);
            }
        }
        Done::Land(landing, journaled, waiting_for) => {
            if landing != Landing::Pending || journaled {
                if let Some((t, held_for)) = wb.agents[agent].held.remove(&cred) {
                    if landing != Landing::Discarded && held_for == waiting_for {
                        hand_out = Some(t);
                    }
                }
            }
            if landing != Landing::Pending {
                wb.agents[agent].landers.remove(&cred);
            }
        }
        _ => {}
    }
    if unlanded {
        wb.agents[agent].landers.insert(cred);
    }
    if let Some(t) = hand_out {
        wb.stats.handed_out += 1;
        if let Some(name) = wb.access.get(t.expose()).cloned() {
            // Durable when the operation ended, or before: a concurrent
            // login may have replaced it since (rule 4).
            let durable = wb.secs.get(&name).is_some_and(|s| s.was_durable);
            if !durable {
                wb.violation(format!(
                    "I2: agent {agent} handed out an access token while its secret {name} is not durable"
                ));
            }
        }
    }
}

/// Start-up after a kill (src/broker/revive.rs `replay`): every journal
/// entry recovered, each with a successor landed (a lander for one the
/// store does not take yet).
fn restart(w: &W, agent: usize) {
    let mut wb = w.borrow_mut();
    let now = wb.now;
    trace!("{now}ms agent {agent} restarts");
    let a = &mut wb.agents[agent];
    a.alive = true;
    let entries: Vec<(usize, Entry)> = a.journal.iter().map(|(c, e)| (*c, e.clone())).collect();
    for (cred, entry) in entries {
        let mem = Memory::recover(entry, Duration::from_millis(now));
        if mem.unlanded.is_some() {
            a.replay.push(cred);
        }
        a.mem.insert(cred, mem);
    }
}

fn fault_limit(w: &World) -> u64 {
    (w.rules.takeover - w.rules.send_window - w.rules.snyk_max).as_millis() as u64
}

fn inject(w: &W) {
    let mut wb = w.borrow_mut();
    let n = wb.agents.len() as u64;
    let agent = wb.rng.below(n) as usize;
    let now = wb.now;
    let limit = fault_limit(&wb);
    let span = 1 + wb.rng.below(limit / 6);
    wb.stats.faults += 1;
    match wb.rng.below(6) {
        // Kills of one agent and store outages never chain into an outage
        // longer than the bound (beyond it lies rule 5's residual risk: a
        // claimant that cannot land for the whole takeover period).
        0..=2
            if wb.agents[agent].alive
                && wb.agents[agent]
                    .last_kill
                    .is_none_or(|k| now > k + limit / 2) =>
        {
            wb.agents[agent].last_kill = Some(now);
            wb.kill(agent)
        }
        3 if now >= wb.store_quiet_until => {
            wb.store_down_until = now + span;
            wb.store_quiet_until = now + span + limit;
        }
        4 => wb.agents[agent].journal_full_until = now + span.min(20_000),
        _ => {}
    }
}

fn world(seed: u64, cfg: Config) -> W {
    let rng = Rng(seed);
    let agents = (0..cfg.agents)
        .map(|i| Agent {
            name: format!("host-{i}"),
            journal_dir: format!("/var/lib/snykey/host-{i}/journal"),
            journal: BTreeMap::new(),
            mem: HashMap::new(),
            running: None,
            alive: true,
            dead_since: 0,
            landers: HashSet::new(),
            replay: Vec::new(),
            held: HashMap::new(),
            journal_full_until: 0,
            op_started: 0,
            last_polled: 0,
            last_kill: None,
        })
        .collect();
    let mut world = World {
        rng,
        now: 0,
        secs: HashMap::new(),
        next_seq: 0,
        access: HashMap::new(),
        codes_used: HashSet::new(),
        creds: Vec::new(),
        agents,
        violations: Vec::new(),
        stats: Stats::default(),
        faults: true,
        store_down_until: 0,
        store_quiet_until: 0,
        rules: rules(&cfg),
    };
    // An OAuth app logged in once, and a client-secret service account.
    let rt = world.issue(APP, "rt", None);
    world.creds.push((
        Kind::OauthApp,
        vec![Record {
            kind: Some(Kind::OauthApp),
            refresh_token: Some(Secret::new(rt.clone())),
            client_secret: Some(Secret::new("app-secret")),
            generation: 1,
            ..Default::default()
        }],
    ));
    let cs = world.issue(SA, "cs", None);
    world.creds.push((
        Kind::ClientSecret,
        vec![Record {
            kind: Some(Kind::ClientSecret),
            client_secret: Some(Secret::new(cs.clone())),
            generation: 1,
            ..Default::default()
        }],
    ));
    for n in [rt, cs] {
        if let Some(s) = world.secs.get_mut(&n) {
            s.stored_step = Some(0);
            s.was_durable = true;
        }
    }
    let w: W = Rc::new(RefCell::new(world));
    assert_one_agent_per_journal(&w.borrow());
    w
}

/// The real journal refuses a second agent on its directory
/// (`a_second_agent_on_one_journal_directory_is_refused`): the model never
/// runs two agents on one.
fn assert_one_agent_per_journal(w: &World) {
    let dirs: HashSet<&str> = w.agents.iter().map(|a| a.journal_dir.as_str()).collect();
    assert_eq!(
        dirs.len(),
        w.agents.len(),
        "two simulated agents share a journal directory"
    );
}

fn one_step(w: &W, faults: bool) {
    // Killed agents come back within the bound (systemd restarts them).
    let overdue: Vec<usize> = {
        let wb = w.borrow();
        let bound = fault_limit(&wb) / 3;
        (0..wb.agents.len())
            .filter(|&i| !wb.agents[i].alive && wb.now > wb.agents[i].dead_since + bound)
            .collect()
    };
    for i in overdue {
        restart(w, i);
    }
    let starved = {
        let wb = w.borrow();
        let bound = fault_limit(&wb) / 6;
        (0..wb.agents.len())
            .filter(|&i| {
                let a = &wb.agents[i];
                a.alive && a.running.is_some() && wb.now > a.last_polled + bound
            })
            .min_by_key(|&i| wb.agents[i].last_polled)
    };
    if let Some(i) = starved {
        poll_agent(w, i);
        return;
    }
    let choice = w.borrow_mut().rng.below(100);
    let n = w.borrow().agents.len() as u64;
    let agent = w.borrow_mut().rng.below(n) as usize;
    let (alive, busy) = {
        let wb = w.borrow();
        (wb.agents[agent].alive, wb.agents[agent].running.is_some())
    };
    if choice < 15 {
        let mut wb = w.borrow_mut();
        let by = if wb.rng.chance(0.05) {
            wb.rng.below(20_000)
        } else {
            wb.rng.below(2_000)
        };
        wb.now += by;
    } else if faults && choice < 22 {
        inject(w);
    } else if !alive {
        if w.borrow_mut().rng.chance(0.3) {
            restart(w, agent);
        }
    } else if busy {
        poll_agent(w, agent);
    } else if let Some(cred) = replay_next(w, agent) {
        start_op(w, agent, Op::Land, cred);
        poll_agent(w, agent);
    } else {
        let lander = {
            let mut wb = w.borrow_mut();
            let mut l: Vec<usize> = wb.agents[agent].landers.iter().copied().collect();
            l.sort_unstable();
            match l.first() {
                Some(&c) if wb.rng.chance(0.9) => Some(c),
                _ => None,
            }
        };
        let (op, cred) = match lander {
            Some(c) => (Op::Land, c),
            None => {
                let mut wb = w.borrow_mut();
                match wb.rng.below(100) {
                    0..=29 => (Op::Login, APP),
                    30..=59 => (Op::Rotate { replace: false }, SA),
                    60..=89 => (Op::Rotate { replace: true }, SA),
                    _ => {
                        wb.creds.push((Kind::OauthApp, Vec::new()));
                        (Op::Register, wb.creds.len() - 1)
                    }
                }
            }
        };
        start_op(w, agent, op, cred);
        poll_agent(w, agent);
    }
}

fn replay_next(w: &W, agent: usize) -> Option<usize> {
    w.borrow_mut().agents[agent].replay.pop()
}

/// Faults stop; killed agents restart, running operations and landers
/// finish; then a rotation and a login must go through.
fn calm(w: &W) {
    {
        let mut wb = w.borrow_mut();
        wb.faults = false;
        wb.store_down_until = 0;
        for a in wb.agents.iter_mut() {
            a.journal_full_until = 0;
        }
    }
    let n = w.borrow().agents.len();
    for i in 0..n {
        if !w.borrow().agents[i].alive {
            restart(w, i);
        }
    }
    for _ in 0..10_000 {
        let idle = w
            .borrow()
            .agents
            .iter()
            .all(|a| a.running.is_none() && a.landers.is_empty() && a.replay.is_empty());
        if idle {
            break;
        }
        for i in 0..n {
            let next = {
                let wb = w.borrow();
                let a = &wb.agents[i];
                let first = a.replay.last().or(a.landers.iter().min());
                match (&a.running, first) {
                    (Some(_), _) => None,
                    (None, Some(&c)) => Some(c),
                    (None, None) => None,
                }
            };
            if let Some(c) = next {
                w.borrow_mut().agents[i].replay.retain(|&r| r != c);
                start_op(w, i, Op::Land, c);
            }
            poll_agent(w, i);
            w.borrow_mut().check();
        }
        w.borrow_mut().now += 100;
    }
    // Liveness: within the takeover period (a claim of a killed agent is
    // taken over) a rotation of the service account goes through.
    let deadline = w.borrow().now + 3 * w.borrow().rules.takeover.as_millis() as u64;
    let mut rotated = false;
    'outer: while w.borrow().now < deadline {
        for i in 0..n {
            start_op(w, i, Op::Rotate { replace: false }, SA);
            let mut ok = false;
            for _ in 0..1000 {
                if w.borrow().agents[i].running.is_none() {
                    break;
                }
                poll_agent(w, i);
                w.borrow_mut().check();
            }
            if let Some(m) = w.borrow().agents[i].mem.get(&SA) {
                ok = m.unlanded.is_none() && m.claim.is_none();
            }
            let stored = w.borrow().stored_secret(SA);
            let valid = stored
                .as_ref()
                .and_then(|s| w.borrow().secs.get(s).map(|s| s.valid))
                .unwrap_or(false);
            if ok
                && valid
                && w.borrow()
                    .current(SA)
                    .is_some_and(|v| v.record.claim.is_none())
            {
                rotated = true;
                break 'outer;
            }
        }
        w.borrow_mut().now += 5_000;
    }
    if !rotated {
        w.borrow_mut().violation(
            "liveness: after the faults stopped, no rotation left a valid secret stored without a claim".into(),
        );
    }
}

fn run(seed: u64, cfg: Config) -> (Stats, Vec<String>) {
    let w = world(seed, cfg);
    let mut iterations = 0u64;
    while w.borrow().stats.steps < cfg.steps && iterations < cfg.steps * 20 {
        iterations += 1;
        one_step(&w, true);
        w.borrow_mut().check();
    }
    calm(&w);
    let wb = w.borrow();
    (wb.stats, wb.violations.clone())
}

fn config_for(seed: u64) -> Config {
    let mut r = Rng(seed ^ 0x5ec2e75);
    Config {
        agents: 1 + r.below(3) as usize,
        steps: 300,
        sabotage: Default::default(),
    }
}

/// Seeds `cargo test` runs (the teeth tests search the same ones).
const SEEDS: u64 = 3_000;

#[test]
fn single_copy_secrets_survive_every_fault() {
    let (base, n) = seeds(SEEDS);
    let mut t = Stats::default();
    for seed in base..base + n {
        let (s, violations) = run(seed, config_for(seed));
        if !violations.is_empty() {
            panic!(
                "seed {seed} broke a single-copy secret (replay with SNYKEY_SIM_SEED={seed} SNYKEY_SIM_TRACE=1 cargo test --test sim_secrets):\n  {}",
                violations.join("\n  ")
            );
        }
        t.steps += s.steps;
        t.faults += s.faults;
        t.kills += s.kills;
        t.logins += s.logins;
        t.rotations += s.rotations;
        t.replaces += s.replaces;
        t.registers += s.registers;
        t.issued += s.issued;
        t.handed_out += s.handed_out;
        t.excused += s.excused;
        t.lost += s.lost;
        t.replays += s.replays;
        t.refusals += s.refusals;
    }
    println!(
        "sim_secrets: {n} seeds, {} steps, faults tried {} (kills {}), logins {}, rotations {} (replace {}; second secrets refused {}), register-app {}, secrets issued {}, access tokens handed out {}, answers lost exactly {}, replays {} (must be 0), secrets lost {} (must be 0)",
        t.steps,
        t.faults,
        t.kills,
        t.logins,
        t.rotations,
        t.replaces,
        t.refusals,
        t.registers,
        t.issued,
        t.handed_out,
        t.excused,
        t.replays,
        t.lost
    );
    assert_eq!((t.replays, t.lost), (0, 0));
    assert!(
        t.issued > n * 5,
        "the simulation must actually issue secrets"
    );
    assert!(
        t.handed_out > n,
        "the simulation must actually hand out tokens"
    );
}

/// The simulation has teeth: with one ordering broken, it finds a violation
/// within the seeds `cargo test` runs.
fn finds_violation_with(sabotage: rotation::Sabotage, what: &str) {
    for seed in 1..=SEEDS {
        let mut cfg = config_for(seed);
        cfg.sabotage = sabotage;
        let (_, v) = run(seed, cfg);
        if !v.is_empty() {
            println!("with {what}: seed {seed} finds {}", v[0]);
            return;
        }
    }
    panic!("with {what}, {SEEDS} seeds found no violation: the simulation has no teeth");
}

#[test]
fn journaling_a_replaced_secret_after_its_test_grant_is_caught() {
    finds_violation_with(
        rotation::Sabotage {
            secret_durable_after_proof: true,
            ..Default::default()
        },
        "the new secret of a replace made durable after the test grant",
    );
}

#[test]
fn deleting_the_old_secret_before_the_new_one_is_durable_is_caught() {
    finds_violation_with(
        rotation::Sabotage {
            retire_before_durable: true,
            ..Default::default()
        },
        "the old secret deleted before the new one is durable",
    );
}

#[test]
fn a_login_handing_out_its_token_before_it_is_durable_is_caught() {
    finds_violation_with(
        rotation::Sabotage {
            login_hands_out_first: true,
            ..Default::default()
        },
        "a login's access token handed out before its refresh token is durable",
    );
}

#[test]
fn a_rollback_that_reads_the_store_before_journaling_the_old_secret_is_caught() {
    finds_violation_with(
        rotation::Sabotage {
            rollback_store_first: true,
            ..Default::default()
        },
        "a refused second secret's rollback reading the store before journaling the old secret",
    );
}

/// docs/protocol.md, issue 22 item 7: the real journal takes an exclusive
/// lock on its directory; a second agent on it is refused, naming the
/// setting to change. The simulation's agents each have their own.
#[test]
fn a_second_agent_on_one_journal_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(1, config_for(1));
    let mut open = Vec::new();
    for a in &w.borrow().agents {
        let jdir = dir.path().join(a.journal_dir.trim_start_matches('/'));
        let first = Journal::open(&jdir).expect("the first agent on a journal directory");
        let second = Journal::open(&jdir).expect_err("a second agent on it must be refused");
        assert!(second.contains("store.journal_dir"), "{second}");
        open.push(first);
    }
    // Every simulated world gives each agent a journal of its own.
    for seed in 1..=50 {
        let w = world(seed, config_for(seed));
        assert_one_agent_per_journal(&w.borrow());
    }
    drop(open);
}
