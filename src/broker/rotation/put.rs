//! Rule 8, `PUT` of a credential: what the given token means against the
//! stored one, the put's own first write (with a claim), and the rule that
//! a put Snyk refuses changes nothing — the record it replaced is journaled
//! before that write and put back when Snyk refuses (after a restart too).

use super::*;
/// What `PUT` of a refresh token R finds in the store (rule 8).
pub(super) enum PutDecision {
    /// The record's `prev_fp` is R: it was rotated already; answer 200.
    AlreadyRotated,
    /// The record holds R: rotate it like any stored token (claims apply).
    Rotate,
    /// Anything else: store R (keeping nothing of the old chain) and rotate it.
    Replace,
    /// R was rotated before and the credential deleted since: it is spent.
    Spent,
    /// The record holds R and says `needs_login`: Snyk refused R, or two
    /// answers to it were lost (it may be spent). Sending it again could be
    /// a replay, so the put changes nothing.
    Refused,
    /// The current version was deleted by another tool: nothing can be
    /// known about claims on it.
    Hidden,
    /// The stored token (not R) is under a claim: wait for its landing.
    Claimed,
}

pub(super) fn decide_put(stored: &Versioned, given: &Record) -> PutDecision {
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
    } else if stored.record.holds(&r) {
        PutDecision::Refused
    } else if spent_before {
        PutDecision::AlreadyRotated
    } else if stored.record.claim.is_some() {
        // An agent may be sending the stored token right now: its successor
        // would be discarded in R's favour, and if Snyk then refuses R
        // nothing live is left. The put waits for that landing.
        PutDecision::Claimed
    } else {
        PutDecision::Replace
    }
}

/// A put of the stored token R (rule 8's "rotate it like any stored
/// token"): the stored record, with what the put adds to it — the client
/// secret a record written by the seed service lacks (it holds only the
/// refresh token), the kind, and the region when the put names one (one
/// that names none keeps the stored region: the token was issued there).
pub(super) fn adopt(stored: &Record, given: Record) -> Record {
    let mut record = stored.clone();
    if given.client_secret.is_some() {
        record.client_secret = given.client_secret;
    }
    if given.api_url.is_some() {
        record.api_url = given.api_url;
    }
    record.kind = given.kind.or(record.kind);
    record
}

/// Step 1 for a put ([`decide_put`]): `Ok` when the stored record holds the
/// given token and is rotated as a refresh would — with what the put adds
/// to it ([`adopt`]); otherwise the put's outcome (a replacement goes
/// through [`claim_given`]).
pub(super) async fn put_verdict<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    v: Versioned,
    given: Record,
) -> Result<(Record, u64), Outcome> {
    let decision = match decide_put(&v, &given) {
        PutDecision::Claimed if rules.sabotage.put_over_live_claim => PutDecision::Replace,
        PutDecision::AlreadyRotated | PutDecision::Spent if rules.sabotage.put_forgets_history => {
            PutDecision::Replace
        }
        d => d,
    };
    match decision {
        PutDecision::AlreadyRotated => Err(Outcome::Moved),
        PutDecision::Hidden => Err(unavailable(
            "the current version of this credential was deleted by another tool (bao kv delete): undelete it (bao kv undelete), or remove it for good (bao kv metadata delete), then put it again",
        )),
        PutDecision::Claimed => Err(Outcome::Wait(
            "another agent is rotating the stored token; the put waits for its landing".into(),
        )),
        PutDecision::Spent => Err(Outcome::NeedsLogin(
            "this refresh token was given to snykey before and has been used; the credential was deleted since".into(),
        )),
        PutDecision::Refused => Err(Outcome::NeedsLogin(
            "Snyk already refused this refresh token (the stored credential says needs_login); it is not sent again: log in again or put a new one".into(),
        )),
        PutDecision::Rotate => {
            let adopted = adopt(&v.record, given);
            if request_shape(&adopted) != request_shape(&v.record) {
                // A put that adds to the stored record (a client secret):
                // what it was is journaled before the claim writes the
                // addition, and goes back if Snyk refuses the request.
                let generation = v.record.generation;
                remember_replaced(io, mem, &v.record, &adopted, generation).await?;
            }
            Ok((adopted, v.version))
        }
        PutDecision::Replace => Err(claim_given(io, mem, rules, given, Some(v)).await),
    }
}

