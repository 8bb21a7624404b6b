//! Deterministic simulation of the rotation rule (`docs/protocol.md`), after
//! FoundationDB's simulation testing and TigerBeetle's VOPR.
//!
//! Several agents run the real protocol code (`snykey::broker::rotation`) in
//! one process on one thread, against in-process models of Snyk (token
//! states, every send recorded, a selectable reuse policy: a spent token is
//! refused, or it revokes its whole family), the secret store (KV v2
//! versions, check-and-set, `cas_required`, soft delete, destroy) and each
//! agent's journal (fsync'd or buffered; kept, emptied, or its unsynced tail
//! lost on restart). Every call the protocol makes to the world is a step;
//! between any two steps a seeded random scheduler picks which agent moves
//! next, advances time, or injects a fault. After **every** step the
//! invariants are checked.
//!
//! A failing seed prints itself; `SNYKEY_SIM_SEED=N cargo test --test sim`
//! replays it (`SNYKEY_SIM_TRACE=1` prints every step), `SNYKEY_SIM_SEEDS=N`
//! runs more seeds, `scripts/sim N` runs N in release mode and prints the
//! totals.
//!
//! **Modelled faults and operations.** Requests lost before Snyk or the store
//! processed them, and answers lost after they did (a timeout or a page
//! without an OAuth body, either way); Snyk 5xx with and without an OAuth
//! body and 429; pages without an OAuth body (302, 401, 403, 407, 408, 429,
//! 502, 503, 504; an HTML body or none at all) before and after Snyk
//! processed the request, classified by the agent's own
//! `snyk::classify_error`; lost answers to resends of a spent token; one-sided
//! partitions agent↔store and agent↔Snyk; the store sealed or read-only for
//! one agent or all; SIGKILL at any step (journal kept, emptied, or its
//! unsynced tail lost); process pauses past the send window; clock steps and
//! skew (wall clock only: claims are timed on monotonic clocks); duplicate
//! agent ids; the Redis lock lost while held (it is only an optimisation, so
//! agents here go on without it); concurrent logins; `put` with a fresh
//! token, a stale one (an older, spent token of the stored family), one given
//! to a put before, or the stored one, on several agents at once and racing
//! other agents' live claims; `delete` during a claim; a foreign blind write
//! (refused by `cas_required`) and a foreign soft delete (`bao kv delete`);
//! two agents both configured exclusive; and, for issue 26, each agent's
//! access-token snapshot (revived at restart only through the real
//! `cache::snapshot::revives`) and publishing (the real
//! `broker::publish::decide`, its queue lost with the process).
//!
//! **Excuses are exact.** A loss of the newest refresh token is excused only
//! for the token a fault actually lost: the answer lost in transit that
//! carried it; a kill that came between Snyk's answer and the agent's journal
//! write of it (or while the journal refused it, or held it unsynced) — not a
//! kill after the agent talked to the store or Snyk while still holding it
//! unjournaled, which is the protocol's own loss (rule 4: the journal first);
//! the emptied disk that held it. Never a whole token family. Counted apart,
//! and documented as residual risks: replays between two agents both
//! misconfigured as exclusive, rule 5's claimant cut off past the takeover
//! period, a put of a spent token the record does not show as spent (and what
//! Snyk's revocation of that family costs), sends of an old put token after
//! another tool erased the record's history, and writes over a version
//! another tool deleted that go below the highest generation.
//!
//! Faults last less than the takeover period minus the send window and
//! Snyk's timeout: beyond that lies the documented residual risk of
//! `docs/protocol.md` rule 5 (`residual_risk_is_a_login_not_a_loss` below).

mod sim_support;
use sim_support::{Rng, seeds, step, tracing_on};
use snykey::broker::journal::{Base, Entry};
use snykey::broker::publish::decide::{Offer, Shelved, Verdict, decide as publish_decide};
use snykey::broker::rotation::{self, Claims, Io, Landing, Memory, Outcome, Rules};
use snykey::cache::snapshot::revives;
use snykey::credential::Withdrawn;
use snykey::secret::Secret;
use snykey::snyk::{GrantError, TokenGrant};
use snykey::store::{Record, StoreError, Versioned};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

// ---------------------------------------------------------------- Snyk

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// A spent token is refused.
    Reject,
    /// A spent token revokes its whole family (its successors too).
    RevokeFamily,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokState {
    Live,
    Consumed,
    Revoked,
}

#[derive(Debug, Clone)]
struct Tok {
    family: u64,
    state: TokState,
    successor: Option<String>,
    /// Issued by a login or given to `put` (a new family), not by a refresh.
    root: bool,
    /// An answer that consumed it was lost in transit (rule 6 permits one retry).
    answer_lost: bool,
    retried: bool,
    /// The agent whose running operation holds its answer, not yet durable.
    held_by: Option<usize>,
    /// Its loss is explained by an injected fault that lost exactly this
    /// token (its answer lost in transit, a kill before its journal fsync,
    /// the disk that held it emptied): never set for a whole family.
    lost_explained: bool,
    /// Its holder offered it to the journal (the write may have failed, or
    /// sit in a buffered journal's unsynced tail).
    note_tried: bool,
    /// Its holder talked to the store or Snyk while it was held and not yet
    /// offered to the journal: a kill from then on is the protocol's loss,
    /// not the residual window between Snyk's answer and the fsync.
    exposed: bool,
    /// Issued, and the answer carrying it is on its way.
    in_transit: bool,
    /// Stored by a put (over a record that did not show it as rotated:
    /// neither its `prev_fp` nor in `put_fps`) while already spent at Snyk,
    /// or while an old token (not a fresh one) that another agent may be
    /// sending under a claim a login erased: nothing can tell the agent, so
    /// its send is documented (Snyk refuses it; the put puts back what it
    /// replaced).
    spent_put: bool,
    /// Given to a put as an old token (stale, put before, or the stored one).
    given_old: bool,
    /// Issued by a login's code exchange.
    login_root: bool,
    /// Issued for a send under a journal-only claim of an agent configured
    /// exclusive while other agents share the store (a misconfiguration,
    /// documented: nothing arbitrates between them).
    misconfigured: bool,
    /// Issue order.
    seq: u64,
    /// It reached the store or an fsync'd journal at some point.
    durable: bool,
    /// The token sent to obtain it.
    pred: Option<String>,
    /// Sends whose outcome the sender never learned (lost answers, kills mid-send).
    doubtful: u32,
    /// When Snyk consumed it (ms).
    consumed_at: u64,
}

struct Snyk {
    tokens: HashMap<String, Tok>,
    access: HashMap<String, String>,
    next: u64,
    policy: Policy,
    /// Sends whose answer has not been delivered yet: token → senders.
    outstanding: HashMap<String, Vec<usize>>,
}

impl Snyk {
    fn issue(&mut self, family: u64, root: bool) -> String {
        self.next += 1;
        let t = format!("rt-{}-{}", family, self.next);
        self.tokens.insert(
            t.clone(),
            Tok {
                family,
                state: TokState::Live,
                successor: None,
                root,
                answer_lost: false,
                retried: false,
                held_by: None,
                lost_explained: false,
                note_tried: false,
                exposed: false,
                in_transit: false,
                spent_put: false,
                given_old: false,
                login_root: false,
                misconfigured: false,
                seq: self.next,
                durable: false,
                pred: None,
                doubtful: 0,
                consumed_at: 0,
            },
        );
        t
    }
}

// ---------------------------------------------------------------- the store

struct Store {
    /// Index = version - 1; `None` = destroyed.
    versions: Vec<Option<Record>>,
    /// Every version holds `cas_required = true` (snykey sets it).
    soft_deleted: bool,
}

impl Store {
    fn current(&self) -> Option<Versioned> {
        let v = self.versions.len() as u64;
        if v == 0 {
            return None;
        }
        let (record, hidden) = match (&self.versions[v as usize - 1], self.soft_deleted) {
            (Some(r), false) => (r.clone(), false),
            _ => (
                Record {
                    deleted: true,
                    ..Default::default()
                },
                true,
            ),
        };
        Some(Versioned {
            record,
            version: v,
            hidden,
        })
    }
}

// ---------------------------------------------------------------- agents

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Refresh,
    Put,
    Login,
    Delete,
    Land,
}

type Task = Pin<Box<dyn Future<Output = (Memory, Outcome2)>>>;

#[derive(Debug)]
enum Outcome2 {
    Refresh(Outcome),
    // Read through `Debug` in traces.
    #[allow(dead_code)]
    Landing(Landing),
    Deleted(Result<(), StoreError>),
    /// A login's landing and its access token.
    #[allow(dead_code)]
    Login(Landing, String),
}

struct Agent {
    name: String,
    journal: Option<Entry>,
    /// Written but not yet fsync'd (buffered journal only).
    unsynced: Option<Option<Entry>>,
    buffered: bool,
    mem: Option<Memory>,
    task: Option<(Op, u64, Task)>,
    alive: bool,
    paused_until: u64,
    store_cut_until: u64,
    snyk_cut_until: u64,
    skew_ms: i64,
    /// When it was killed (it restarts within a bound).
    dead_since: u64,
    /// When its running operation last moved (a process is never starved
    /// by the scheduler longer than a pause fault would stop it).
    last_polled: u64,
    /// The last successful claim write: (token digest, nonce), consumed by the next send.
    last_claim: Option<(String, String)>,
    exclusive: bool,
    /// The access token its memory cache serves (issue 26).
    cache: Option<Cached>,
    /// Its access-token snapshot file (`cache::snapshot`): written now and
    /// then and when a delete drops the token; it survives a kill.
    snapshot: Option<Cached>,
    /// Publishing offers not written yet (the publisher's queue, in memory),
    /// each with the generation of the delete, put or login it publishes.
    to_publish: Vec<(Offer, Option<u64>)>,
    /// The generation of this agent's last put write of its given token.
    put_gen: u64,
}

/// An access token as the memory cache and its snapshot keep it: the
/// generation is the one it was minted at (the agent's `mem.generation`).
#[derive(Debug, Clone)]
struct Cached {
    access: String,
    expires_at: SystemTime,
    generation: u64,
}

// ---------------------------------------------------------------- the world

macro_rules! trace {
    ($($t:tt)*) => {
        if tracing_on() {
            println!($($t)*);
        }
    };
}

#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    steps: u64,
    faults: u64,
    sends: u64,
    refreshes: u64,
    documented_retries: u64,
    replays: u64,
    lost: u64,
    logins: u64,
    needs_login: u64,
    misconfigured_replays: u64,
    after_foreign_delete: u64,
    residual_risk: u64,
    spent_put_sends: u64,
    generation_hidden: u64,
    puts_stale: u64,
    puts_again: u64,
    puts_over_claims: u64,
}

