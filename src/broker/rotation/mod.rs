//! The rotation rule of docs/protocol.md, as one protocol a reviewer can check in one file.
//!
//! Snyk refresh tokens are single-use. Two invariants hold whatever fails:
//! * **I1 — never replay:** a refresh token Snyk accepted is never sent again, by any agent.
//! * **I2 — never lose:** a new refresh token is durable (store, or the fsync'd
//!   journal) before any access token of the same answer is handed out, and it
//!   is never dropped or overwritten while it is the newest one.
//!
//! The protocol talks to the world only through [`Io`] (the store record of one
//! credential, this agent's journal entry for it, Snyk's token endpoint, the
//! clocks and the random nonce), so the same code runs in the agent and, against
//! in-process models with every fault injected between any two steps, in the
//! deterministic simulation (`tests/sim.rs`).
//!
//! A credential's refresh goes through these states; each transition is one
//! step of [`refresh`] and keeps the invariant written beside it:
//!
//! ```text
//!  idle ──read──▶ decided ──claim CAS──▶ claimed ──note nonce──▶ sent ──answer──▶ answered
//!                   │ (foreign live claim: wait; store behind: refuse)             │
//!                   ▼                                                               ▼
//!                 waiting                                  journaled ──land CAS──▶ landed
//!                                                               │ (store holds something else)
//!                                                               ├──────────────▶ discarded
//!                                   (Snyk: invalid_grant) ──────┴──────────────▶ needs_login
//! ```
//!
//! Where the store cannot check-and-set (KV v1) or is locked to this agent
//! (the file store), the claim lives in the journal only ([`Claims`]).

mod answer;
mod decide;
mod landing;
mod put;
mod rules;
pub mod secrets;

use answer::*;
use decide::*;
use landing::*;
pub use landing::{land, persist, tombstone};
use put::*;
pub use rules::{Claims, Rules, Sabotage, UNPROTECTED};

use super::journal::{Base, Entry, Note, Replaced};
use crate::secret::Secret;
use crate::snyk::{GrantError, TokenGrant};
use crate::store::{Claim, Record, RecordState, StoreError, Versioned};
use std::future::Future;
use std::time::{Duration, SystemTime};

/// The world as one credential's refresh sees it.
pub trait Io {
    /// This agent's monotonic clock (time since an arbitrary origin).
    fn mono(&self) -> Duration;
    /// Wall-clock time: informational fields only (`deadline`, `updated_at`).
    fn wall(&self) -> SystemTime;
    /// A fresh 128-bit random nonce, hex.
    fn nonce(&mut self) -> String;
    /// `server.agent_id`.
    fn agent(&self) -> String;
    /// Reads the credential's record.
    fn read(&mut self) -> impl Future<Output = Result<Option<Versioned>, StoreError>>;
    /// Writes it with check-and-set on `cas` (0: only if absent).
    fn write(&mut self, record: &Record, cas: u64)
    -> impl Future<Output = Result<u64, StoreError>>;
    /// Replaces this agent's journal entry of the credential, durably (an
    /// empty entry removes it).
    fn note(&mut self, entry: &Entry) -> impl Future<Output = Result<(), String>>;
    /// Sends a refresh token of `record` to Snyk, with the record's client
    /// secret, to the record's region. Runs to completion once started.
    /// `deadline` (on [`Io::mono`]) is the claim's send window: checked
    /// again right before the request is written, and if it has passed,
    /// nothing is written ([`GrantError::Unreachable`]).
    fn send(
        &mut self,
        token: &Secret,
        record: &Record,
        deadline: Duration,
    ) -> impl Future<Output = Result<TokenGrant, GrantError>>;
}

