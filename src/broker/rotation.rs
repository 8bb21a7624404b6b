//! The rotation rule of SPEC §2, as one protocol a reviewer can check in one file.
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

use super::journal::{Base, Entry, Note};
use crate::secret::Secret;
use crate::snyk::{GrantError, TokenGrant};
use crate::store::{Claim, Record, RecordState, StoreError, Versioned};
use std::future::Future;
use std::time::{Duration, SystemTime};

/// Where claims live (SPEC §2 rules 3 and 7, and the KV v1 paragraph).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claims {
    /// In the store, by check-and-set before every send: the store arbitrates
    /// between agents (KV v2).
    Store,
    /// In this agent's journal only: the store is used by this agent alone
    /// (the file store, locked with `flock`).
    Journal,
    /// In the journal only, and nothing arbitrates between agents (KV v1):
    /// the Redis lock is the only guard. Start-up and `/v1/ready` warn.
    Unprotected,
}

/// Rules the protocol is run with.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub claims: Claims,
    /// Rule 7: may keep rotating with the journal as the durable copy while
    /// the store refuses writes (`store.exclusive`, always for the file store).
    pub exclusive: bool,
    /// A claimant sends only this long after taking its claim (monotonic).
    pub send_window: Duration,
    /// The longest a request to Snyk can take (the HTTP timeout).
    pub snyk_max: Duration,
    /// Rule 5: another agent's claim is taken over only after its version
    /// stayed unchanged this long on our own monotonic clock.
    pub takeover: Duration,
    /// Turns rules off, one at a time, to show the simulation notices.
    #[doc(hidden)]
    pub sabotage: Sabotage,
}

/// Rules a test may switch off (never in the agent).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Sabotage {
    pub no_claim_cas: bool,
    pub no_succession: bool,
    pub no_takeover_wait: bool,
}

impl Rules {
    /// Rules derived from Snyk's timeout: the takeover period is the send
    /// window + Snyk's maximum request time + a landing grace of two minutes.
    pub fn new(claims: Claims, exclusive: bool, snyk_timeout: Duration) -> Rules {
        let send_window = Duration::from_secs(10);
        Rules {
            claims,
            exclusive,
            send_window,
            snyk_max: snyk_timeout,
            takeover: send_window + snyk_timeout + Duration::from_secs(120),
            sabotage: Sabotage::default(),
        }
    }