struct World {
    rng: Rng,
    now: u64,
    snyk: Snyk,
    store: Store,
    agents: Vec<Agent>,
    violations: Vec<String>,
    stats: Stats,
    faults: bool,
    store_sealed_until: u64,
    store_read_only_until: u64,
    snyk_down_until: u64,
    /// Step at which the last tombstone was written.
    deleted_at: Option<u64>,
    rules: Rules,
    family: u64,
    /// No new store outage or pause before this time.
    store_quiet_until: u64,
    /// Which agent wrote each claim (by nonce).
    claimants: HashMap<String, usize>,
    /// A foreign soft delete hid the record: its put history (`put_fps`)
    /// may be gone with it, so an old put token can look new again.
    history_erased: bool,
    /// Every token given to a put, in order (a put may be retried, by CI or
    /// by hand, with any of them).
    put_given: Vec<String>,
    /// Teeth: 3xx/4xx pages without an OAuth body taken as "not consumed".
    sabotage_pages: bool,
    /// Teeth: a snapshot's token revived whatever generation it was minted at.
    sabotage_revive: bool,
    /// Teeth: a restart serves without replaying its journal (rule 9).
    sabotage_no_replay: bool,
    /// Teeth: a running operation dropped as a cancelled caller's (rule 1).
    sabotage_cancel: bool,
    /// The published record of the credential (`broker::publish`).
    published: Shelved,
    /// The highest generation of a delete, put or login whose publishing
    /// step ran (see `check_tokens`).
    published_reset: u64,
    /// The highest generation of a delete, put or login durable in the store.
    stored_reset: u64,
    /// The highest generation ever written (rule 10: never goes down).
    max_generation: u64,
    /// A write over a hidden version went below `max_generation`
    /// (documented): generation numbers may repeat, so the snapshot and
    /// publishing checks, which compare them, stop for this seed.
    generations_reused: bool,
}

type W = Rc<RefCell<World>>;

impl World {
    fn violation(&mut self, what: String) {
        let msg = format!("step {} at {}ms: {what}", self.stats.steps, self.now);
        if self.violations.len() < 5 {
            self.violations.push(msg);
        }
    }

    /// Is `token` on the chain that starts at `root`?
    fn chain_contains(&self, root: &str, token: &str) -> bool {
        let mut t = root.to_string();
        loop {
            if t == token {
                return true;
            }
            match self.snyk.tokens.get(&t).and_then(|x| x.successor.clone()) {
                Some(n) => t = n,
                None => return false,
            }
        }
    }

    /// In an fsync'd journal: as a successor to land, or as the record a
    /// put replaced (rule 8: put back if Snyk refuses the put's token).
    fn durable_in_journal(&self, token: &str) -> bool {
        let holds = |r: Option<&Record>| {
            r.and_then(|r| r.refresh_token.as_ref())
                .is_some_and(|t| t.expose() == token)
        };
        self.agents.iter().any(|a| {
            a.journal.as_ref().is_some_and(|e| {
                holds(e.record.as_ref()) || holds(e.replaced.as_ref().map(|r| &r.record))
            })
        })
    }

    fn in_store(&self, token: &str) -> bool {
        self.store.current().is_some_and(|v| {
            !v.record.deleted
                && v.record
                    .refresh_token
                    .as_ref()
                    .is_some_and(|t| t.expose() == token)
        })
    }

    /// After every step.
    fn check(&mut self) {
        let Some(cur) = self.store.current() else {
            return;
        };
        if cur.record.deleted {
            return;
        }
        let Some(c) = cur
            .record
            .refresh_token
            .as_ref()
            .map(|t| t.expose().to_string())
        else {
            return;
        };
        if let Some(why) = cur.record.needs_login() {
            let dead = self
                .snyk
                .tokens
                .get(&c)
                .is_some_and(|t| t.state != TokState::Live || t.doubtful >= 2);
            if !dead {
                self.violation(format!(
                    "needs_login stored ({why}) while the stored token is live at Snyk"
                ));
            }
            return;
        }
        // A spent token a put stored (documented, `Tok::spent_put`): its old
        // chain is not the credential's any more; what the put replaced is
        // journaled and judged once the put puts it back.
        if self
            .snyk
            .tokens
            .get(&c)
            .is_some_and(|t| t.spent_put && t.state != TokState::Live)
        {
            return;
        }
        // Follow the chain from the stored token to its newest token.
        let mut last = c.clone();
        let mut guard = 0;
        while let Some(next) = self
            .snyk
            .tokens
            .get(&last)
            .and_then(|t| t.successor.clone())
        {
            last = next;
            guard += 1;
            if guard > 10_000 {
                break;
            }
        }
        let Some(tok) = self.snyk.tokens.get(&last).cloned() else {
            return;
        };
        let fine = match tok.state {
            TokState::Live => {
                self.in_store(&last)
                    || self.durable_in_journal(&last)
                    || tok.held_by.is_some()
                    || tok.in_transit
                    || tok.lost_explained
            }
            _ => tok.lost_explained,
        };
        if fine {
            return;
        }
        if tok.misconfigured {
            // Documented: an exclusive agent's journal-only send on a shared
            // store (a misconfiguration); what it lost is not the protocol's.
            return;
        }
        // Excuses are exact: a fault explains a token's loss only if it lost
        // that very token (`lost_explained`, above), never because another
        // token of its family was lost. What remains: a later login (or put)
        // supersedes the chain (rule 4: a human reset replaces it, in the
        // journal too), whether its own token is durable, held, in flight, or
        // was lost by a fault that explains exactly that token; and after a replay
        // between two agents both misconfigured as exclusive (documented), a
        // revoked family is that misconfiguration's cost.
        let superseded = self.stats.misconfigured_replays > 0
            || self.snyk.tokens.iter().any(|(name, t)| {
                let mut root = name.clone();
                while let Some(p) = self.snyk.tokens.get(&root).and_then(|x| x.pred.clone()) {
                    root = p;
                }
                let root_seq = self
                    .snyk
                    .tokens
                    .get(&root)
                    .filter(|r| r.root)
                    .map(|r| r.seq);
                root_seq.is_some_and(|s| s > tok.seq)
                    && ((t.state == TokState::Live
                        && (self.durable_in_journal(name) || t.held_by.is_some() || t.in_transit))
                        || t.lost_explained)
            });
        if superseded {
            return;
        }
        let put_of_old_token = self
            .store
            .current()
            .and_then(|v| v.record.refresh_token)
            .and_then(|t| {
                self.snyk
                    .tokens
                    .get(t.expose())
                    .map(|x| x.root && x.state != TokState::Live)
            })
            .unwrap_or(false);
        if put_of_old_token && self.history_erased {
            // Same documented case: until the refused put restores the record.
            return;
        }
        match tok.state {
            TokState::Live => {
                self.violation(format!("the newest refresh token {last} is neither stored nor journaled nor in flight: lost"));
                self.stats.lost += 1;
            }
            _ => self.violation(format!("the chain from the stored token ends in a dead token {last} with no fault to explain it")),
        }
    }

    /// `agent` calls the store or Snyk: a token it holds that it has not
    /// offered to its journal yet is exposed from now on (see `Tok::exposed`).
    fn io_by(&mut self, agent: usize) {
        for t in self.snyk.tokens.values_mut() {
            if t.held_by == Some(agent) && !t.note_tried {
                t.exposed = true;
            }
        }
    }

    fn wall(&self, agent: usize) -> SystemTime {
        let ms = (self.now as i64 + self.agents[agent].skew_ms).max(0) as u64;
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(ms)
    }

    fn store_reachable(&mut self, agent: usize) -> Result<(), StoreError> {
        if self.now < self.store_sealed_until {
            return Err(StoreError::Sealed);
        }
        if self.now < self.agents[agent].store_cut_until {
            return Err(StoreError::Unavailable("partitioned".into()));
        }
        if self.faults && self.rng.chance(0.02) {
            self.stats.faults += 1;
            return Err(StoreError::Unavailable("request lost".into()));
        }
        Ok(())
    }