/// What this agent remembers of one credential between refreshes.
#[derive(Debug, Default)]
pub struct Memory {
    /// The highest generation read or written: a lower one means the store
    /// went back (a rollback or restore), and nothing is sent from it.
    pub generation: u64,
    /// This agent's claim (its nonce is in the journal).
    pub claim: Option<Note>,
    /// A claim being written: if the write's answer is lost but it was
    /// applied, its nonce tells us the claim is ours (`attempts`: the sends
    /// in doubt before it, as nothing was sent under it).
    pub pending: Option<Note>,
    /// When the last unknown outcome happened (monotonic): rule 6's quiet period.
    pub doubt_since: Option<Duration>,
    /// A successor the store does not hold yet.
    pub unlanded: Option<Unlanded>,
    /// Another agent's claim we are timing (rule 5).
    pub watch: Option<Watch>,
    /// The digest of a refresh token Snyk refused for good.
    pub dead: Option<String>,
    /// What a put replaced, until Snyk answers the put's token
    /// ([`Entry::replaced`]; journaled before the put's store write).
    pub replaced: Option<Replaced>,
    /// A request Snyk refused as malformed ([`GrantError::is_malformed`]):
    /// its shape ([`request_shape`]) and why. No request of that shape is
    /// sent again; a put or a login changes the record, and with it the shape.
    pub malformed: Option<(String, String)>,
}

/// What Snyk sees of a record in a refresh: its refresh token and client
/// secret (digests). The same shape gets the same answer.
pub fn request_shape(record: &Record) -> String {
    let digest = |s: Option<&Secret>| s.map(Secret::digest).unwrap_or_default();
    format!(
        "{}:{}",
        digest(record.refresh_token.as_ref()),
        digest(record.client_secret.as_ref())
    )
}

/// A successor record and what it lands on.
#[derive(Debug, Clone)]
pub struct Unlanded {
    pub record: Record,
    pub base: Base,
    /// In the journal (durable) or only in memory.
    pub journaled: bool,
    /// A login landing right after its code exchange: it replaces whatever
    /// is stored (rule 4). Replayed from the journal it is not fresh.
    pub fresh_login: bool,
}

/// A foreign claim first seen at `since` on our monotonic clock.
#[derive(Debug, Clone)]
pub struct Watch {
    pub version: u64,
    pub nonce: String,
    pub since: Duration,
}

impl Memory {
    /// Memory as the journal keeps it.
    pub fn entry(&self, now: SystemTime) -> Entry {
        Entry {
            claim: self.claim.clone(),
            record: self.unlanded.as_ref().map(|u| u.record.clone()),
            base: self.unlanded.as_ref().map(|u| u.base.clone()),
            dead: self.dead.clone(),
            replaced: self.replaced.clone(),
            sent: None,
            at: crate::clock::rfc3339(now),
        }
    }

    /// Memory rebuilt from the journal at start (rule 9). A send that was out
    /// when the agent stopped is an unknown outcome: its quiet period runs
    /// from now.
    pub fn recover(entry: Entry, now: Duration) -> Memory {
        let mut mem = Memory {
            dead: entry.dead.clone(),
            replaced: entry.replaced.clone(),
            ..Memory::default()
        };
        if let Some(note) = entry.claim {
            // A send in doubt (out when the agent stopped, or whose answer
            // was lost before): its quiet period runs from now, whatever
            // the origin of this process's clock.
            if note.sent || note.attempts > 0 {
                mem.doubt_since = Some(now);
            }
            mem.claim = Some(Note {
                sent: false,
                ..note
            });
        } else if let Some(fp) = entry.sent {
            // A journal of the version before claims: the token with this
            // (short) fingerprint was at Snyk. Its claim is unknown; it is
            // retried once, like any unknown outcome.
            mem.claim = Some(Note {
                fp: format!("legacy:{fp}"),
                nonce: String::new(),
                attempts: 1,
                sent: false,
            });
            mem.doubt_since = Some(now);
        }
        if let Some(record) = entry.record {
            // The highest generation seen in the store: the base's. The
            // journaled record's own was never written (a chain rotated on
            // while the store refused writes runs ahead of it), and taking
            // it would read the store as rolled back.
            mem.generation = entry
                .base
                .as_ref()
                .map_or(record.generation, |b| b.generation);
            let base = entry.base.unwrap_or(Base {
                // Journaled before generations existed: it lands only over a
                // record no agent of this version has landed on since.
                fp: None,
                generation: 0,
                login: true,
                via: Vec::new(),
            });
            mem.unlanded = Some(Unlanded {
                record,
                base,
                journaled: true,
                fresh_login: false,
            });
        }
        mem
    }
}