    /// Rule 6: an unknown outcome is retried only after this quiet period,
    /// longer than Snyk's maximum request time.
    pub fn quiet(&self) -> Duration {
        self.snyk_max + self.snyk_max / 2 + Duration::from_secs(1)
    }
}

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
    /// Sends a refresh token to Snyk. Runs to completion once started.
    fn send(
        &mut self,
        token: &Secret,
        client_secret: Option<&Secret>,
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
            ..Memory::default()
        };
        if let Some(note) = entry.claim {
            if note.sent {
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
            mem.generation = record.generation;
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
    /// Neither the store nor the journal took it ([`persist`] only): it
    /// was dropped, and what it would have replaced is kept.
    Refused,
}

/// A refresh of the stored token (`put == None`), or the rotation of a
/// token given by `PUT /v1/credentials` (rule 8).
pub async fn refresh<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    put: Option<Record>,
) -> Outcome {
    // 0. A successor of ours that the store does not hold yet lands first
    //    (I2: it is the newest token). Only an exclusive agent may go on
    //    rotating from the journal while the store refuses writes (rule 7).
    if mem.unlanded.is_some() {
        match land(io, mem, rules).await {
            Landing::Landed | Landing::Discarded | Landing::Refused => {}
            Landing::Pending
                if rules.exclusive && mem.unlanded.as_ref().is_some_and(|u| u.journaled) => {}
            Landing::Pending => {
                return Outcome::Later {
                    after: Duration::ZERO,
                    why: Why::Store(StoreError::Unavailable(
                        "the secret store has not taken the newest refresh token yet; nothing is sent until it does".into(),
                    )),
                };
            }
        }
    }

    // 1. Read the record: the store is the arbiter, whatever the cache says.
    let read = match io.read().await {
        Ok(r) => r,
        Err(e) if rules.exclusive && mem.unlanded.is_some() => {
            // Rule 7: rotating on from the journal's chain.
            return rotate_chain(io, mem, rules, e).await;
        }
        Err(e) => {
            return Outcome::Later {
                after: Duration::ZERO,
                why: Why::Store(e),
            };
        }
    };
    let (record, version) = match (read, put) {
        (Some(v), None) if v.hidden => {
            return Outcome::Later {
                after: Duration::ZERO,
                why: Why::Store(StoreError::Unavailable(
                    "the current version of this credential was deleted by another tool (bao kv delete): undelete it, or put the credential again".into(),
                )),
            };
        }
        (Some(v), _) if v.record.generation < mem.generation => {
            // Rule 10: the store went back; what it holds may be spent.
            return Outcome::Later {
                after: Duration::ZERO,
                why: Why::RolledBack {
                    stored: v.record.generation,
                    seen: mem.generation,
                },
            };
        }
        (Some(v), Some(given)) => match decide_put(&v, &given) {
            PutDecision::AlreadyRotated => return Outcome::Moved,
            PutDecision::Hidden => {
                return Outcome::Later {
                    after: Duration::ZERO,
                    why: Why::Store(StoreError::Unavailable(
                        "the current version of this credential was deleted by another tool (bao kv delete): undelete it (bao kv undelete), or remove it for good (bao kv metadata delete), then put it again".into(),
                    )),
                };
            }
            PutDecision::Spent => {
                return Outcome::NeedsLogin(
                    "this refresh token was given to snykey before and has been used; the credential was deleted since".into(),
                );
            }
            PutDecision::Rotate => (v.record, v.version),
            PutDecision::Replace => return claim_given(io, mem, rules, given, Some(v)).await,
        },
        (None, Some(given)) => return claim_given(io, mem, rules, given, None).await,
        (Some(v), None) if v.record.deleted => return Outcome::NotFound,
        (Some(v), None) => (v.record, v.version),
        (None, None) => return Outcome::NotFound,
    };
    mem.generation = mem.generation.max(record.generation);
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
    if mem.unlanded.is_some() {
        // Exclusive and the store still refuses the landing: rotate the chain.
        let why = StoreError::Unavailable("the store did not take the newest refresh token".into());
        return rotate_chain(io, mem, rules, why).await;
    }

    // 2. Decide: is the stored token ours to send now?
    let (token, attempts) = match decide(&record, version, mem, rules, io.mono()) {
        Decision::Send { token, attempts } => (token, attempts),
        Decision::NeedsLogin(why) => return mark_needs_login(io, mem, &record, version, why).await,
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

/// What `PUT` of a refresh token R finds in the store (rule 8).
enum PutDecision {
    /// The record's `prev_fp` is R: it was rotated already; answer 200.
    AlreadyRotated,
    /// The record holds R: rotate it like any stored token (claims apply).
    Rotate,
    /// Anything else: store R (keeping nothing of the old chain) and rotate it.
    Replace,
    /// R was rotated before and the credential deleted since: it is spent.
    Spent,
    /// The current version was deleted by another tool: nothing can be
    /// known about claims on it.
    Hidden,
}

fn decide_put(stored: &Versioned, given: &Record) -> PutDecision {
    let Some(r) = given.refresh_token.as_ref().map(Secret::digest) else {
        return PutDecision::Replace;
    };
    if stored.hidden {
        // Its claim, if any, is hidden too: R may be at Snyk right now.
        return PutDecision::Hidden;
    }
    let spent_before =
        stored.record.prev_fp.as_deref() == Some(r.as_str()) || stored.record.put_fps.contains(&r);
    if stored.record.deleted && spent_before {
        PutDecision::Spent
    } else if stored.record.deleted {
        PutDecision::Replace
    } else if stored.record.holds(&r) && stored.record.needs_login().is_none() {
        PutDecision::Rotate
    } else if spent_before {
        PutDecision::AlreadyRotated
    } else {
        PutDecision::Replace
    }
}

/// Step 2's verdict.
enum Decision {
    Send { token: Secret, attempts: u32 },
    NeedsLogin(String),
    Wait(String),
    Quiet(Duration),
}

/// Step 2: may this agent send the stored token now, and as which attempt?
///
/// Invariant (I1): a token is sent only if (a) the record holds it and does
/// not say `needs_login`, (b) no other agent's claim on it is live — a
/// foreign claim is live until its version stayed unchanged for the takeover
/// period on our own clock — and (c) fewer than two sends of it may have
/// been consumed (the one permitted retry of an unknown outcome, after the
/// quiet period).
fn decide(
    record: &Record,
    version: u64,
    mem: &mut Memory,
    rules: &Rules,
    now: Duration,
) -> Decision {
    if let Some(why) = record.needs_login() {
        return Decision::NeedsLogin(why.to_string());
    }
    let Some(token) = record.refresh_token.clone() else {
        return Decision::NeedsLogin("no refresh token is stored".into());
    };
    let fp = token.digest();
    if mem.dead.as_deref() == Some(fp.as_str()) {
        return Decision::NeedsLogin("Snyk refused its refresh token".into());
    }
    // Sends of this token that may have consumed it, as far as we know.
    let in_doubt = match &record.claim {
        Some(c) if c.fp == fp && mem.claim.as_ref().is_some_and(|m| m.nonce == c.nonce) => {
            mem.claim.as_ref().map(|m| m.attempts).unwrap_or(c.attempts)
        }
        Some(c) if c.fp == fp && mem.pending.as_ref().is_some_and(|m| m.nonce == c.nonce) => {
            let attempts = mem
                .pending
                .as_ref()
                .map(|m| m.attempts)
                .unwrap_or(c.attempts);
            mem.claim = mem.pending.take();
            attempts
        }
        Some(c) if c.fp == fp => {
            // Another agent's claim (or ours from before a crash that lost
            // the journal: then it is foreign too, which is safe).
            let seen = mem
                .watch
                .as_ref()
                .filter(|w| w.version == version && w.nonce == c.nonce);
            let since = match seen {
                Some(w) => w.since,
                None => {
                    mem.watch = Some(Watch {
                        version,
                        nonce: c.nonce.clone(),
                        since: now,
                    });
                    now
                }
            };
            let quiet_for = now.saturating_sub(since);
            if quiet_for < rules.takeover && !rules.sabotage.no_takeover_wait {
                return Decision::Wait(format!(
                    "agent {} is refreshing this credential (claimed {}s ago by our clock; taken over after {}s)",
                    clean(&c.agent),
                    quiet_for.as_secs(),
                    rules.takeover.as_secs()
                ));
            }
            // Taken over: every send under that claim may have consumed it.
            c.attempts.max(1)
        }
        // No claim on this token in the store: only ours from the journal
        // can say it was sent (journal-only claims, or a legacy entry).
        _ => match &mem.claim {
            Some(m) if m.fp == fp => m.attempts,
            Some(m) if m.fp.starts_with("legacy:") && m.fp[7..] == token.fingerprint() => {
                m.attempts
            }
            _ => 0,
        },
    };
    match in_doubt {
        0 => Decision::Send { token, attempts: 1 },
        1 => {
            let since = mem.doubt_since.unwrap_or(Duration::ZERO);
            let due = since + rules.quiet();
            if mem.claim.as_ref().is_some_and(|m| m.fp == fp || m.fp.starts_with("legacy:")) && now < due {
                return Decision::Quiet(due - now);
            }
            Decision::Send { token, attempts: 2 }
        }
        _ => Decision::NeedsLogin(
            "two answers from Snyk to this refresh token were lost in transit; it may be spent, so it is not sent again".into(),
        ),
    }
}

/// Step 3: the claim. Invariant (rule 3): with store claims, a send follows
/// only this agent's own successful check-and-set on a version that holds
/// the token and carries the fresh nonce; the journal notes the nonce before
/// the send, so the claim is recognised as ours after a restart.
async fn claim<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    mut record: Record,
    mut version: u64,
    token: &Secret,
    attempts: u32,
) -> Result<(Record, u64, Duration), Outcome> {
    let deadline = io.mono() + rules.send_window;
    let nonce = io.nonce();
    let fp = token.digest();
    if rules.claims == Claims::Store && !rules.sabotage.no_claim_cas {
        record.claim = Some(Claim {
            fp: fp.clone(),
            nonce: nonce.clone(),
            agent: io.agent(),
            attempts,
            deadline: crate::clock::rfc3339(io.wall() + rules.send_window),
        });
        mem.pending = Some(Note {
            fp: fp.clone(),
            nonce: nonce.clone(),
            attempts: attempts.saturating_sub(1),
            sent: false,
        });
        match io.write(&record, version).await {
            Ok(v) => version = v,
            // Someone else moved: re-read, never send.
            Err(StoreError::Conflict { .. }) => return Err(Outcome::Moved),
            Err(e) => {
                return Err(Outcome::Later {
                    after: Duration::ZERO,
                    why: Why::Store(e),
                });
            }
        }
    }
    mem.watch = None;
    mem.pending = None;
    mem.claim = Some(Note {
        fp,
        nonce,
        attempts,
        sent: true,
    });
    if let Err(e) = io.note(&mem.entry(io.wall())).await {
        // Not noted: not sent. The claim stays ours in memory.
        if let Some(c) = mem.claim.as_mut() {
            c.sent = false;
            c.attempts = attempts.saturating_sub(1);
        }
        return Err(Outcome::Later {
            after: Duration::ZERO,
            why: Why::Journal(e),
        });
    }
    Ok((record, version, deadline))
}

/// `PUT` (rule 8): store the given token R first — with a claim, by
/// check-and-set or create-if-absent — then rotate it.
async fn claim_given<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    mut given: Record,
    current: Option<Versioned>,
) -> Outcome {
    let Some(token) = given.refresh_token.clone() else {
        return Outcome::NeedsLogin("no refresh token was given".into());
    };
    let (generation, cas) = match &current {
        Some(v) => (v.record.generation, v.version),
        None => (mem.generation, 0),
    };
    if let Some(v) = &current {
        given.remember_puts(&v.record.put_fps);
    }
    given.remember_puts(&[token.digest()]);
    given.generation = generation.max(mem.generation) + 1;
    given.prev_fp = None;
    given.state = None;
    given.claim = None;
    given.deleted = false;
    let deadline = io.mono() + rules.send_window;
    let nonce = io.nonce();
    let fp = token.digest();
    if rules.claims == Claims::Store {
        given.claim = Some(Claim {
            fp: fp.clone(),
            nonce: nonce.clone(),
            agent: io.agent(),
            attempts: 1,
            deadline: crate::clock::rfc3339(io.wall() + rules.send_window),
        });
    }
    mem.pending = Some(Note {
        fp: fp.clone(),
        nonce: nonce.clone(),
        attempts: 0,
        sent: false,
    });
    let version = match io.write(&given, cas).await {
        Ok(v) => v,
        Err(StoreError::Conflict { .. }) => return Outcome::Moved,
        Err(e) => {
            return Outcome::Later {
                after: Duration::ZERO,
                why: Why::Store(e),
            };
        }
    };
    // Stored: a new chain, and what we knew of the old one no longer applies.
    mem.doubt_since = None;
    mem.dead = None;
    mem.unlanded = None;
    mem.watch = None;
    mem.generation = given.generation;
    mem.pending = None;
    mem.claim = Some(Note {
        fp,
        nonce,
        attempts: 1,
        sent: true,
    });
    if let Err(e) = io.note(&mem.entry(io.wall())).await {
        if let Some(c) = mem.claim.as_mut() {
            c.sent = false;
            c.attempts = 0;
        }
        return Outcome::Later {
            after: Duration::ZERO,
            why: Why::Journal(e),
        };
    }
    send_claimed(io, mem, rules, given, version, token, deadline).await
}