    fn store_write(
        &mut self,
        agent: usize,
        op: (Op, u64),
        given: Option<&str>,
        record: &Record,
        cas: u64,
    ) -> Result<u64, StoreError> {
        self.store_reachable(agent)?;
        if self.now < self.store_read_only_until {
            return Err(StoreError::Denied("read-only".into()));
        }
        let current = self.store.versions.len() as u64;
        if cas != current {
            return Err(StoreError::Conflict { expected: cas });
        }
        // Invariants at every landing.
        let old = self.store.current();
        if let Some(old) = &old {
            let old_t = old
                .record
                .refresh_token
                .as_ref()
                .map(|t| t.expose().to_string());
            let new_t = record
                .refresh_token
                .as_ref()
                .map(|t| t.expose().to_string());
            if old.hidden
                && record.generation <= self.max_generation
                && self.agents.iter().any(|a| a.exclusive)
            {
                // Documented: another tool deleted the current version (`bao
                // kv delete`), hiding its generation; the write goes above the
                // version counter, which a generation outruns only after an
                // exclusive agent landed a journal chain (several rotations,
                // one write). Generations may repeat from here on.
                self.stats.generation_hidden += 1;
                self.generations_reused = true;
                self.max_generation = record.generation;
            } else if record.generation < old.record.generation.max(self.max_generation) {
                self.violation(format!(
                    "generation went down from {} to {}",
                    old.record.generation.max(self.max_generation),
                    record.generation
                ));
            }
            if old_t != new_t
                && !old.record.deleted
                && record.generation <= old.record.generation
                && !record.deleted
            {
                self.violation("a new refresh token landed without raising the generation".into());
            }
            // A put replaces the stored chain by design (rule 8: what it must
            // not replace is checked below), and a put Snyk refused puts back
            // the record it replaced (also from a later refresh, after a
            // restart); every other write is a landing.
            if let (Some(o), Some(n)) = (&old_t, &new_t) {
                if o != n && !old.record.deleted && op.0 != Op::Put && !self.put_given.contains(o) {
                    // A login's chain (journaled while the store was down)
                    // lands like the login it started from.
                    let mut root = n.clone();
                    while let Some(p) = self.snyk.tokens.get(&root).and_then(|t| t.pred.clone()) {
                        root = p;
                    }
                    let tok = self.snyk.tokens.get(&root).cloned();
                    let ok = (tok.as_ref().is_some_and(|t| t.root)
                        && !self.chain_contains(&root, o))
                        || self
                            .snyk
                            .tokens
                            .get(o)
                            .and_then(|t| t.successor.as_ref())
                            .is_some_and(|s| {
                                // the successor, or further down the chain (exclusive journal chains)
                                let mut s = s.clone();
                                loop {
                                    if &s == n {
                                        break true;
                                    }
                                    match self.snyk.tokens.get(&s).and_then(|t| t.successor.clone())
                                    {
                                        Some(x) => s = x,
                                        None => break false,
                                    }
                                }
                            });
                    if !ok {
                        self.violation(format!(
                            "{n} landed over {o}, which is not its predecessor"
                        ));
                    }
                }
            }
            // Rule 8: a put's own write (the given token R, with its claim)
            // never replaces a record under a claim, nor one that shows R was
            // rotated already (`prev_fp`, `put_fps`).
            // (A put's own write has no `prev_fp`; a landing in the put's
            // step 0 of a successor that happens to be the given token has.)
            if op.0 == Op::Put
                && old_t != new_t
                && new_t.is_some()
                && new_t.as_deref() == given
                && record.prev_fp.is_none()
            {
                let r = record.refresh_token.as_ref().map(Secret::digest);
                let shown = r.as_ref().is_some_and(|r| {
                    old.record.prev_fp.as_ref() == Some(r) || old.record.put_fps.contains(r)
                });
                if shown {
                    self.violation(format!(
                        "agent {agent}'s put stored {new_t:?} again although the record shows it was rotated already (rule 8)"
                    ));
                } else if let Some(t) = new_t.as_ref().and_then(|t| self.snyk.tokens.get_mut(t)) {
                    if t.state != TokState::Live || t.given_old {
                        t.spent_put = true;
                    }
                }
                if let Some(c) = &old.record.claim {
                    let by = self.claimants.get(&c.nonce).copied();
                    self.violation(format!(
                        "agent {agent}'s put replaced a record under the claim of agent {by:?} (rule 8: a put waits for that landing)"
                    ));
                }
            }
            // A login's or put's token, or its chain journaled while the store was down.
            let root = record.refresh_token.as_ref().is_some_and(|t| {
                let mut r = t.expose().to_string();
                while let Some(p) = self.snyk.tokens.get(&r).and_then(|x| x.pred.clone()) {
                    r = p;
                }
                self.snyk.tokens.get(&r).is_some_and(|x| x.root)
                    && (t.expose() == r || self.agents[agent].exclusive)
            });
            // Only a put or a login (a new root token) may follow a delete.
            // Our tombstones, that is (a foreign soft delete keeps the version,
            // and an agent's claim may write over it, as on OpenBao).
            let tombstone = self
                .store
                .versions
                .last()
                .and_then(|v| v.as_ref())
                .is_some_and(|r| r.deleted);
            let put_own = op.0 == Op::Put
                && new_t.is_some()
                && new_t.as_deref() == given
                && record.prev_fp.is_none();
            if tombstone && !record.deleted && !root && !put_own {
                self.violation("a write brought a deleted credential back".into());
            }
        }
        // A claim taken over at its second attempt: the taker cannot know
        // whether that attempt reached Snyk, so `needs_login` without a third
        // send is rule 6's documented cost, even for a token still live.
        if let (Some(_), Some(old)) = (record.needs_login(), &self.store.current()) {
            let second = old.record.claim.as_ref().is_some_and(|c| {
                c.attempts >= 2 && old.record.refresh_token == record.refresh_token
            });
            if let Some(t) = record
                .refresh_token
                .as_ref()
                .and_then(|t| self.snyk.tokens.get_mut(t.expose()))
                .filter(|_| second)
            {
                t.doubtful = t.doubtful.max(2);
            }
        }
        if let Some(why) = record.needs_login() {
            let dead = record
                .refresh_token
                .as_ref()
                .and_then(|t| self.snyk.tokens.get(t.expose()))
                .is_some_and(|t| t.state != TokState::Live || t.doubtful >= 2);
            if !dead {
                self.violation(format!(
                    "needs_login written ({why}) for a token live at Snyk"
                ));
            }
            self.stats.needs_login += 1;
        }
        // Resets: a tombstone, a put's own write of its token, a login's landing.
        let new_token = record
            .refresh_token
            .as_ref()
            .map(|t| t.expose().to_string());
        let login_root = new_token
            .as_ref()
            .and_then(|t| self.snyk.tokens.get(t))
            .is_some_and(|t| t.login_root);
        let old_token = self
            .store
            .current()
            .and_then(|v| v.record.refresh_token)
            .map(|t| t.expose().to_string());
        let put_own = op.0 == Op::Put
            && new_token.is_some()
            && new_token.as_deref() == given
            && record.prev_fp.is_none();
        if record.deleted || put_own || (login_root && new_token != old_token) {
            self.stored_reset = self.stored_reset.max(record.generation);
        }
        if put_own {
            self.agents[agent].put_gen = record.generation;
        }
        self.max_generation = self.max_generation.max(record.generation);
        self.store.versions.push(Some(record.clone()));
        trace!(
            "{}ms agent {agent} {:?} wrote v{} (cas {cas}) token={:?} gen={} claim={:?} deleted={} state={:?}",
            self.now,
            op.0,
            self.store.versions.len(),
            record
                .refresh_token
                .as_ref()
                .map(|t| t.expose().to_string()),
            record.generation,
            record
                .claim
                .as_ref()
                .map(|c| (c.nonce[..6].to_string(), c.attempts)),
            record.deleted,
            record.needs_login()
        );
        self.store.soft_deleted = false;
        if record.deleted {
            self.deleted_at = Some(self.stats.steps);
        }
        if let Some(c) = &record.claim {
            self.agents[agent].last_claim = Some((c.fp.clone(), c.nonce.clone()));
            self.claimants.insert(c.nonce.clone(), agent);
        }
        // Released by landing: the token is durable in the store now.
        if let Some(t) = record.refresh_token.as_ref() {
            if let Some(tok) = self.snyk.tokens.get_mut(t.expose()) {
                tok.held_by = None;
                tok.durable = true;
            }
        }
        let v = self.store.versions.len() as u64;
        if self.faults && self.rng.chance(0.02) {
            self.stats.faults += 1;
            return Err(StoreError::Unavailable(
                "answer lost after the write".into(),
            ));
        }
        Ok(v)
    }