/// `PUT` (rule 8): store the given token R first — with a claim, by
/// check-and-set or create-if-absent — then rotate it.
pub(super) async fn claim_given<I: Io>(
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
    if let Some(v) = current.as_ref().filter(|v| !v.record.deleted && !v.hidden) {
        // What R replaces is journaled first: if Snyk refuses R, it goes
        // back, even after a crash between this write and that answer.
        let planned = generation.max(mem.generation) + 1;
        if let Err(o) = remember_replaced(io, mem, &v.record, &given, planned).await {
            return o;
        }
    }
    let (deadline, nonce, fp) = stamp_given(io, mem, rules, &mut given, current.as_ref(), &token);
    mem.pending = Some(Note {
        fp: fp.clone(),
        nonce: nonce.clone(),
        attempts: 0,
        sent: false,
    });
    let version = match io.write(&given, cas).await {
        Ok(v) => v,
        Err(StoreError::Conflict { .. }) => match after_conflict(io, mem, &fp, &nonce).await {
            Ok(v) => v,
            Err(o) => return o,
        },
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
    if let Err(o) = note_claim(io, mem).await {
        return o;
    }
    // Snyk's answer; a refusal puts the replaced record back ([`settle_put`]).
    send_claimed(io, mem, rules, given, version, token, deadline).await
}

/// The put's write answered Conflict. With several OpenBao nodes, a write
/// retried after a lost answer may have been applied by its first attempt
/// (the retry's check-and-set then conflicts with it): the store holding R
/// under this put's claim nonce is this put's write, and the put goes on
/// with the version read (`Ok`). Otherwise nothing was replaced: the
/// record journaled as replaced must not be put back over R stored by
/// another agent's put (it may be older than what that put replaced), and
/// is forgotten — in the journal too, or the put is retried (a restart
/// would bring the stale entry back). An unreadable store decides nothing:
/// the replaced record stays (docs/protocol.md rule 8).
async fn after_conflict<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    fp: &str,
    nonce: &str,
) -> Result<u64, Outcome> {
    match io.read().await {
        Ok(Some(v))
            if !v.hidden
                && v.record.holds(fp)
                && v.record.claim.as_ref().is_some_and(|c| c.nonce == nonce) =>
        {
            return Ok(v.version);
        }
        Ok(_) => {}
        Err(e) => return Err(at_once(Why::Store(e))),
    }
    if mem.replaced.take().is_some() {
        if let Err(e) = io.note(&mem.entry(io.wall())).await {
            return Err(at_once(Why::Journal(e)));
        }
    }
    Err(Outcome::Moved)
}

/// The record a put stores: the given token R as a new chain one
/// generation above everything seen, its put history carried over, and
/// (with claims in the store) R's claim. Returns the claim's send
/// deadline, its nonce and R's fingerprint.
fn stamp_given<I: Io>(
    io: &mut I,
    mem: &Memory,
    rules: &Rules,
    given: &mut Record,
    current: Option<&Versioned>,
    token: &Secret,
) -> (Duration, String, String) {
    let generation = current.map_or(mem.generation, |v| v.record.generation);
    if let Some(v) = current {
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
    (deadline, nonce, fp)
}

/// Journals what a put is about to change (`previous`, the stored record)
/// before the put's own store write, beside the put's token R: a put Snyk
/// refuses changes nothing ([`settle_put`]), and a crash between the write
/// and Snyk's answer is recovered from the journal. Nothing is written to
/// the store when the journal refuses.
pub(super) async fn remember_replaced<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    previous: &Record,
    put: &Record,
    generation: u64,
) -> Result<(), Outcome> {
    let Some(by) = put.refresh_token.as_ref().map(Secret::digest) else {
        return Ok(());
    };
    // A token that was under a claim may be spent: never put back. With
    // claims in the journal only (the file store, KV v1), the claim is this
    // agent's own note: a send of the stored token in doubt (a legacy note
    // names it by its short fingerprint, as step 2 reads it). A token Snyk
    // refused (`mem.dead`) is never put back either.
    let doubted = previous.refresh_token.as_ref().is_some_and(|t| {
        mem.claim.as_ref().is_some_and(|c| note_names(c, t))
            || mem.dead.as_deref() == Some(t.digest().as_str())
    });
    if previous.claim.is_some() || doubted {
        return Ok(());
    }
    mem.replaced = Some(Replaced {
        record: previous.clone(),
        by,
        generation: Some(generation),
    });
    match io.note(&mem.entry(io.wall())).await {
        Ok(()) => Ok(()),
        Err(e) => {
            mem.replaced = None;
            Err(Outcome::Later {
                after: Duration::ZERO,
                why: Why::Journal(e),
            })
        }
    }
}