/// Rule 7: an exclusive agent rotates the journal's newest token while the
/// store refuses writes. The chain keeps its base, so the newest token
/// lands over the last one the store held once writes return.
async fn rotate_chain<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    why: StoreError,
) -> Outcome {
    let Some(u) = mem.unlanded.clone().filter(|u| u.journaled) else {
        return Outcome::Later {
            after: Duration::ZERO,
            why: Why::Store(why),
        };
    };
    let Some(token) = u.record.refresh_token.clone() else {
        return Outcome::NeedsLogin("no refresh token is journaled".into());
    };
    let attempts = match decide(
        &Record {
            claim: None,
            ..u.record.clone()
        },
        0,
        mem,
        rules,
        io.mono(),
    ) {
        Decision::Send { attempts, .. } => attempts,
        Decision::NeedsLogin(why) => return Outcome::NeedsLogin(why),
        Decision::Wait(why) => return Outcome::Wait(why),
        Decision::Quiet(after) => {
            return Outcome::Later {
                after,
                why: Why::Quiet,
            };
        }
    };
    let deadline = io.mono() + rules.send_window;
    let nonce = io.nonce();
    mem.claim = Some(Note {
        fp: token.digest(),
        nonce,
        attempts,
        sent: true,
    });
    if let Err(e) = io.note(&mem.entry(io.wall())).await {
        if let Some(c) = mem.claim.as_mut() {
            c.sent = false;
            c.attempts = attempts.saturating_sub(1);
        }
        return Outcome::Later {
            after: Duration::ZERO,
            why: Why::Journal(e),
        };
    }
    send_claimed(io, mem, rules, u.record, 0, token, deadline).await
}