    fn send(&mut self, agent: usize, token: &str) -> Result<(TokenGrant, bool), GrantError> {
        self.stats.sends += 1;
        let unreachable = || GrantError::Unreachable {
            endpoint: "sim".into(),
            message: "cut".into(),
        };
        if self.now < self.agents[agent].snyk_cut_until || self.now < self.snyk_down_until {
            return Err(unreachable());
        }
        // Rule 7: an exclusive agent rotates its journal's chain without
        // the store while the store refuses writes.
        let chain = self.agents[agent].exclusive;
        let journal_only = chain
            && self.agents.len() > 1
            && self.agents[agent]
                .last_claim
                .as_ref()
                .is_none_or(|(fp, _)| *fp != Secret::new(token).digest());
        if self.rules.claims == Claims::Store && !self.rules.sabotage.no_claim_cas && !chain {
            let claimed = self.agents[agent].last_claim.take();
            let digest = Secret::new(token).digest();
            if claimed.as_ref().is_none_or(|(fp, _)| *fp != digest) {
                self.violation(format!(
                    "agent {agent} sent {token} without its own claim check-and-set just before"
                ));
            }
        }
        // Rule 3: the claim is in the journal, marked sent, before the send
        // (what the journal holds now, fsync'd or in a buffered journal's tail).
        {
            let a = &self.agents[agent];
            let entry = match &a.unsynced {
                Some(e) => e.as_ref(),
                None => a.journal.as_ref(),
            };
            let digest = Secret::new(token).digest();
            if !entry
                .and_then(|e| e.claim.as_ref())
                .is_some_and(|c| c.sent && c.fp == digest)
            {
                self.violation(format!(
                    "agent {agent} sent {token} before its journal noted the claim (rule 3)"
                ));
            }
        }
        if self
            .snyk
            .outstanding
            .get(token)
            .is_some_and(|v| !v.is_empty())
        {
            if self.agents.iter().filter(|a| a.exclusive).count() > 1 {
                // Agents misconfigured as exclusive on a shared store (documented).
                self.stats.misconfigured_replays += 1;
            } else if self.snyk.tokens.get(token).is_some_and(|t| t.spent_put) {
                // A put of a token already spent (documented, `Tok::spent_put`).
            } else {
                self.violation(format!("two sends of {token} in flight at once"));
            }
        }
        if self.faults && self.rng.chance(0.08) {
            self.stats.faults += 1;
            // Not processed: an OAuth error answer, a 429, a lost request, or
            // a page without an OAuth body from something in front of Snyk
            // (a proxy's 403/407/408, a WAF, a captive portal's redirect, a
            // bodyless 429), classified as the agent's HTTP client does.
            return Err(match self.rng.below(5) {
                // The request written, then lost before Snyk processed it:
                // an unknown outcome for the agent, the token still live.
                3 => {
                    if let Some(t) = self.snyk.tokens.get_mut(token) {
                        t.doubtful += 1;
                    }
                    GrantError::Unknown {
                        timed_out: true,
                        message: "timed out".into(),
                    }
                }
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
                    let bodyless = self.rng.chance(0.3);
                    let page = self.page(status, bodyless);
                    if !page.token_not_consumed() {
                        // The agent cannot tell it from a page that came
                        // after Snyk rotated: a send in doubt.
                        if let Some(t) = self.snyk.tokens.get_mut(token) {
                            t.doubtful += 1;
                        }
                    }
                    page
                }
                _ => unreachable(),
            });
        }
        let Some(tok) = self.snyk.tokens.get(token).cloned() else {
            self.violation(format!("unknown token {token} sent"));
            return Err(GrantError::Permanent {
                error: "invalid_grant".into(),
                description: None,
            });
        };
        if tok.state != TokState::Live {
            trace!(
                "{}ms agent {agent} sent {token}, which is {:?} (answer lost {}, retried {}, spent put {})",
                self.now, tok.state, tok.answer_lost, tok.retried, tok.spent_put
            );
            // A documented send of a spent token (a residual risk): the
            // tokens its refusal revokes are excused, those and no others.
            let mut excuse_revoked = false;
            let misconfigured = self.agents.iter().filter(|a| a.exclusive).count() > 1;
            if tok.spent_put {
                // A put of a spent token the record did not show as spent
                // (rotated more than one rotation ago, or put more than 16
                // puts ago): nothing tells the agent, so it is sent once.
                // Documented; Snyk refuses it and the put puts back what it
                // replaced (a family Snyk revokes for the reuse is its cost).
                self.stats.spent_put_sends += 1;
                excuse_revoked = true;
            } else if tok.state == TokState::Consumed
                && tok.answer_lost
                && !tok.retried
                && !misconfigured
                && self.now < tok.consumed_at + self.rules.snyk_max.as_millis() as u64
            {
                // Rule 6: the one retry waits until the lost request cannot
                // still be at Snyk (the quiet period, or the takeover period).
                self.stats.replays += 1;
                self.violation(format!(
                    "{token} sent again {} ms after Snyk consumed it, before its maximum request time: the lost answer's quiet period was not kept",
                    self.now - tok.consumed_at
                ));
            } else if tok.state == TokState::Consumed && tok.answer_lost && !tok.retried {
                self.stats.documented_retries += 1;
                if let Some(t) = self.snyk.tokens.get_mut(token) {
                    t.retried = true;
                }
            } else if self.agents.iter().filter(|a| a.exclusive).count() > 1 {
                // Agents declared exclusive on a shared store (a
                // misconfiguration): while the store refuses them, each
                // rotates from its own journal and nothing arbitrates
                // between them and the others. Documented.
                self.stats.misconfigured_replays += 1;
            } else if tok.state == TokState::Consumed
                && self.now.saturating_sub(tok.consumed_at)
                    + self.rules.send_window.as_millis() as u64
                    >= self.rules.takeover.as_millis() as u64
                && tok.successor.as_ref().is_some_and(|n| !self.in_store(n))
            {
                // docs/protocol.md rule 5's residual risk: the claimant held Snyk's
                // answer without landing it for the whole takeover period
                // (faults added up past the bound). Counted, documented.
                self.stats.residual_risk += 1;
                excuse_revoked = true;
            } else if (tok.root || tok.lost_explained) && self.history_erased {
                // A put of an old token after another tool's `bao kv delete`
                // erased the record's put history (or a token its family
                // lost with it). Documented; Snyk refuses it and the put
                // restores the record it replaced.
                self.stats.after_foreign_delete += 1;
                excuse_revoked = true;
            } else if tok.state == TokState::Revoked {
                // Never accepted by Snyk (a reuse of another token of its
                // family revoked it): refused, not a replay. Whatever its
                // revocation lost is judged where it happened.
            } else {
                self.stats.replays += 1;
                self.violation(format!("replay: {token} sent again after Snyk accepted it"));
            }
            if self.snyk.policy == Policy::RevokeFamily {
                for t in self.snyk.tokens.values_mut() {
                    if t.family == tok.family && t.state == TokState::Live {
                        t.state = TokState::Revoked;
                        t.lost_explained |= excuse_revoked;
                    }
                }
            }
            if self.faults && self.rng.chance(0.1) {
                // The answer to a resend lost on its way back: an unknown
                // outcome again (the refusal never reaches the agent).
                self.stats.faults += 1;
                if let Some(t) = self.snyk.tokens.get_mut(token) {
                    t.doubtful += 1;
                }
                return Err(GrantError::Unknown {
                    timed_out: true,
                    message: "timed out".into(),
                });
            }
            return Err(GrantError::Permanent {
                error: "invalid_grant".into(),
                description: None,
            });
        }
        // Processed: the token is spent, its successor issued.
        let next = self.snyk.issue(tok.family, false);
        trace!("{}ms agent {agent} sent {token} -> {next}", self.now);
        self.stats.refreshes += 1;
        let now = self.now;
        if let Some(t) = self.snyk.tokens.get_mut(token) {
            t.state = TokState::Consumed;
            t.successor = Some(next.clone());
            t.consumed_at = now;
        }
        if let Some(t) = self.snyk.tokens.get_mut(&next) {
            t.in_transit = true;
            t.pred = Some(token.to_string());
            t.misconfigured = journal_only;
        }
        let access = format!("at-{}", self.snyk.next);
        self.snyk.access.insert(access.clone(), next.clone());
        self.snyk
            .outstanding
            .entry(token.to_string())
            .or_default()
            .push(agent);
        let grant = TokenGrant {
            access_token: Secret::new(access),
            expires_in: Duration::from_secs(3600),
            token_type: "bearer".into(),
            scope: None,
            refresh_token: Some(Secret::new(next.clone())),
            refresh_expires_in: None,
        };
        Ok((grant, true))
    }

    /// The second half of a processed send: the answer reaches the agent, or is lost.
    fn deliver(
        &mut self,
        agent: usize,
        token: &str,
        grant: TokenGrant,
        sent_at: u64,
    ) -> Result<TokenGrant, GrantError> {
        if let Some(v) = self.snyk.outstanding.get_mut(token) {
            if let Some(i) = v.iter().position(|a| *a == agent) {
                v.remove(i);
            }
        }
        let next = grant
            .refresh_token
            .as_ref()
            .map(|t| t.expose().to_string())
            .unwrap_or_default();
        if let Some(t) = self.snyk.tokens.get_mut(&next) {
            t.in_transit = false;
        }
        // An answer later than Snyk's timeout never reaches the agent: its
        // HTTP client gave up (an unknown outcome, rule 6).
        let timed_out = self.now > sent_at + self.rules.snyk_max.as_millis() as u64;
        let lost = timed_out
            || (self.faults
                && (self.rng.chance(0.05) || self.now < self.agents[agent].snyk_cut_until));
        trace!(
            "{}ms agent {agent} answer for {token} lost={lost}",
            self.now
        );
        if lost {
            self.stats.faults += 1;
            if let Some(t) = self.snyk.tokens.get_mut(token) {
                t.answer_lost = true;
                t.doubtful += 1;
            }
            if let Some(t) = self.snyk.tokens.get_mut(&next) {
                t.lost_explained = true;
            }
            // A timeout, or a page that replaced Snyk's answer (a gateway's
            // 502, a WAF's 403, a proxy's 407 ...), classified as the
            // agent's HTTP client does.
            return Err(if self.rng.chance(0.5) {
                GrantError::Unknown {
                    timed_out: true,
                    message: "timed out".into(),
                }
            } else {
                let status = self.page_status();
                let bodyless = self.rng.chance(0.3);
                self.page(status, bodyless)
            });
        }
        if let Some(t) = self.snyk.tokens.get_mut(&next) {
            t.held_by = Some(agent);
            t.note_tried = false;
            t.exposed = false;
        }
        Ok(grant)
    }

    /// The status of a page without an OAuth error body.
    fn page_status(&mut self) -> u16 {
        const PAGES: [u16; 9] = [302, 401, 403, 407, 408, 429, 502, 503, 504];
        PAGES[self.rng.below(PAGES.len() as u64) as usize]
    }

    /// What the agent's HTTP client makes of such a page
    /// (`snykey::snyk::classify_error`), or, sabotaged, a 3xx/4xx page
    /// taken as "not consumed".
    /// `bodyless`: no body and no content type at all (a bare 403, 407,
    /// 408, or a 429 from a rate limiter in front of Snyk).
    fn page(&self, status: u16, bodyless: bool) -> GrantError {
        if self.sabotage_pages && status < 500 {
            return GrantError::Refused {
                status,
                error: format!("http_{status}"),
                description: None,
            };
        }
        if bodyless {
            return snykey::snyk::classify_error(status, b"", None);
        }
        snykey::snyk::classify_error(status, b"<html><body>blocked</body></html>", None)
    }

    fn note(&mut self, agent: usize, entry: &Entry) -> Result<(), String> {
        if let Some(t) = entry.record.as_ref().and_then(|r| r.refresh_token.as_ref()) {
            if let Some(tok) = self.snyk.tokens.get_mut(t.expose()) {
                if tok.held_by == Some(agent) {
                    tok.note_tried = true;
                }
            }
        }
        if self.faults && self.rng.chance(0.01) {
            self.stats.faults += 1;
            return Err("disk full".into());
        }
        trace!(
            "{}ms agent {agent} journal claim={:?} record={:?}",
            self.now,
            entry.claim.as_ref().map(|c| (
                c.nonce[..6.min(c.nonce.len())].to_string(),
                c.attempts,
                c.sent
            )),
            entry
                .record
                .as_ref()
                .and_then(|r| r.refresh_token.as_ref())
                .map(|t| t.expose().to_string())
        );
        let a = &mut self.agents[agent];
        let value = (!entry.is_empty()).then(|| entry.clone());
        if a.buffered {
            a.unsynced = Some(value);
        } else {
            a.journal = value;
        }
        // Durable in the journal: no longer only in the agent's memory.
        if let Some(t) = entry.record.as_ref().and_then(|r| r.refresh_token.as_ref()) {
            if !a.buffered {
                if let Some(tok) = self.snyk.tokens.get_mut(t.expose()) {
                    tok.held_by = None;
                    tok.durable = true;
                }
            }
        }
        Ok(())
    }

    /// Teeth for rule 1: a caller cancelled and its running operation went
    /// with it (the process lives on): an answer in transit or held in the
    /// operation's memory is dropped; the agent's memory is what its journal
    /// holds. None of a kill's accounting: nothing excuses what follows.
    fn cancel(&mut self, agent: usize) {
        trace!("{}ms agent {agent} CANCELLED", self.now);
        let now = Duration::from_millis(self.now);
        let a = &mut self.agents[agent];
        a.task = None;
        a.mem = Some(
            a.journal
                .clone()
                .map(|e| Memory::recover(e, now))
                .unwrap_or_default(),
        );
        for senders in self.snyk.outstanding.values_mut() {
            senders.retain(|s| *s != agent);
        }
    }

    /// SIGKILL: the running operation and the memory are gone; the journal
    /// stays (unless `empty_disk`), its unsynced tail is lost.
    fn kill(&mut self, agent: usize, empty_disk: bool) {
        trace!(
            "{}ms agent {agent} KILLED empty_disk={empty_disk}",
            self.now
        );
        self.stats.faults += 1;
        let journaled: Option<String> = self.agents[agent]
            .journal
            .as_ref()
            .and_then(|e| e.record.as_ref())
            .and_then(|r| r.refresh_token.as_ref())
            .map(|t| t.expose().to_string());
        // A send noted in the journal whose outcome the process never learned.
        if let Some(fp) = self.agents[agent]
            .journal
            .as_ref()
            .and_then(|e| e.claim.as_ref())
            .filter(|c| c.sent)
            .map(|c| c.fp.clone())
        {
            for (name, t) in self.snyk.tokens.iter_mut() {
                if Secret::new(name.as_str()).digest() == fp {
                    t.doubtful += 1;
                }
            }
        }
        let a = &mut self.agents[agent];
        a.task = None;
        a.mem = None;
        a.alive = false;
        a.dead_since = self.now;
        a.unsynced = None;
        a.last_claim = None;
        a.cache = None;
        a.to_publish.clear();
        if empty_disk {
            a.journal = None;
            a.snapshot = None;
        }
        // Tokens lost with the process (an answer it held, or a send it was
        // waiting on) or with its disk (a token only its journal held).
        let mut lost: Vec<String> = Vec::new();
        for (tok, senders) in self.snyk.outstanding.iter_mut() {
            if let Some(i) = senders.iter().position(|a| *a == agent) {
                senders.remove(i);
                if let Some(n) = self.snyk.tokens.get(tok).and_then(|t| t.successor.clone()) {
                    lost.push(n);
                }
            }
        }
        // An answer it held and had not made durable: lost with its memory.
        // Excused only in the window rule 15 and the residual risk name: the
        // kill came between Snyk's answer and its journal write, or the
        // journal refused it or had not fsync'd it yet (a buffered journal).
        // Held past any other store or Snyk call without a journal write, its
        // loss is the protocol's (rule 4: the journal first).
        let mut unexcused: Vec<String> = Vec::new();
        for (name, t) in self.snyk.tokens.iter() {
            if t.held_by == Some(agent) {
                if t.exposed && !t.note_tried {
                    unexcused.push(name.clone());
                } else {
                    lost.push(name.clone());
                }
            }
        }
        for name in unexcused {
            if let Some(t) = self.snyk.tokens.get_mut(&name) {
                t.held_by = None;
            }
        }
        if empty_disk {
            if let Some(t) = journaled.filter(|t| !self.in_store(t) && !self.durable_in_journal(t))
            {
                lost.push(t);
            }
        }
        // A claim of its own in the store that its journal does not name
        // (killed between the claim's check-and-set and its note, or the
        // note was not fsync'd): no agent, itself included after a restart,
        // can tell whether a send followed, so the one who takes it over
        // counts it as a send in doubt (rule 5), whatever Snyk saw.
        if let Some(cur) = self.store.current() {
            let unnamed = cur.record.claim.as_ref().filter(|c| {
                self.claimants.get(&c.nonce) == Some(&agent)
                    && self.agents[agent]
                        .journal
                        .as_ref()
                        .and_then(|e| e.claim.as_ref())
                        .is_none_or(|n| n.nonce != c.nonce)
            });
            if let (Some(_), Some(t)) = (unnamed, cur.record.refresh_token.as_ref()) {
                if let Some(tok) = self.snyk.tokens.get_mut(t.expose()) {
                    tok.doubtful += 1;
                }
            }
        }
        if empty_disk {
            // Its claim in the store is nobody's now: what its send did is
            // unknowable, so the one retry of rule 6 is the taker-over's.
            if let Some(cur) = self.store.current() {
                let mine = cur
                    .record
                    .claim
                    .as_ref()
                    .is_some_and(|c| self.claimants.get(&c.nonce) == Some(&agent));
                if let (true, Some(t)) = (mine, cur.record.refresh_token.as_ref()) {
                    if let Some(tok) = self.snyk.tokens.get_mut(t.expose()) {
                        if tok.state != TokState::Live {
                            tok.answer_lost = true;
                            tok.doubtful += 1;
                        }
                    }
                }
            }
        }
        for name in lost {
            let pred = self.snyk.tokens.get_mut(&name).and_then(|t| {
                t.held_by = None;
                t.in_transit = false;
                t.lost_explained = true;
                t.pred.clone()
            });
            // Its predecessor's answer is lost: rule 6 permits one retry.
            if let Some(p) = pred.and_then(|p| self.snyk.tokens.get_mut(&p)) {
                p.answer_lost = true;
                p.doubtful += 1;
            }
        }
    }
}