/// After a refresh: did Snyk refuse a put's token R (`needs_login`, when
/// the put replaced another token), or the put's request (malformed, a
/// wrong client secret: `Malformed`)? Then the record the put replaced
/// goes back ([`restore`]): a refused put changes nothing. Snyk's refusal
/// may come after a restart (the journal kept `replaced`): the same rule.
/// The journaled record is dropped once it is back, or once nothing can
/// bring it back (the store moved on from R).
pub(super) async fn settle_put<I: Io>(io: &mut I, mem: &mut Memory, outcome: &Outcome) {
    let Some(r) = mem.replaced.clone() else {
        return;
    };
    let refused = match outcome {
        Outcome::Malformed(_) => true,
        // A put that kept the stored token (it added a secret): the token
        // itself is dead, and putting the record back would send it again.
        Outcome::NeedsLogin(_) => !r.record.holds(&r.by),
        _ => false,
    };
    if !refused {
        return;
    }
    if restore(io, mem, &r.by, r.generation, r.record).await != Restore::Failed {
        mem.replaced = None;
        let _ = io.note(&mem.entry(io.wall())).await;
    }
}

/// After step 1's read: a put's replaced record whose R the store no longer
/// holds (the put's write never happened, or the chain moved on) can never
/// go back; it is forgotten.
pub(super) async fn forget_replaced_unless_held<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    record: &Record,
) {
    if mem.replaced.as_ref().is_some_and(|r| !record.holds(&r.by)) {
        mem.replaced = None;
        let _ = io.note(&mem.entry(io.wall())).await;
    }
}

/// Is the claim on the stored record this put's own? Ours by nonce, or —
/// once Snyk refused R, [`bury`] clears `mem.claim` and a failed
/// `needs_login` write leaves the claim in the store — this agent's claim
/// on the refused token R (or on the token `mem.dead` names). Snyk refused
/// that token for good, so no send under it can have rotated it (I1), and
/// writing over it drops nothing (I2).
fn own_claim<I: Io>(io: &I, mem: &Memory, c: &Claim, refused: &str) -> bool {
    mem.claim.as_ref().is_some_and(|m| m.nonce == c.nonce)
        || (c.agent == io.agent()
            && (c.fp == refused || mem.dead.as_deref() == Some(c.fp.as_str())))
}

/// How a [`restore`] went.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Restore {
    Restored,
    /// The store no longer holds the refused token (or the previous record
    /// was under a claim): nothing to put back.
    Moot,
    /// The store could not be read or written, or another claim is on
    /// the record that holds R: try again later.
    Failed,
}