/// Steps 4-6: send the claimed token within the send window, then handle
/// Snyk's answer (rule 6) and land a new token by succession (rule 4).
async fn send_claimed<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    record: Record,
    version: u64,
    token: Secret,
    deadline: Duration,
) -> Outcome {
    // 4. Never after the send window: a claimant paused past it may have
    //    been overtaken.
    if io.mono() > deadline {
        undo_attempt(mem);
        let _ = io.note(&mem.entry(io.wall())).await;
        return Outcome::Moved;
    }
    let answer = io.send(&token, record.client_secret.as_ref()).await;
    match answer {
        // 5a. Snyk rotated: the sent token is dead, the new one must become
        //     durable before the access token is handed out (I2).
        Ok(grant) => {
            let Some(successor) = grant.refresh_token else {
                return answered_without_successor(io, mem, &record, version).await;
            };
            let base = match mem.unlanded.take() {
                // Rotating a journaled chain: the base stays the last stored
                // token, and the chain remembers the token just sent.
                Some(mut u) => {
                    u.base.via.push(token.digest());
                    u.base
                }
                None => Base {
                    fp: Some(token.digest()),
                    generation: record.generation,
                    login: false,
                    via: Vec::new(),
                },
            };
            let next = Record {
                refresh_token: Some(successor),
                updated_at: Some(crate::clock::rfc3339(io.wall())),
                generation: record.generation + 1,
                prev_fp: Some(token.digest()),
                state: None,
                claim: None,
                deleted: false,
                ..record
            };
            mem.claim = None;
            mem.doubt_since = None;
            mem.unlanded = Some(Unlanded {
                record: next,
                base,
                journaled: false,
                fresh_login: false,
            });
            // The journal first (fsync): it survives a crash mid-landing.
            let journaled = io.note(&mem.entry(io.wall())).await.is_ok();
            if let Some(u) = mem.unlanded.as_mut() {
                u.journaled = journaled;
            }
            let landing = land(io, mem, rules).await;
            match landing {
                Landing::Landed => Outcome::Minted {
                    access_token: grant.access_token,
                    expires_in: grant.expires_in,
                    landed: true,
                },
                // A newer login or rotation won: ours is not the newest token,
                // and its access token is not handed out.
                Landing::Discarded => Outcome::Moved,
                Landing::Pending if journaled => Outcome::Minted {
                    access_token: grant.access_token,
                    expires_in: grant.expires_in,
                    landed: false,
                },
                Landing::Pending | Landing::Refused => Outcome::NotDurable {
                    access_token: grant.access_token,
                    expires_in: grant.expires_in,
                },
            }
        }
        // 5b. Snyk refused the token for good: needs_login, in the record.
        Err(e @ GrantError::Permanent { .. }) => {
            let lost_before = mem.claim.as_ref().is_some_and(|c| c.attempts > 1);
            let why = if lost_before {
                format!(
                    "{e}; an earlier answer from Snyk to this token was lost in transit and most likely rotated it"
                )
            } else {
                e.to_string()
            };
            bury(mem, &token, &why);
            let _ = io.note(&mem.entry(io.wall())).await;
            mark_needs_login(io, mem, &record, version, why).await
        }
        // 5c. Snyk answered with an error that did not consume the token:
        //     release the claim if nothing else is in doubt; retry later,
        //     each time under a fresh claim.
        Err(e) if e.token_not_consumed() => {
            undo_attempt(mem);
            let doubt = mem.claim.as_ref().map(|c| c.attempts).unwrap_or(0);
            if doubt == 0 {
                mem.claim = None;
                if rules.claims == Claims::Store && version != 0 {
                    let mut released = record.clone();
                    released.claim = None;
                    let _ = io.write(&released, version).await;
                }
            }
            let _ = io.note(&mem.entry(io.wall())).await;
            let after = e.retry_after().unwrap_or(Duration::ZERO);
            Outcome::Later {
                after,
                why: Why::Snyk(e),
            }
        }
        // 5d. Unknown outcome (timeout, dropped connection, a gateway page):
        //     the token may be spent. It stays claimed, and is retried at most
        //     once across all agents, after the quiet period.
        Err(e) => {
            if let Some(c) = mem.claim.as_mut() {
                c.sent = false;
            }
            mem.doubt_since = Some(io.mono());
            let _ = io.note(&mem.entry(io.wall())).await;
            Outcome::Later {
                after: rules.quiet(),
                why: Why::Snyk(e),
            }
        }
    }
}