/// What a refresh ended with; the broker publishes and schedules from it.
#[derive(Debug)]
pub enum Outcome {
    /// Snyk answered and the new refresh token is durable: the access token
    /// may be handed out. `landed`: in the store (else in the journal).
    Minted {
        access_token: Secret,
        expires_in: Duration,
        landed: bool,
    },
    /// Snyk answered, but neither the store nor the journal took the new
    /// refresh token: it is held in memory (`Memory::unlanded`) and the
    /// access token must not be handed out until [`land`] succeeds.
    NotDurable {
        access_token: Secret,
        expires_in: Duration,
    },
    /// Someone else moved the record (a landing, a login, a put): nothing
    /// was sent; read the cache or try again at once.
    Moved,
    /// Another agent holds a live claim: serve cached tokens and wait for
    /// its landing.
    Wait(String),
    /// Nothing was sent, or Snyk did not take it: try again after `after`.
    Later { after: Duration, why: Why },
    /// The stored token is dead at Snyk (the record says so).
    NeedsLogin(String),
    /// Snyk refused the request as malformed (a missing client secret):
    /// nothing was consumed, and nothing is sent again until a put or a
    /// login changes the record.
    Malformed(String),
    /// No credential (absent, or a tombstone).
    NotFound,
}

/// Why a refresh must wait.
#[derive(Debug)]
pub enum Why {
    Store(StoreError),
    Journal(String),
    Snyk(GrantError),
    /// Rule 6: a lost answer's quiet period is not over.
    Quiet,
    /// Rule 10: the store holds a lower generation than this agent has seen.
    RolledBack {
        stored: u64,
        seen: u64,
    },
}

/// How a landing went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landing {
    /// The store holds the successor.
    Landed,
    /// The store holds something newer (a rotation, a login, a tombstone):
    /// the successor was dropped, never revoked.
    Discarded,
    /// The store could not be read or written: still unlanded.
    Pending,
    /// Neither the store nor the journal took it ([`persist`] only): it is
    /// held in memory (`mem.unlanded`, not journaled) for a lander to make
    /// durable; never dropped (it may be the only copy of a secret).
    InMemory,
}

/// A refresh of the stored token (`put == None`), or the rotation of a
/// token given by `PUT /v1/credentials` (rule 8). A put's token that Snyk
/// refuses — now, or after a restart (the journal holds what it replaced)
/// — puts back the record it replaced ([`settle_put`]).
pub async fn refresh<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    put: Option<Record>,
) -> Outcome {
    let outcome = refresh_once(io, mem, rules, put).await;
    settle_put(io, mem, &outcome).await;
    outcome
}

async fn refresh_once<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    put: Option<Record>,
) -> Outcome {
    // 0. A successor of ours that the store does not hold yet lands first.
    if let Some(outcome) = land_first(io, mem, rules, put.is_some()).await {
        return outcome;
    }

    // 1. Read the record: the store is the arbiter, whatever the cache says.
    let (record, version) = match read_stored(io, mem, rules, put).await {
        Ok(read) => read,
        Err(outcome) => return outcome,
    };
    mem.generation = mem.generation.max(record.generation);
    // Our landing may have reached the store with only its answer lost.
    forget_if_landed(io, mem, &record).await;
    forget_replaced_unless_held(io, mem, &record).await;
    if mem.unlanded.is_some() {
        // Exclusive and the store still refuses the landing: rotate the chain.
        let why = StoreError::Unavailable("the store did not take the newest refresh token".into());
        return rotate_chain(io, mem, rules, why).await;
    }

    // 2. Decide: is the stored token ours to send now?
    let (token, attempts) = match decide(&record, version, mem, rules, io.mono()) {
        Decision::Send { token, attempts } => (token, attempts),
        Decision::NeedsLogin(why) => return mark_needs_login(io, mem, &record, version, why).await,
        Decision::Malformed(why) => return Outcome::Malformed(why),
        Decision::Wait(why) => return Outcome::Wait(why),
        Decision::Quiet(after) => {
            return Outcome::Later {
                after,
                why: Why::Quiet,
            };
        }
    };

    // 3. Claim it by check-and-set, then note the claim, then send.
    match claim(io, mem, rules, record, version, &token, attempts).await {
        Ok((record, version, deadline)) => {
            send_claimed(io, mem, rules, record, version, token, deadline).await
        }
        Err(outcome) => outcome,
    }
}