// ---------------------------------------------------------------- Io

struct SimIo {
    w: W,
    agent: usize,
    op: (Op, u64),
    /// A put's given token (its own store write is the one that holds it).
    given: Option<String>,
}

impl Io for SimIo {
    fn mono(&self) -> Duration {
        // Monotonic clocks run on through pauses and ignore wall-clock steps.
        Duration::from_millis(self.w.borrow().now)
    }
    fn wall(&self) -> SystemTime {
        self.w.borrow().wall(self.agent)
    }
    fn nonce(&mut self) -> String {
        {
            let mut w = self.w.borrow_mut();
            format!("{:016x}{:016x}", w.rng.next(), w.rng.next())
        }
    }
    fn agent(&self) -> String {
        self.w.borrow().agents[self.agent].name.clone()
    }
    async fn read(&mut self) -> Result<Option<Versioned>, StoreError> {
        step().await;
        let mut w = self.w.borrow_mut();
        w.stats.steps += 1;
        w.io_by(self.agent);
        w.store_reachable(self.agent)?;
        Ok(w.store.current())
    }
    async fn write(&mut self, record: &Record, cas: u64) -> Result<u64, StoreError> {
        step().await;
        let mut w = self.w.borrow_mut();
        w.stats.steps += 1;
        w.io_by(self.agent);
        w.store_write(self.agent, self.op, self.given.as_deref(), record, cas)
    }
    async fn note(&mut self, entry: &Entry) -> Result<(), String> {
        step().await;
        let mut w = self.w.borrow_mut();
        w.stats.steps += 1;
        w.note(self.agent, entry)
    }
    async fn send(
        &mut self,
        token: &Secret,
        _record: &Record,
        deadline: Duration,
    ) -> Result<TokenGrant, GrantError> {
        // The request leaves right after the send-window check (the agent
        // checks again as it writes it); every fault happens between the
        // request and its answer.
        if self.mono() > deadline {
            return Err(GrantError::Unreachable {
                endpoint: "sim".into(),
                message: "the send window closed before the request was written".into(),
            });
        }
        let processed = {
            let mut w = self.w.borrow_mut();
            w.stats.steps += 1;
            w.io_by(self.agent);
            w.send(self.agent, token.expose())
        };
        let (grant, _) = processed?;
        let sent_at = self.w.borrow().now;
        // The answer is in transit: other agents move, time passes.
        step().await;
        let mut w = self.w.borrow_mut();
        w.deliver(self.agent, token.expose(), grant, sent_at)
    }
}

// ---------------------------------------------------------------- the run

#[derive(Clone, Copy)]
struct Config {
    agents: usize,
    steps: u64,
    claims: Claims,
    policy: Policy,
    sabotage: rotation::Sabotage,
    /// Teeth for docs/protocol.md rule 6's "only an OAuth error body proves
    /// not consumed": the agent's classification of pages, switched off.
    sabotage_pages: bool,
    /// Teeth for issue 26's snapshot: revive ignoring the generation.
    sabotage_revive: bool,
    /// Teeth for docs/protocol.md rule 9: a restart serves without
    /// replaying its journal (no `Memory::recover`).
    sabotage_no_replay: bool,
    /// Teeth for docs/protocol.md rule 1: a fault drops an agent's running
    /// operation (its future) mid-way, the process living on, as a
    /// cancelled caller would if it owned the grant.
    sabotage_cancel: bool,
}

fn rules(cfg: &Config, exclusive: bool) -> Rules {
    let mut r = Rules::new(cfg.claims, exclusive, Duration::from_secs(30));
    r.sabotage = cfg.sabotage;
    r
}

fn start_op(w: &W, agent: usize, op: Op) {
    {
        let mut wb = w.borrow_mut();
        let now = wb.now;
        wb.agents[agent].last_polled = now;
    }
    let (mut mem, exclusive) = {
        let mut wb = w.borrow_mut();
        let a = &mut wb.agents[agent];
        (a.mem.take().unwrap_or_default(), a.exclusive)
    };
    let mut r = w.borrow().rules;
    r.exclusive = exclusive;
    let started = w.borrow().stats.steps;
    trace!("{}ms agent {agent} starts {op:?}", w.borrow().now);
    let mut io = SimIo {
        w: Rc::clone(w),
        agent,
        op: (op, started),
        given: None,
    };
    let task: Task = match op {
        Op::Refresh => Box::pin(async move {
            let o = rotation::refresh(&mut io, &mut mem, &r, None).await;
            (mem, Outcome2::Refresh(o))
        }),
        Op::Put => {
            let given = {
                let t = put_token(&mut w.borrow_mut());
                io.given = Some(t.clone());
                Record {
                    refresh_token: Some(Secret::new(t)),
                    client_secret: Some(Secret::new("cs")),
                    ..Default::default()
                }
            };
            // The same token may be put on several agents at once.
            let extra = {
                let mut wb = w.borrow_mut();
                (0..wb.agents.len()).filter(|&i| i != agent).find(|&i| {
                    wb.agents[i].task.is_none() && wb.agents[i].alive && wb.rng.chance(0.5)
                })
            };
            if let Some(other) = extra {
                let given2 = given.clone();
                let mut mem2 = {
                    let mut wb = w.borrow_mut();
                    wb.agents[other].mem.take().unwrap_or_default()
                };
                let mut io2 = SimIo {
                    w: Rc::clone(w),
                    agent: other,
                    op: (Op::Put, started),
                    given: given.refresh_token.as_ref().map(|t| t.expose().to_string()),
                };
                let mut r2 = r;
                r2.exclusive = w.borrow().agents[other].exclusive;
                let t2: Task = Box::pin(async move {
                    let o = rotation::refresh(&mut io2, &mut mem2, &r2, Some(given2)).await;
                    (mem2, Outcome2::Refresh(o))
                });
                w.borrow_mut().agents[other].task = Some((Op::Put, started, t2));
            }
            Box::pin(async move {
                let o = rotation::refresh(&mut io, &mut mem, &r, Some(given)).await;
                (mem, Outcome2::Refresh(o))
            })
        }
        Op::Login => {
            let wl = Rc::clone(w);
            Box::pin(async move {
                // As `rotation::secrets::login`: the record is read first
                // (for the secret and generation); nothing is exchanged
                // when it cannot be.
                // As `rotation::secrets::login`: a version another tool
                // deleted hides its generation (0 here); the landing goes
                // above its version counter (`landing::succession`).
                let g = match io.read().await {
                    Ok(v) => v
                        .filter(|v| !v.hidden)
                        .map(|v| v.record.generation)
                        .unwrap_or(0),
                    Err(_) => return (mem, Outcome2::Landing(Landing::Pending)),
                };
                // The code exchange: from its answer on, the new refresh
                // token exists in this agent's memory only.
                let token = {
                    let mut wb = wl.borrow_mut();
                    wb.family += 1;
                    wb.stats.logins += 1;
                    let f = wb.family;
                    let t = wb.snyk.issue(f, true);
                    if let Some(x) = wb.snyk.tokens.get_mut(&t) {
                        x.held_by = Some(agent);
                        x.login_root = true;
                    }
                    t
                };
                let access = format!("at-login-{token}");
                wl.borrow_mut()
                    .snyk
                    .access
                    .insert(access.clone(), token.clone());
                // As the broker does: above anything this agent has seen.
                let g = g.max(mem.generation);
                let record = Record {
                    refresh_token: Some(Secret::new(token)),
                    client_secret: Some(Secret::new("cs")),
                    generation: g + 1,
                    ..Default::default()
                };
                let base = Base {
                    fp: None,
                    generation: g,
                    login: true,
                    via: Vec::new(),
                };
                let l = rotation::persist(&mut io, &mut mem, &r, record, base).await;
                (mem, Outcome2::Login(l, access))
            })
        }
        Op::Delete => Box::pin(async move {
            let d = rotation::tombstone(&mut io, &mut mem).await;
            (mem, Outcome2::Deleted(d))
        }),
        Op::Land => Box::pin(async move {
            let l = rotation::land(&mut io, &mut mem, &r).await;
            (mem, Outcome2::Landing(l))
        }),
    };
    w.borrow_mut().agents[agent].task = Some((op, started, task));
}

/// The token a put is given: a fresh one (a new family), a stale one (an
/// older token of the stored family, spent), one given to a put before (CI
/// retries a put; spent or not), or the stored token itself (adopted).
fn put_token(wb: &mut World) -> String {
    let stored = wb
        .store
        .current()
        .and_then(|v| v.record.refresh_token)
        .map(|t| t.expose().to_string());
    let family = stored
        .as_ref()
        .and_then(|t| wb.snyk.tokens.get(t))
        .map(|t| t.family);
    let mut stale: Vec<(u64, String)> = wb
        .snyk
        .tokens
        .iter()
        .filter(|(_, t)| Some(t.family) == family && t.state != TokState::Live)
        .map(|(n, t)| (t.seq, n.clone()))
        .collect();
    stale.sort();
    let pick = wb.rng.below(100);
    let chosen = match pick {
        0..=44 => None,
        45..=64 if !stale.is_empty() => {
            wb.stats.puts_stale += 1;
            let i = wb.rng.below(stale.len() as u64) as usize;
            Some(stale[i].1.clone())
        }
        65..=84 if !wb.put_given.is_empty() => {
            wb.stats.puts_again += 1;
            let i = wb.rng.below(wb.put_given.len() as u64) as usize;
            Some(wb.put_given[i].clone())
        }
        85..=99 => stored,
        _ => None,
    };
    let old = chosen.is_some();
    let t = chosen.unwrap_or_else(|| {
        wb.family += 1;
        let f = wb.family;
        wb.snyk.issue(f, true)
    });
    if !wb.put_given.contains(&t) {
        wb.put_given.push(t.clone());
    }
    if let Some(x) = wb.snyk.tokens.get_mut(&t).filter(|_| old) {
        x.given_old = true;
    }
    t
}