/// The last send did not happen, or Snyk answered that it did not consume
/// the token: it no longer counts as in doubt.
fn undo_attempt(mem: &mut Memory) {
    if let Some(c) = mem.claim.as_mut() {
        c.sent = false;
        c.attempts = c.attempts.saturating_sub(1);
    }
}

/// A 200 without a refresh token: the sent token is spent and nothing
/// continues the chain.
async fn answered_without_successor<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    record: &Record,
    version: u64,
) -> Outcome {
    let why = "Snyk accepted the refresh token but its answer carried no new one";
    if let Some(t) = record.refresh_token.as_ref() {
        bury(mem, t, why);
    }
    let _ = io.note(&mem.entry(io.wall())).await;
    mark_needs_login(io, mem, record, version, why.into()).await
}

/// Snyk refused `token` for good: remember it, and if it is the head of a
/// journaled chain, the chain lands as `needs_login` (so that no agent ever
/// sends the dead token it holds).
fn bury(mem: &mut Memory, token: &Secret, why: &str) {
    let digest = token.digest();
    mem.dead = Some(digest.clone());
    mem.claim = None;
    mem.doubt_since = None;
    if let Some(u) = mem.unlanded.as_mut().filter(|u| u.record.holds(&digest)) {
        u.record.state = Some(RecordState::needs_login(why));
        u.record.claim = None;
    }
}