/// Step 0: a successor of ours that the store does not hold yet lands
/// first (I2: it is the newest token). Only an exclusive agent may go on
/// rotating from the journal while the store refuses writes (rule 7).
/// `Some`: the refresh stops here with that outcome (nothing was sent).
async fn land_first<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    putting: bool,
) -> Option<Outcome> {
    if mem.unlanded.is_some() {
        match land(io, mem, rules).await {
            Landing::Landed | Landing::Discarded | Landing::InMemory => {}
            Landing::Pending
                if rules.may_chain() && mem.unlanded.as_ref().is_some_and(|u| u.journaled) => {}
            Landing::Pending => {
                return Some(unavailable(
                    "the secret store has not taken the newest refresh token yet; nothing is sent until it does",
                ));
            }
        }
    }

    // A put replaces the stored chain and, if Snyk refuses its token, puts
    // back the record it replaced: our newest token must be that record, not
    // a successor only the journal holds (rule 7's chain), or it is lost.
    if putting && mem.unlanded.is_some() {
        return Some(unavailable(
            "the secret store has not taken the newest refresh token yet; the put waits until it does",
        ));
    }
    None
}

/// Step 1: the stored record and its version, to decide on — or the
/// outcome that ends the refresh here (a put's verdict, a record deleted
/// or gone back, rule 7's chain when the store cannot be read).
async fn read_stored<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    put: Option<Record>,
) -> Result<(Record, u64), Outcome> {
    let read = match io.read().await {
        Ok(r) => r,
        Err(e) if rules.may_chain() && mem.unlanded.is_some() => {
            // Rule 7: rotating on from the journal's chain.
            return Err(rotate_chain(io, mem, rules, e).await);
        }
        Err(e) => return Err(at_once(Why::Store(e))),
    };
    match (read, put) {
        (Some(v), None) if v.hidden => Err(unavailable(
            "the current version of this credential was deleted by another tool (bao kv delete): undelete it, or put the credential again",
        )),
        (Some(v), _) if v.record.generation < mem.generation => {
            // Rule 10: the store went back; what it holds may be spent.
            let (stored, seen) = (v.record.generation, mem.generation);
            Err(at_once(Why::RolledBack { stored, seen }))
        }
        // A put: what the given token means against the stored one.
        (Some(v), Some(given)) => put_verdict(io, mem, rules, v, given).await,
        (None, Some(given)) => Err(claim_given(io, mem, rules, given, None).await),
        (Some(v), None) if v.record.deleted => Err(Outcome::NotFound),
        (Some(v), None) => Ok((v.record, v.version)),
        (None, None) => Err(Outcome::NotFound),
    }
}

/// Nothing was sent: the store cannot be used as it is; try again at once.
pub(super) fn unavailable(why: &str) -> Outcome {
    at_once(Why::Store(StoreError::Unavailable(why.into())))
}

/// Nothing was sent; the caller may try again at once.
fn at_once(why: Why) -> Outcome {
    Outcome::Later {
        after: Duration::ZERO,
        why,
    }
}

/// After the read: when the stored record holds our unlanded successor,
/// our landing reached the store and only its answer was lost; the journal
/// entry goes.
async fn forget_if_landed<I: Io>(io: &mut I, mem: &mut Memory, record: &Record) {
    let landed_unseen = mem
        .unlanded
        .as_ref()
        .and_then(|u| u.record.refresh_token.as_ref())
        .is_some_and(|t| record.holds(&t.digest()));
    if landed_unseen {
        // Our landing reached the store; only its answer was lost.
        mem.unlanded = None;
        let _ = io.note(&mem.entry(io.wall())).await;
    }
}