fn poll_agent(w: &W, agent: usize) {
    {
        let mut wb = w.borrow_mut();
        let now = wb.now;
        wb.agents[agent].last_polled = now;
    }
    let Some((op, started, mut task)) = w.borrow_mut().agents[agent].task.take() else {
        return;
    };
    let mut cx = Context::from_waker(Waker::noop());
    match task.as_mut().poll(&mut cx) {
        Poll::Pending => w.borrow_mut().agents[agent].task = Some((op, started, task)),
        Poll::Ready((mem, outcome)) => {
            let mut wb = w.borrow_mut();
            finish(&mut wb, agent, op, &mem, &outcome);
            wb.agents[agent].mem = Some(mem);
        }
    }
}

/// An operation ended: a token handed out must have a durable refresh token (I2).
fn finish(w: &mut World, agent: usize, op: Op, mem: &Memory, outcome: &Outcome2) {
    served(w, agent, op, mem, outcome);
    trace!("{}ms agent {agent} finished: {outcome:?}", w.now);
    // Tokens this operation held and did not make durable stay in its memory
    // (NotDurable: the agent's lander keeps them) or were dropped by design.
    let unlanded: Option<String> = mem
        .unlanded
        .as_ref()
        .and_then(|u| u.record.refresh_token.as_ref())
        .map(|t| t.expose().to_string());
    for (name, t) in w.snyk.tokens.iter_mut() {
        if t.held_by == Some(agent) && unlanded.as_deref() != Some(name.as_str()) {
            t.held_by = None;
        }
    }
    if let Outcome2::Refresh(Outcome::Minted { access_token, .. }) = outcome {
        let Some(rt) = w.snyk.access.get(access_token.expose()).cloned() else {
            return;
        };
        let durable = w.snyk.tokens.get(&rt).is_some_and(|t| t.durable);
        if !durable && !w.agents[agent].buffered {
            w.violation(format!(
                "access token handed out while its refresh token {rt} is not durable"
            ));
        }
    }
    if let Outcome2::Deleted(Ok(())) = outcome {
        // The broker then destroys the older versions (data gone, counter kept).
        for v in w.store.versions.iter_mut().rev().skip(1) {
            *v = None;
        }
    }
}

/// Issue 26: what an operation's end hands to the memory cache and to the
/// publisher, as the broker does (`Broker::publish`, `withdraw_published`).
fn served(w: &mut World, agent: usize, op: Op, mem: &Memory, outcome: &Outcome2) {
    let expires = |w: &World| -> SystemTime {
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(1_800_000_000 + 3600)
            + Duration::from_millis(w.now)
    };
    let (access, reset) = match outcome {
        Outcome2::Refresh(Outcome::Minted { access_token, .. }) => (
            Some(access_token.expose().to_string()),
            (op == Op::Put).then_some(w.agents[agent].put_gen),
        ),
        Outcome2::Login(Landing::Landed, at) => (Some(at.clone()), Some(mem.generation)),
        Outcome2::Deleted(Ok(())) => {
            let a = &mut w.agents[agent];
            a.cache = None;
            a.snapshot = None;
            a.to_publish.push((
                Offer::Withdraw {
                    generation: mem.generation,
                    why: Withdrawn::Deleted,
                },
                Some(mem.generation),
            ));
            return;
        }
        _ => (None, None),
    };
    let Some(access) = access else { return };
    let c = Cached {
        access,
        expires_at: expires(w),
        generation: mem.generation,
    };
    let a = &mut w.agents[agent];
    a.to_publish.push((
        Offer::Token {
            generation: c.generation,
            expires_at: c.expires_at,
        },
        reset,
    ));
    a.cache = Some(c);
}

/// The minimum validity of a served (revived) or published token.
const MIN_VALIDITY: Duration = Duration::from_secs(60);

fn sim_wall(w: &World) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(w.now)
}

/// The publisher writes one queued offer by the real rule
/// (`broker::publish::decide`), as its check-and-set would.
fn publish_one(w: &mut World, agent: usize) {
    if w.agents[agent].to_publish.is_empty() {
        return;
    }
    let (offer, reset) = w.agents[agent].to_publish.remove(0);
    let now = sim_wall(w);
    if let Verdict::Write(x) = publish_decide(w.published, offer, now, MIN_VALIDITY) {
        w.published = x;
    }
    if let Some(g) = reset {
        w.published_reset = w.published_reset.max(g);
    }
}

/// Issue 26's invariant: a revived or published token never outlives a
/// `delete`, `put` or `login` of its credential. Exactly: let D be the
/// generation of the newest delete (its tombstone), put (its own write of
/// the given token) or login (its landing) whose publishing step has run;
/// the published record never holds a token minted at a generation below
/// D. (A revived token is checked where it is revived: minted at no lower
/// generation than the newest such reset durable in the store.)
fn check_tokens(w: &mut World) {
    if w.generations_reused {
        return;
    }
    if let Shelved::Token { generation, .. } = w.published {
        if generation < w.published_reset {
            let d = w.published_reset;
            w.violation(format!(
                "the published token was minted at generation {generation}, before the delete, put or login at generation {d} whose publishing step ran"
            ));
        }
    }
}

/// At start: the snapshot's token comes back only if the real rule
/// (`cache::snapshot::revives`) says so, against the record read now.
fn revive(w: &W, agent: usize) {
    let mut wb = w.borrow_mut();
    let Some(s) = wb.agents[agent].snapshot.clone() else {
        return;
    };
    let stored = wb.store.current().filter(|v| !v.hidden).map(|v| v.record);
    let now = sim_wall(&wb);
    let generation = if wb.sabotage_revive {
        stored.as_ref().map_or(s.generation, |r| r.generation)
    } else {
        s.generation
    };
    if !revives(generation, s.expires_at, stored.as_ref(), now, MIN_VALIDITY) {
        return;
    }
    if s.generation < wb.stored_reset && !wb.generations_reused {
        let d = wb.stored_reset;
        wb.violation(format!(
            "agent {agent} revived an access token minted at generation {}, before the delete, put or login at generation {d}",
            s.generation
        ));
    }
    trace!(
        "{}ms agent {agent} revived {} (generation {})",
        wb.now, s.access, s.generation
    );
    let a = &mut wb.agents[agent];
    a.to_publish.push((
        Offer::Token {
            generation: s.generation,
            expires_at: s.expires_at,
        },
        None,
    ));
    a.cache = Some(s);
}

fn restart(w: &W, agent: usize) {
    let (now, no_replay) = {
        let wb = w.borrow();
        (wb.now, wb.sabotage_no_replay)
    };
    let entry = {
        let mut wb = w.borrow_mut();
        let a = &mut wb.agents[agent];
        a.alive = true;
        a.journal.clone()
    };
    let mem = entry
        .filter(|_| !no_replay)
        .map(|e| Memory::recover(e, Duration::from_millis(now)))
        .unwrap_or_default();
    let land = mem.unlanded.is_some();
    w.borrow_mut().agents[agent].mem = Some(mem);
    revive(w, agent);
    if land {
        start_op(w, agent, Op::Land);
    }
}

fn fault_limit(w: &World) -> u64 {
    (w.rules.takeover - w.rules.send_window - w.rules.snyk_max).as_millis() as u64
}

/// One fault, at random.
fn inject(w: &W) {
    let mut wb = w.borrow_mut();
    let n = wb.agents.len() as u64;
    let agent = wb.rng.below(n) as usize;
    let now = wb.now;
    // Outages stay shorter than the takeover period minus the send window
    // and Snyk's timeout, all faults together: each lasts at most a third of
    // that, store outages never overlap, and a killed agent restarts within
    // a third of it (a longer one is the residual risk of rule 5).
    let limit = fault_limit(&wb);
    let span = 1 + wb.rng.below(limit / 3);
    // Store outages (with pauses) never chain into one longer than the
    // bound: after one, the store stays healthy for the whole bound.
    let store_fault_active = now < wb.store_quiet_until
        || now < wb.store_sealed_until
        || now < wb.store_read_only_until
        || wb
            .agents
            .iter()
            .any(|a| now < a.store_cut_until || now < a.paused_until);
    wb.stats.faults += 1;
    if wb.sabotage_cancel && wb.agents[agent].task.is_some() && wb.rng.chance(0.3) {
        wb.cancel(agent);
        return;
    }
    match wb.rng.below(12) {
        // With journal-only claims (the file store) the journal and the
        // store share one disk: it is not emptied without the store.
        0 | 1 if wb.agents[agent].alive => {
            let empty = wb.rules.claims == Claims::Store && wb.rng.chance(0.2);
            wb.kill(agent, empty);
        }
        2 if !store_fault_active => {
            wb.agents[agent].paused_until = now + span;
            wb.store_quiet_until = now + span + limit;
        }
        3 if !store_fault_active => {
            wb.agents[agent].store_cut_until = now + span;
            wb.store_quiet_until = now + span + limit;
        }
        4 => wb.agents[agent].snyk_cut_until = now + span.min(40_000),
        5 if !store_fault_active => {
            wb.store_sealed_until = now + span;
            wb.store_quiet_until = now + span + limit;
        }
        6 if !store_fault_active => {
            wb.store_read_only_until = now + span;
            wb.store_quiet_until = now + span + limit;
        }
        7 => wb.snyk_down_until = now + span.min(20_000),
        8 => {
            let step = wb.rng.below(600_000) as i64 - 300_000;
            wb.agents[agent].skew_ms += step;
        }
        9 => {
            // A foreign blind write (the seed service): refused, cas_required is set.
        }
        // A foreign soft delete of the latest version (`bao kv delete`).
        // (KV v2 only: the file store has no versions to delete.)
        10 if wb.rules.claims == Claims::Store && wb.rng.chance(0.2) => {
            wb.store.soft_deleted = true;
            wb.history_erased = true;
        }
        _ => {
            // The Redis lock lost while held: agents here already run
            // without it half the time; nothing to model beyond that.
        }
    }
}