/// Writes `needs_login` into the record (rule 5), by check-and-set on a
/// version that still holds the dead token, so every agent sees it; a later
/// landing or login clears it.
async fn mark_needs_login<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    record: &Record,
    version: u64,
    why: String,
) -> Outcome {
    if record.needs_login().is_none() && version != 0 {
        let mut marked = record.clone();
        marked.state = Some(RecordState::needs_login(&why));
        marked.claim = None;
        match io.write(&marked, version).await {
            // The record says it now: every agent sees it.
            Ok(_) => {
                if mem.unlanded.is_none() && mem.claim.is_none() {
                    mem.dead = None;
                    let _ = io.note(&mem.entry(io.wall())).await;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not write needs_login into the record; the journal remembers the dead token");
            }
        }
    }
    Outcome::NeedsLogin(why)
}

/// Rule 4: lands `mem.unlanded` by succession. Invariant: a successor is
/// written only over its own predecessor (the stored token is the base it
/// was minted from), by check-and-set on the version just read, with the
/// claim cleared and `generation` one up; a login lands unless a newer
/// login or rotation landed since it was journaled. Anything else
/// discards it — zeroized and logged, never revoked.
pub async fn land<I: Io>(io: &mut I, mem: &mut Memory, rules: &Rules) -> Landing {
    for _ in 0..3 {
        let Some(u) = mem.unlanded.clone() else {
            return Landing::Landed;
        };
        let current = match io.read().await {
            Ok(c) => c,
            Err(_) => {
                if let Some(u) = mem.unlanded.as_mut() {
                    u.fresh_login = false;
                }
                return Landing::Pending;
            }
        };
        let mut u = u;
        if u.fresh_login {
            // A fresh login replaces whatever is stored now.
            let now_at = current.as_ref().map(|c| c.record.generation).unwrap_or(0);
            u.base.generation = u.base.generation.max(now_at);
            if let Some(m) = mem.unlanded.as_mut() {
                m.base.generation = u.base.generation;
            }
        }
        if current.as_ref().is_some_and(|c| c.hidden) && !u.fresh_login {
            // Deleted by another tool, not by us: keep ours until that is
            // undone (only a login a human just made writes over it).
            return Landing::Pending;
        }
        let verdict = succession(current.as_ref(), &u, rules);
        let (record, cas) = match verdict {
            Verdict::AlreadyThere => {
                finish_landing(io, mem, u.record.generation).await;
                return Landing::Landed;
            }
            Verdict::Discard => {
                tracing::warn!(
                    "a newer refresh token, login or delete reached the secret store first; dropping ours (not revoked)"
                );
                mem.unlanded = None;
                let _ = io.note(&mem.entry(io.wall())).await;
                return Landing::Discarded;
            }
            Verdict::Write { generation, cas } => {
                let mut record = u.record.clone();
                record.generation = generation.max(record.generation);
                record.claim = None;
                // The put history survives every landing, a login's too.
                if let Some(cur) = &current {
                    let mut merged = cur.record.put_fps.clone();
                    merged.retain(|fp| !record.put_fps.contains(fp));
                    merged.extend(record.put_fps.iter().cloned());
                    record.put_fps = Vec::new();
                    record.remember_puts(&merged);
                }
                (record, cas)
            }
        };
        match io.write(&record, cas).await {
            Ok(_) => {
                finish_landing(io, mem, record.generation).await;
                return Landing::Landed;
            }
            // Moved under us (or our write landed and its answer was lost):
            // read again and decide again.
            Err(StoreError::Conflict { .. }) => continue,
            Err(_) => {
                // The write may have been applied: the next landing attempt
                // reads and finds it there (AlreadyThere) or not.
                if let Some(u) = mem.unlanded.as_mut() {
                    u.fresh_login = false;
                }
                return Landing::Pending;
            }
        }
    }
    Landing::Pending
}

async fn finish_landing<I: Io>(io: &mut I, mem: &mut Memory, generation: u64) {
    mem.generation = mem.generation.max(generation);
    mem.unlanded = None;
    let _ = io.note(&mem.entry(io.wall())).await;
}

enum Verdict {
    AlreadyThere,
    Discard,
    Write { generation: u64, cas: u64 },
}

/// May `u` land over what the store holds now?
fn succession(current: Option<&Versioned>, u: &Unlanded, rules: &Rules) -> Verdict {
    let ours = u.record.refresh_token.as_ref().map(Secret::digest);
    let Some(cur) = current else {
        // Absent: only a first login (or a secret of a new record) creates it.
        return if (u.base.generation == 0 || u.fresh_login) && (u.base.login || u.base.fp.is_none())
        {
            Verdict::Write {
                generation: 1,
                cas: 0,
            }
        } else {
            Verdict::Discard
        };
    };
    let rec = &cur.record;
    if let Some(ours) = &ours {
        if rec.holds(ours) && !rec.deleted {
            return Verdict::AlreadyThere;
        }
    }
    let next = Verdict::Write {
        generation: rec.generation + 1,
        cas: cur.version,
    };
    if !rec.deleted && u.base.via.iter().any(|fp| rec.holds(fp)) {
        // The store holds a token of our own chain (its landing's answer was lost).
        return next;
    }
    if u.base.login {
        // A login replaces whatever is stored (a tombstone too: a login after
        // a delete manages the credential again), unless something newer
        // landed since it was journaled.
        return if rec.generation <= u.base.generation || rules.sabotage.no_succession {
            next
        } else {
            Verdict::Discard
        };
    }
    if rec.deleted {
        return Verdict::Discard;
    }
    if rules.sabotage.no_succession {
        return next;
    }
    match &u.base.fp {
        Some(base) if rec.holds(base) => next,
        // A secret (no refresh token): lands if nothing landed since.
        None if rec.generation == u.base.generation => next,
        _ => Verdict::Discard,
    }
}

/// Journals a successor that needs no send (a login's token, a new client
/// secret) and lands it: the same persist-before-publish path as a refresh.
pub async fn persist<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    record: Record,
    base: Base,
) -> Landing {
    if base.login {
        // A login starts a new chain.
        mem.claim = None;
        mem.pending = None;
        mem.doubt_since = None;
        mem.dead = None;
        mem.watch = None;
    }
    let fresh_login = base.login;
    // What it replaces stays until the new record is durable: a login that
    // neither the journal nor the store takes must not cost the old chain.
    let previous = mem.unlanded.take();
    mem.unlanded = Some(Unlanded {
        record,
        base,
        journaled: false,
        fresh_login,
    });
    let journaled = io.note(&mem.entry(io.wall())).await.is_ok();
    if let Some(u) = mem.unlanded.as_mut() {
        u.journaled = journaled;
    }
    let landing = land(io, mem, rules).await;
    if landing == Landing::Pending && !journaled {
        mem.unlanded = previous;
        let _ = io.note(&mem.entry(io.wall())).await;
        return Landing::Refused;
    }
    landing
}

/// Rule 10: a tombstone by check-and-set (so a landing in flight cannot
/// bring the credential back), then the caller removes the record.
pub async fn tombstone<I: Io>(io: &mut I, mem: &mut Memory) -> Result<(), StoreError> {
    for _ in 0..3 {
        let Some(cur) = io.read().await? else {
            break;
        };
        let stone = Record {
            kind: cur.record.kind,
            generation: cur.record.generation.max(mem.generation) + 1,
            // Spent put tokens stay known: putting one again is refused.
            put_fps: cur.record.put_fps.clone(),
            prev_fp: cur
                .record
                .refresh_token
                .as_ref()
                .map(Secret::digest)
                .or(cur.record.prev_fp.clone()),
            deleted: true,
            updated_at: Some(crate::clock::rfc3339(io.wall())),
            ..Default::default()
        };
        match io.write(&stone, cur.version).await {
            Ok(_) => {
                mem.generation = stone.generation;
                break;
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    mem.claim = None;
    mem.pending = None;
    mem.unlanded = None;
    mem.watch = None;
    mem.doubt_since = None;
    let _ = io.note(&mem.entry(io.wall())).await;
    Ok(())
}

/// An agent id from a record, printable and short.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(80).collect()
}