/// Puts back `previous` over a record that still holds the refused token
/// `refused` (a SHA-256; check-and-set on the version read now; the
/// previous token was never sent, or — a put that only added a client
/// secret — Snyk refused the request without consuming it).
pub(super) async fn restore<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    refused: &str,
    put_generation: Option<u64>,
    mut previous: Record,
) -> Restore {
    let cur = match io.read().await {
        Ok(Some(cur)) => cur,
        Ok(None) => return Restore::Moot,
        Err(_) => return Restore::Failed,
    };
    if !cur.record.holds(refused) || cur.hidden || previous.claim.is_some() {
        // A token that was under a claim may be spent: not put back.
        return Restore::Moot;
    }
    if put_generation.is_some_and(|g| g != cur.record.generation) {
        // The token is stored by another agent's put (or this put's write
        // never happened): what this put journaled may be older than what
        // that put replaced.
        return Restore::Moot;
    }
    if cur
        .record
        .claim
        .as_ref()
        .is_some_and(|c| !own_claim(io, mem, c, refused))
    {
        // A claim that is not this put's own, on the record this put wrote
        // (same generation, still R). Writing over it could make its
        // holder's landing fail, dropping what Snyk gave it (I2); forgetting
        // the replaced record would lose the previous token, never sent
        // (I2). Neither: keep it and try again once that claim landed
        // (the store moves on from R: then moot) or is taken over. An
        // unknown claim is never provably someone else's live send of
        // another token, so it is never read as moot (docs/protocol.md
        // rule 8).
        return Restore::Failed;
    }
    previous.generation = cur.record.generation.max(mem.generation) + 1;
    previous.claim = None;
    // Refused, never rotated: putting it again is not "already rotated".
    let history: Vec<String> = cur
        .record
        .put_fps
        .iter()
        .filter(|fp| *fp != refused)
        .cloned()
        .collect();
    previous.put_fps.retain(|fp| fp != refused);
    previous.remember_puts(&history);
    match io.write(&previous, cur.version).await {
        Ok(_) => {
            mem.generation = previous.generation;
            mem.dead = None;
            mem.claim = None;
            let _ = io.note(&mem.entry(io.wall())).await;
            Restore::Restored
        }
        // Moved since the read: whatever is there now is newer than R.
        Err(StoreError::Conflict { .. }) => Restore::Moot,
        Err(_) => Restore::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// One credential's record versions, this agent's journal, and a Snyk
    /// that refuses every refresh token for good (`invalid_grant`).
    struct World {
        versions: Vec<Record>,
        journal: Option<Entry>,
        nonces: u64,
        /// What the next store writes do (then: taken).
        writes: Vec<Fault>,
        journal_down: bool,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Fault {
        None,
        /// Not applied (the store is down for a moment).
        Down,
        /// Applied, but answered as a check-and-set conflict (a retry
        /// after a lost answer, on another OpenBao node).
        AppliedConflict,
        /// Another agent's put of "q" lands first (then the journal fills up).
        Foreign,
    }

    impl Io for World {
        fn mono(&self) -> Duration {
            Duration::from_secs(1_000)
        }
        fn wall(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
        }
        fn nonce(&mut self) -> String {
            self.nonces += 1;
            format!("{:032x}", self.nonces)
        }
        fn agent(&self) -> String {
            "host-a".into()
        }
        async fn read(&mut self) -> Result<Option<Versioned>, StoreError> {
            Ok(self.versions.last().map(|r| Versioned {
                record: r.clone(),
                version: self.versions.len() as u64,
                hidden: false,
            }))
        }
        async fn write(&mut self, record: &Record, cas: u64) -> Result<u64, StoreError> {
            let fault = if self.writes.is_empty() {
                Fault::None
            } else {
                self.writes.remove(0)
            };
            if fault == Fault::Down {
                return Err(StoreError::Unavailable("down".into()));
            }
            if fault == Fault::Foreign {
                self.versions.push(token("q"));
                self.journal_down = true;
            }
            if cas != self.versions.len() as u64 {
                return Err(StoreError::Conflict { expected: cas });
            }
            self.versions.push(record.clone());
            match fault {
                Fault::AppliedConflict => Err(StoreError::Conflict { expected: cas }),
                _ => Ok(self.versions.len() as u64),
            }
        }
        async fn note(&mut self, entry: &Entry) -> Result<(), String> {
            if self.journal_down {
                return Err("disk full".into());
            }
            self.journal = Some(entry.clone());
            Ok(())
        }
        async fn send(
            &mut self,
            _: &Secret,
            _: &Record,
            _: Duration,
        ) -> Result<TokenGrant, GrantError> {
            Err(GrantError::Permanent {
                error: "invalid_grant".into(),
                description: None,
            })
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }

    fn rules() -> Rules {
        Rules::new(Claims::Store, false, Duration::from_secs(30))
    }

    fn token(t: &str) -> Record {
        Record {
            refresh_token: Some(Secret::new(t)),
            ..Default::default()
        }
    }

    /// A store holding the never-sent token "p" at generation 3.
    fn world(writes: &[Fault]) -> World {
        World {
            versions: vec![Record {
                generation: 3,
                ..token("p")
            }],
            journal: None,
            nonces: 0,
            writes: writes.to_vec(),
            journal_down: false,
        }
    }

    fn stored_token(w: &World) -> String {
        let r = w.versions.last().cloned().unwrap_or_default();
        r.refresh_token
            .map(|t| t.expose().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_refused_put_whose_needs_login_write_failed_still_puts_the_replaced_token_back() {
        // The put's write (with our claim) lands; Snyk refuses R; the
        // needs_login write fails once: the store still holds R under our
        // own claim, which is not a foreign one: "p" goes back.
        let mut w = world(&[Fault::None, Fault::Down]);
        let mut mem = Memory::default();
        let out = block_on(refresh(&mut w, &mut mem, &rules(), Some(token("r"))));
        assert!(matches!(out, Outcome::NeedsLogin(_)));
        assert_eq!(stored_token(&w), "p");
        assert!(w.versions.last().is_some_and(|r| r.claim.is_none()));
        assert!(mem.replaced.is_none());
    }

    #[test]
    fn a_refused_put_keeps_the_replaced_record_while_another_agent_claims_r() {
        // Another agent claimed R after ours was cleared: restoring over
        // its claim could drop what it lands; forgetting would lose "p".
        let mut w = world(&[]);
        let mut mem = Memory::default();
        let out = block_on(refresh(&mut w, &mut mem, &rules(), Some(token("r"))));
        assert!(matches!(out, Outcome::NeedsLogin(_)));
        assert_eq!(stored_token(&w), "p");
        let mut r = Record {
            generation: 9,
            ..token("r")
        };
        let replaced = Replaced {
            record: Record {
                generation: 3,
                ..token("p")
            },
            by: Secret::new("r").digest(),
            generation: Some(9),
        };
        r.claim = Some(Claim {
            fp: Secret::new("r").digest(),
            nonce: "f".repeat(32),
            agent: "host-b".into(),
            attempts: 1,
            deadline: String::new(),
        });
        w.versions.push(r.clone());
        let mut mem = Memory {
            replaced: Some(replaced.clone()),
            ..Default::default()
        };
        let out = block_on(restore(
            &mut w,
            &mut mem,
            &replaced.by,
            Some(9),
            replaced.record,
        ));
        assert_eq!(out, Restore::Failed);
        assert_eq!(stored_token(&w), "r");
    }

    #[test]
    fn a_put_whose_write_was_applied_but_answered_conflict_goes_on() {
        // The write's first attempt was applied, the retry answered
        // Conflict: the store holds R under our nonce. The put goes on
        // (Snyk refuses R) and the replaced "p" goes back.
        let mut w = world(&[Fault::AppliedConflict]);
        let mut mem = Memory::default();
        let out = block_on(refresh(&mut w, &mut mem, &rules(), Some(token("r"))));
        assert!(matches!(out, Outcome::NeedsLogin(_)), "{out:?}");
        assert_eq!(stored_token(&w), "p");
        assert!(mem.replaced.is_none());
    }

    #[test]
    fn a_put_beaten_by_another_forgets_its_replaced_record_in_the_journal_or_retries() {
        let mut w = world(&[Fault::Foreign]);
        let mut mem = Memory::default();
        let out = block_on(refresh(&mut w, &mut mem, &rules(), Some(token("r"))));
        assert_eq!(stored_token(&w), "q");
        // The journal still names the replaced record: not "Moved".
        assert!(w.journal.as_ref().is_some_and(|e| e.replaced.is_some()));
        assert!(
            matches!(
                out,
                Outcome::Later {
                    why: Why::Journal(_),
                    ..
                }
            ),
            "{out:?}"
        );
        // With a journal that takes the write, the entry goes.
        let mut w = world(&[]);
        w.versions.push(token("q"));
        let mut mem = Memory::default();
        let before = Versioned {
            record: Record {
                generation: 3,
                ..token("p")
            },
            version: 1,
            hidden: false,
        };
        let out = block_on(claim_given(
            &mut w,
            &mut mem,
            &rules(),
            token("r"),
            Some(before),
        ));
        assert!(matches!(out, Outcome::Moved), "{out:?}");
        assert!(mem.replaced.is_none());
        assert!(w.journal.is_some_and(|e| e.replaced.is_none()));
    }

    #[test]
    fn a_token_in_doubt_under_a_legacy_note_or_dead_is_not_journaled_as_replaced() {
        let p = token("p");
        let by = token("r");
        let legacy = Note {
            fp: format!("legacy:{}", Secret::new("p").fingerprint()),
            nonce: String::new(),
            attempts: 1,
            sent: false,
        };
        let mut w = world(&[]);
        let mut mem = Memory {
            claim: Some(legacy),
            ..Default::default()
        };
        assert!(block_on(remember_replaced(&mut w, &mut mem, &p, &by, 4)).is_ok());
        assert!(mem.replaced.is_none());
        let mut mem = Memory {
            dead: Some(Secret::new("p").digest()),
            ..Default::default()
        };
        assert!(block_on(remember_replaced(&mut w, &mut mem, &p, &by, 4)).is_ok());
        assert!(mem.replaced.is_none());
        // Neither: journaled.
        let mut mem = Memory::default();
        assert!(block_on(remember_replaced(&mut w, &mut mem, &p, &by, 4)).is_ok());
        assert!(mem.replaced.is_some());
    }
}