fn world(seed: u64, cfg: Config) -> W {
    let mut rng = Rng(seed);
    let exclusive_pair = cfg.claims == Claims::Store && rng.chance(0.1);
    let mut agents = Vec::new();
    for i in 0..cfg.agents {
        let dup = rng.chance(0.2);
        agents.push(Agent {
            name: if dup {
                "host:dup".into()
            } else {
                format!("host-{i}")
            },
            journal: None,
            unsynced: None,
            // A journal whose writes reach the disk late (no fsync, a torn
            // tail after a crash) only where the store holds the claims.
            buffered: cfg.claims == Claims::Store && rng.chance(0.15),
            mem: Some(Memory::default()),
            task: None,
            alive: true,
            paused_until: 0,
            store_cut_until: 0,
            snyk_cut_until: 0,
            skew_ms: rng.below(120_000) as i64 - 60_000,
            dead_since: 0,
            last_polled: 0,
            last_claim: None,
            exclusive: cfg.claims == Claims::Journal || (exclusive_pair && i < 2),
            cache: None,
            snapshot: None,
            to_publish: Vec::new(),
            put_gen: 0,
        });
    }
    let world = World {
        rng,
        now: 0,
        snyk: Snyk {
            tokens: HashMap::new(),
            access: HashMap::new(),
            next: 0,
            policy: cfg.policy,
            outstanding: HashMap::new(),
        },
        store: Store {
            versions: Vec::new(),
            soft_deleted: false,
        },
        agents,
        violations: Vec::new(),
        stats: Stats::default(),
        faults: true,
        store_sealed_until: 0,
        store_read_only_until: 0,
        snyk_down_until: 0,
        deleted_at: None,
        rules: rules(&cfg, false),
        family: 0,
        history_erased: false,
        put_given: Vec::new(),
        sabotage_pages: cfg.sabotage_pages,
        sabotage_revive: cfg.sabotage_revive,
        sabotage_no_replay: cfg.sabotage_no_replay,
        sabotage_cancel: cfg.sabotage_cancel,
        published: Shelved::Empty,
        published_reset: 0,
        stored_reset: 0,
        max_generation: 0,
        generations_reused: false,
        claimants: HashMap::new(),
        store_quiet_until: 0,
    };
    let w: W = Rc::new(RefCell::new(world));
    // The credential starts stored (a put that went through).
    {
        let mut wb = w.borrow_mut();
        wb.family = 1;
        let t = wb.snyk.issue(1, true);
        let r = Record {
            refresh_token: Some(Secret::new(t)),
            client_secret: Some(Secret::new("cs")),
            generation: 1,
            ..Default::default()
        };
        wb.store.versions.push(Some(r));
    }
    w
}

fn run(seed: u64, cfg: Config) -> (Stats, Vec<String>) {
    let w = world(seed, cfg);
    let mut iterations = 0u64;
    while w.borrow().stats.steps < cfg.steps && iterations < cfg.steps * 20 {
        iterations += 1;
        one_step(&w, true);
        w.borrow_mut().check();
    }
    // Calm: faults stop, everyone heals; the credential must become usable.
    calm(&w);
    let wb = w.borrow();
    (wb.stats, wb.violations.clone())
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
    // Buffered journals reach the disk some time later.
    {
        let mut wb = w.borrow_mut();
        for i in 0..wb.agents.len() {
            if wb.agents[i].unsynced.is_some() && wb.rng.chance(0.3) {
                let entry = wb.agents[i].unsynced.take().flatten();
                if let Some(t) = entry
                    .as_ref()
                    .and_then(|e| e.record.as_ref())
                    .and_then(|r| r.refresh_token.as_ref())
                {
                    if let Some(tok) = wb.snyk.tokens.get_mut(t.expose()) {
                        tok.held_by = None;
                        tok.durable = true;
                    }
                }
                wb.agents[i].journal = entry;
            }
        }
    }
    // The publisher writes, and the snapshot is written, now and then.
    {
        let mut wb = w.borrow_mut();
        for i in 0..wb.agents.len() {
            if !wb.agents[i].alive {
                continue;
            }
            if wb.rng.chance(0.3) {
                publish_one(&mut wb, i);
            }
            if wb.rng.chance(0.2) {
                wb.agents[i].snapshot = wb.agents[i].cache.clone();
            }
        }
        check_tokens(&mut wb);
    }
    let choice = w.borrow_mut().rng.below(100);
    let n = w.borrow().agents.len() as u64;
    let agent = w.borrow_mut().rng.below(n) as usize;
    let (now, alive, paused, busy) = {
        let wb = w.borrow();
        let a = &wb.agents[agent];
        (wb.now, a.alive, a.paused_until > wb.now, a.task.is_some())
    };
    // The agent whose running operation waited longest, if it waited too long.
    let starved = {
        let wb = w.borrow();
        let bound = fault_limit(&wb) / 6;
        (0..wb.agents.len())
            .filter(|&i| {
                let a = &wb.agents[i];
                a.alive
                    && a.task.is_some()
                    && a.paused_until <= wb.now
                    && wb.now > a.last_polled + bound
            })
            .min_by_key(|&i| wb.agents[i].last_polled)
    };
    if let Some(i) = starved {
        poll_agent(w, i);
    } else if choice < 20 {
        let mut wb = w.borrow_mut();
        let big = wb.rng.chance(0.05);
        let by = if big {
            wb.rng.below(60_000)
        } else {
            wb.rng.below(2_000)
        };
        wb.now += by;
    } else if faults && choice < 24 {
        inject(w);
    } else if !alive {
        let overdue = {
            let wb = w.borrow();
            wb.now > wb.agents[agent].dead_since + fault_limit(&wb) / 3
        };
        if overdue || w.borrow_mut().rng.chance(0.3) {
            restart(w, agent);
        }
    } else if paused {
        let _ = now;
    } else if busy {
        poll_agent(w, agent);
    } else {
        // A put races another agent's claim more often than chance alone
        // would make it (rule 8: it waits for that landing).
        let claimed_by_other = {
            let wb = w.borrow();
            wb.store.current().is_some_and(|v| {
                v.record
                    .claim
                    .as_ref()
                    .is_some_and(|c| wb.claimants.get(&c.nonce) != Some(&agent))
            })
        };
        if claimed_by_other && w.borrow_mut().rng.chance(0.06) {
            w.borrow_mut().stats.puts_over_claims += 1;
            start_op(w, agent, Op::Put);
            poll_agent(w, agent);
            return;
        }
        let r = w.borrow_mut().rng.below(100);
        let op = match r {
            0..=84 => Op::Refresh,
            85..=90 => Op::Login,
            91..=96 => Op::Put,
            _ => {
                if w.borrow_mut().rng.chance(0.3) {
                    Op::Delete
                } else {
                    Op::Refresh
                }
            }
        };
        start_op(w, agent, op);
        poll_agent(w, agent);
    }
}

#[allow(clippy::needless_range_loop)]
fn calm(w: &W) {
    {
        let mut wb = w.borrow_mut();
        wb.faults = false;
        let now = wb.now;
        wb.store_sealed_until = 0;
        wb.store_read_only_until = 0;
        wb.snyk_down_until = 0;
        for a in wb.agents.iter_mut() {
            a.paused_until = now;
            a.store_cut_until = 0;
            a.snyk_cut_until = 0;
        }
    }
    let n = w.borrow().agents.len();
    for i in 0..n {
        if !w.borrow().agents[i].alive {
            restart(w, i);
        }
    }
    // Let running operations finish.
    for _ in 0..10_000 {
        if w.borrow().agents.iter().all(|a| a.task.is_none()) {
            break;
        }
        one_step(w, false);
        w.borrow_mut().check();
    }
    // The credential may legitimately need a login (an injected fault lost
    // its newest token) or be deleted; then a human logs in.
    let deadline = w.borrow().now
        + (w.borrow().rules.takeover + w.borrow().rules.quiet()).as_millis() as u64 * 2;
    let mut relogged = false;
    let mut served = vec![false; n];
    while w.borrow().now < deadline {
        for i in 0..n {
            if served[i] {
                continue;
            }
            start_op(w, i, Op::Refresh);
            let mut outcome = None;
            for _ in 0..1000 {
                let Some((op, started, mut task)) = w.borrow_mut().agents[i].task.take() else {
                    break;
                };
                let mut cx = Context::from_waker(Waker::noop());
                match task.as_mut().poll(&mut cx) {
                    Poll::Pending => w.borrow_mut().agents[i].task = Some((op, started, task)),
                    Poll::Ready((mem, o)) => {
                        let mut wb = w.borrow_mut();
                        finish(&mut wb, i, op, &mem, &o);
                        wb.agents[i].mem = Some(mem);
                        outcome = Some(o);
                        break;
                    }
                }
            }
            w.borrow_mut().check();
            match outcome {
                Some(Outcome2::Refresh(Outcome::Minted { landed: true, .. })) => served[i] = true,
                // Another agent's fresh landing serves this one too (from the cache, in the agent).
                Some(Outcome2::Refresh(Outcome::Moved)) => {}
                Some(Outcome2::Refresh(
                    Outcome::NeedsLogin(_)
                    | Outcome::NotFound
                    | Outcome::Later {
                        why: rotation::Why::RolledBack { .. } | rotation::Why::Store(_),
                        ..
                    },
                )) if !relogged
                    && (w.borrow().store.soft_deleted
                        || !matches!(
                            outcome,
                            Some(Outcome2::Refresh(Outcome::Later {
                                why: rotation::Why::Store(_),
                                ..
                            }))
                        )) =>
                {
                    // A human logs in, on the agent that has seen the most.
                    relogged = true;
                    let j = (0..n)
                        .max_by_key(|&j| {
                            w.borrow().agents[j]
                                .mem
                                .as_ref()
                                .map(|m| m.generation)
                                .unwrap_or(0)
                        })
                        .unwrap_or(i);
                    start_op(w, j, Op::Login);
                    while w.borrow().agents[j].task.is_some() {
                        poll_agent(w, j);
                    }
                }
                _ => {}
            }
        }
        if served.iter().all(|s| *s) {
            break;
        }
        w.borrow_mut().now += 1_000;
    }
    let mut wb = w.borrow_mut();
    if !served.iter().all(|s| *s) {
        let outcome = format!("{served:?}");
        wb.violation(format!("liveness: after the faults stopped, not every agent got a token within the bound (served: {outcome})"));
    }
    if wb.store.current().is_some_and(|v| v.record.claim.is_some()) {
        wb.violation("liveness: a claim remains in the store after the calm period".into());
    }
    let _ = HashSet::<u8>::new();
}

fn default_config() -> Config {
    Config {
        agents: 3,
        steps: 400,
        claims: Claims::Store,
        policy: Policy::Reject,
        sabotage: Default::default(),
        sabotage_pages: false,
        sabotage_revive: false,
        sabotage_no_replay: false,
        sabotage_cancel: false,
    }
}

fn config_for(seed: u64) -> Config {
    let mut c = default_config();
    let mut r = Rng(seed ^ 0xabcdef);
    c.agents = 2 + r.below(3) as usize;
    c.policy = if r.chance(0.5) {
        Policy::Reject
    } else {
        Policy::RevokeFamily
    };
    c.claims = if r.chance(0.85) {
        Claims::Store
    } else {
        Claims::Journal
    };
    if c.claims == Claims::Journal {
        // The file store: one agent, locked with flock.
        c.agents = 1;
    }
    c
}

#[test]
fn the_rotation_rule_holds_under_every_fault() {
    let (base, n) = seeds(2_000);
    let mut total = Stats::default();
    for seed in base..base + n {
        let (stats, violations) = run(seed, config_for(seed));
        if !violations.is_empty() {
            panic!(
                "seed {seed} broke the rotation rule (replay with SNYKEY_SIM_SEED={seed} cargo test --test sim):\n  {}",
                violations.join("\n  ")
            );
        }
        total.steps += stats.steps;
        total.faults += stats.faults;
        total.sends += stats.sends;
        total.refreshes += stats.refreshes;
        total.documented_retries += stats.documented_retries;
        total.replays += stats.replays;
        total.lost += stats.lost;
        total.logins += stats.logins;
        total.needs_login += stats.needs_login;
        total.misconfigured_replays += stats.misconfigured_replays;
        total.after_foreign_delete += stats.after_foreign_delete;
        total.residual_risk += stats.residual_risk;
        total.spent_put_sends += stats.spent_put_sends;
        total.generation_hidden += stats.generation_hidden;
        total.puts_stale += stats.puts_stale;
        total.puts_again += stats.puts_again;
        total.puts_over_claims += stats.puts_over_claims;
    }
    println!(
        "sim: {n} seeds, {} steps, faults tried {}, sends {}, refreshes {}, replays {} (must be 0), documented lost-answer retries {}, credentials lost {} (must be 0), logins {}, needs_login written {}, replays between two agents both misconfigured as exclusive {}, sends of an old put token after another tool erased the record's history {}, sends after a claimant held its answer past the takeover period (rule 5's residual risk) {}, puts of a stale token {}, puts of a token put before {}, puts racing another agent's claim {}, sends of a spent put token the record did not show {}, writes over a version another tool deleted below the highest generation {}",
        total.steps,
        total.faults,
        total.sends,
        total.refreshes,
        total.replays,
        total.documented_retries,
        total.lost,
        total.logins,
        total.needs_login,
        total.misconfigured_replays,
        total.after_foreign_delete,
        total.residual_risk,
        total.puts_stale,
        total.puts_again,
        total.puts_over_claims,
        total.spent_put_sends,
        total.generation_hidden
    );
    assert_eq!(total.replays, 0);
    assert_eq!(total.lost, 0);
    assert!(total.refreshes > n, "the simulation must actually refresh");
}

/// The simulator has teeth: with one rule switched off, it finds a violation.
fn finds_violation_without(sabotage: rotation::Sabotage, what: &str) {
    finds_violation_with(|cfg| cfg.sabotage = sabotage, what);
}

/// Teeth seeds: as many as the main test runs by default, so that a switch
/// caught here is caught by `cargo test` (and by every `scripts/sim` run).
const TEETH_SEEDS: u64 = 2_000;

fn finds_violation_with(sabotage: impl Fn(&mut Config), what: &str) {
    // The main test's own configurations, seed by seed: a switch caught here
    // is caught by `the_rotation_rule_holds_under_every_fault` at that seed.
    for seed in 1..=TEETH_SEEDS {
        let mut cfg = config_for(seed);
        sabotage(&mut cfg);
        let (_, v) = run(seed, cfg);
        if !v.is_empty() {
            println!("without {what}: seed {seed} finds {}", v[0]);
            return;
        }
    }
    panic!(
        "with {what} switched off, {TEETH_SEEDS} seeds found no violation: the simulation has no teeth"
    );
}

#[test]
fn without_the_generation_check_of_the_snapshot_the_simulation_finds_a_violation() {
    finds_violation_with(
        |cfg| cfg.sabotage_revive = true,
        "the generation check of a revived access token",
    );
}

#[test]
fn without_the_generation_bound_of_a_hidden_version_the_simulation_finds_a_violation() {
    finds_violation_without(
        rotation::Sabotage {
            hidden_generation_ignored: true,
            ..Default::default()
        },
        "the version counter bounding a hidden generation (rule 10)",
    );
}

#[test]
fn without_the_journal_replay_the_simulation_finds_a_violation() {
    finds_violation_with(
        |cfg| cfg.sabotage_no_replay = true,
        "the journal replayed at a restart (rule 9)",
    );
}

#[test]
fn without_the_exclusive_chain_the_simulation_finds_a_violation() {
    finds_violation_without(
        rotation::Sabotage {
            chain_without_exclusive: true,
            ..Default::default()
        },
        "rotating from the journal only when exclusive (rule 7)",
    );
}

#[test]
fn without_grants_owned_by_the_agent_the_simulation_finds_a_violation() {
    finds_violation_with(
        |cfg| cfg.sabotage_cancel = true,
        "grants owned by the agent, not the caller (rule 1)",
    );
}

#[test]
fn without_the_put_waiting_for_a_claim_the_simulation_finds_a_violation() {
    finds_violation_without(
        rotation::Sabotage {
            put_over_live_claim: true,
            ..Default::default()
        },
        "a put waiting for another agent's claim",
    );
}

#[test]
fn without_the_put_history_the_simulation_finds_a_violation() {
    finds_violation_without(
        rotation::Sabotage {
            put_forgets_history: true,
            ..Default::default()
        },
        "the put history (a second put of a token is a no-op)",
    );
}

#[test]
fn without_the_journal_before_the_landing_the_simulation_finds_a_violation() {
    finds_violation_without(
        rotation::Sabotage {
            land_before_journal: true,
            ..Default::default()
        },
        "the journal before the landing",
    );
}

#[test]
fn without_the_journal_before_the_send_the_simulation_finds_a_violation() {
    finds_violation_without(
        rotation::Sabotage {
            send_before_note: true,
            ..Default::default()
        },
        "the claim in the journal before the send",
    );
}

#[test]
fn without_the_quiet_period_the_simulation_finds_a_violation() {
    finds_violation_without(
        rotation::Sabotage {
            no_quiet_period: true,
            ..Default::default()
        },
        "the quiet period after an unknown outcome",
    );
}

#[test]
fn without_the_one_retry_limit_the_simulation_finds_a_violation() {
    finds_violation_without(
        rotation::Sabotage {
            retry_without_limit: true,
            ..Default::default()
        },
        "at most one retry after an unknown outcome",
    );
}

#[test]
fn without_pages_as_unknown_outcomes_the_simulation_finds_a_violation() {
    finds_violation_with(
        |cfg| cfg.sabotage_pages = true,
        "3xx/4xx pages without an OAuth body as unknown outcomes",
    );
}

#[test]
fn without_the_claim_before_a_send_the_simulation_finds_a_violation() {
    finds_violation_without(
        rotation::Sabotage {
            no_claim_cas: true,
            ..Default::default()
        },
        "the claim check-and-set",
    );
}

#[test]
fn without_succession_at_landing_the_simulation_finds_a_violation() {
    finds_violation_without(
        rotation::Sabotage {
            no_succession: true,
            ..Default::default()
        },
        "succession",
    );
}

#[test]
fn without_the_takeover_period_the_simulation_finds_a_violation() {
    finds_violation_without(
        rotation::Sabotage {
            no_takeover_wait: true,
            ..Default::default()
        },
        "the takeover period",
    );
}

/// docs/protocol.md rule 5's residual risk, walked through on purpose: a claimant
/// holds Snyk's answer but cannot reach the store for longer than the
/// takeover period. Another agent takes the claim over and sends the token
/// once more (the one permitted retry); Snyk refuses it and the record says
/// `needs_login`. When the claimant comes back it lands its token by
/// succession, which clears `needs_login`: with Snyk refusing a reused token
/// (not revoking its family), nothing is lost.
#[test]
fn residual_risk_is_a_login_not_a_loss() {
    let mut cfg = default_config();
    cfg.agents = 2;
    let (_, violations, w) = {
        let (stats, violations) = (Stats::default(), Vec::<String>::new());
        let w = world(7, cfg);
        (stats, violations, w)
    };
    w.borrow_mut().faults = false;
    // A claims and sends; the answer reaches it, then it is cut off from the store.
    start_op(&w, 0, Op::Refresh);
    for _ in 0..100 {
        let holds = w
            .borrow()
            .snyk
            .tokens
            .values()
            .any(|t| t.held_by == Some(0));
        if holds {
            break;
        }
        poll_agent(&w, 0);
    }
    let takeover = w.borrow().rules.takeover.as_millis() as u64;
    {
        let mut wb = w.borrow_mut();
        let now = wb.now;
        wb.agents[0].store_cut_until = now + takeover * 3;
    }
    // B waits out the takeover period, then takes over: Snyk refuses the token.
    let mut b_outcome = None;
    for _ in 0..400 {
        w.borrow_mut().now += 1_000;
        start_op(&w, 1, Op::Refresh);
        while w.borrow().agents[1].task.is_some() {
            let Some((op, started, mut task)) = w.borrow_mut().agents[1].task.take() else {
                break;
            };
            let mut cx = Context::from_waker(Waker::noop());
            match task.as_mut().poll(&mut cx) {
                Poll::Pending => w.borrow_mut().agents[1].task = Some((op, started, task)),
                Poll::Ready((mem, o)) => {
                    w.borrow_mut().agents[1].mem = Some(mem);
                    b_outcome = Some(o);
                }
            }
        }
        if matches!(b_outcome, Some(Outcome2::Refresh(Outcome::NeedsLogin(_)))) {
            break;
        }
    }
    assert!(
        matches!(b_outcome, Some(Outcome2::Refresh(Outcome::NeedsLogin(_)))),
        "the taking-over agent must end in needs_login, got {b_outcome:?}"
    );
    assert!(
        w.borrow()
            .store
            .current()
            .is_some_and(|v| v.record.needs_login().is_some())
    );
    // The send the claimant's answer made spent: the one replay this risk
    // costs, recognised and counted as the residual risk (not a violation).
    assert_eq!(
        (w.borrow().stats.residual_risk, w.borrow().stats.replays),
        (1, 0),
        "exactly one send of the spent token, counted as the residual risk"
    );
    assert!(
        w.borrow().violations.is_empty(),
        "{:?}",
        w.borrow().violations
    );
    // A comes back and lands its token by succession: needs_login is cleared.
    {
        let mut wb = w.borrow_mut();
        wb.agents[0].store_cut_until = 0;
    }
    for _ in 0..100 {
        if w.borrow().agents[0].task.is_none() {
            break;
        }
        poll_agent(&w, 0);
    }
    if w.borrow().agents[0]
        .mem
        .as_ref()
        .is_some_and(|m| m.unlanded.is_some())
    {
        start_op(&w, 0, Op::Land);
        while w.borrow().agents[0].task.is_some() {
            poll_agent(&w, 0);
        }
    }
    let cur = w.borrow().store.current().expect("stored");
    assert!(
        cur.record.needs_login().is_none(),
        "the landing clears needs_login"
    );
    let t = cur
        .record
        .refresh_token
        .as_ref()
        .map(|t| t.expose().to_string())
        .unwrap_or_default();
    assert_eq!(
        w.borrow().snyk.tokens.get(&t).map(|t| t.state.clone()),
        Some(TokState::Live)
    );
    let _ = violations;
}
