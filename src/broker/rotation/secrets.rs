//! Secrets that exist in one copy only, beyond the refresh (docs/protocol.md's I2 for
//! every path that receives one): the refresh token of a browser login's code
//! exchange, and a service account's new client secret (`rotate-secret`,
//! both modes). The client secret `register-app` is handed goes through
//! [`persist`] directly (its credential does not exist before Snyk answers).
//!
//! The invariant each path keeps: the secret is durable — the fsync'd
//! journal, then the store by succession ([`persist`]) — before anything
//! else can fail: before the test grant, before the old secret is deleted,
//! before an access token is handed out. The caller holds the credential's
//! single flight from *before* the call that issues the secret, so the
//! answer never waits in memory for it. When neither the journal nor the
//! store takes it, the secret is held in memory ([`Landing::InMemory`]) for
//! a lander, never dropped. What no code can save: an answer lost on its way
//! from Snyk, or a kill between reading it and the journal's fsync.
//!
//! The calls that issue the secrets are [`Exchange`]'s and
//! [`SecretRotation`]'s, beside [`Io`]: the same code runs in the agent
//! and, against models, in a simulation.

use super::*;
use crate::credential::Kind;
use crate::snyk::rest::RestError;

/// A browser login's call to Snyk.
pub trait Exchange: Io {
    /// `grant_type=authorization_code` (PKCE): its refresh token is the
    /// secret, in one copy from the moment Snyk answers.
    fn exchange(
        &mut self,
        client_secret: Option<&Secret>,
    ) -> impl Future<Output = Result<TokenGrant, GrantError>>;
}

/// A service-account secret rotation's calls to Snyk.
pub trait SecretRotation: Io {
    /// A new client secret: a second one, or (`replace`) the only one, every
    /// other revoked at once.
    fn new_secret(&mut self, replace: bool) -> impl Future<Output = Result<Secret, RestError>>;
    /// `grant_type=client_credentials` with `secret`: does it mint a token?
    fn prove(&mut self, secret: &Secret) -> impl Future<Output = Result<TokenGrant, GrantError>>;
    /// Deletes `secret` at Snyk (the old one, once the new one is proven).
    fn retire(&mut self, secret: &Secret) -> impl Future<Output = Result<(), RestError>>;
}

/// A login's or rotation's access token, and where its secret is.
#[derive(Debug)]
pub struct Issued {
    pub access_token: Secret,
    pub expires_in: Duration,
    /// `Landed`: in the store. `Pending`: in the journal (a lander takes
    /// it to the store). `InMemory`: neither took it, a lander retries, and
    /// the access token must wait for it (I2).
    pub landing: Landing,
}

/// Why a browser login did not store a credential.
#[derive(Debug)]
pub enum LoginFailed {
    /// The store could not be read: nothing was exchanged (the code is unused).
    Store(StoreError),
    /// Snyk refused the exchange, or its answer was lost.
    Snyk(GrantError),
    /// Snyk's answer carried no refresh token: nothing to keep.
    NoRefreshToken,
    /// A newer login or rotation reached the store first: this one's token
    /// was dropped (never revoked).
    Superseded,
}

/// A browser login's code exchange for a credential whose single flight
/// the caller holds (rule 4: a human reset, replacing whatever is stored
/// unless something newer landed since). `api_url`: the region the login
/// happened in (`None`: the agent's), stored with the new token.
pub async fn login<I: Exchange>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    given_secret: Option<Secret>,
    api_url: Option<String>,
) -> Result<Issued, LoginFailed> {
    // 1. What is stored: the client secret to exchange with (unless one was
    //    given), the generation to go above. Nothing is exchanged when the
    //    store cannot be read.
    let stored = io.read().await.map_err(LoginFailed::Store)?;
    let stored = stored.filter(|v| !v.hidden);
    let client_secret = given_secret.or_else(|| {
        stored
            .as_ref()
            .filter(|v| !v.record.deleted)
            .and_then(|v| v.record.client_secret.clone())
    });
    // 2. The exchange: from its answer on, the refresh token exists once.
    let grant = io
        .exchange(client_secret.as_ref())
        .await
        .map_err(LoginFailed::Snyk)?;
    let Some(refresh_token) = grant.refresh_token else {
        return Err(LoginFailed::NoRefreshToken);
    };
    // 3. Durable at once: the journal, then the store. Above any generation
    //    this agent has seen (a store restored from a backup holds lower
    //    ones; a login is how a human resets it).
    let generation = stored
        .as_ref()
        .map(|v| v.record.generation)
        .unwrap_or(0)
        .max(mem.generation);
    let mut record = match stored.as_ref().map(|v| &v.record) {
        Some(r) if r.kind() == Kind::OauthApp && !r.deleted => r.clone(),
        _ => Record::default(),
    };
    record.kind = Some(Kind::OauthApp);
    record.refresh_token = Some(refresh_token);
    record.client_secret = client_secret;
    record.api_url = api_url;
    record.updated_at = Some(crate::clock::rfc3339(io.wall()));
    record.generation = generation + 1;
    record.claim = None;
    record.state = None;
    record.prev_fp = None;
    record.deleted = false;
    let base = Base {
        fp: None,
        generation,
        login: true,
        via: Vec::new(),
    };
    match persist(io, mem, rules, record, base).await {
        Landing::Discarded => Err(LoginFailed::Superseded),
        // Teeth for tests/sim_secrets.rs only: reported durable when it is not.
        Landing::InMemory if rules.sabotage.login_hands_out_first => Ok(Issued {
            access_token: grant.access_token,
            expires_in: grant.expires_in,
            landing: Landing::Landed,
        }),
        landing => Ok(Issued {
            access_token: grant.access_token,
            expires_in: grant.expires_in,
            landing,
        }),
    }
}

/// Why a service-account secret rotation stopped, and what it left.
#[derive(Debug)]
pub enum RotationStopped {
    /// Nothing was asked of Snyk: the stored record is not a client-secret
    /// account with a secret (the sentence says which), or the store failed.
    NotManaged(String),
    Store(StoreError),
    /// Nothing was asked of Snyk: another agent's claim on the record is
    /// live, the record moved under the claim, or the journal refused it.
    Busy(String),
    /// Snyk issued no new secret (if its answer was lost, `replace` may
    /// have revoked every secret all the same).
    NotIssued(RestError),
    /// The new secret is held in memory only (neither the journal nor the
    /// store takes writes); a lander writes it as soon as one does.
    NotDurable,
    /// A newer change reached the store first: the new secret was dropped.
    Superseded,
    /// The new secret is stored (or journaled) but did not mint a token.
    /// `rolled_back`: where the old one, which still works, went when Snyk
    /// refused a second secret for good ([`Rollback`]).
    NotProven {
        error: GrantError,
        rolled_back: Rollback,
    },
}

/// Where the old secret of a zero-downtime rotation went when Snyk refused
/// the new one for good (docs/protocol.md rule 15's rollback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollback {
    /// Not tried (`replace`, or the grant failed without a refusal for
    /// good): the new secret stays stored.
    NotTried,
    /// The old secret is stored again.
    Stored,
    /// The old secret is journaled: a lander stores it again once the store
    /// takes writes and no other agent's claim is on the record.
    Journaled,
    /// Neither the journal nor the store took it: it is held in memory for
    /// a lander (which journals it first).
    InMemory,
    /// Another change (a rotation, a put, a delete) replaced the refused
    /// secret in the store first: the old one was not put back.
    Superseded,
}

impl Rollback {
    /// What happened to the old secret, for the caller (after "Snyk refused
    /// the new secret").
    pub fn sentence(self) -> &'static str {
        match self {
            Rollback::NotTried => "the new secret stays stored",
            Rollback::Stored => "the old one is stored again and still works",
            Rollback::Journaled => {
                "the old one, which still works, is in the recovery journal and goes back into the secret store as soon as the store takes it (keep the agent running)"
            }
            Rollback::InMemory => {
                "the old one, which still works, is held in memory only (neither the secret store nor the recovery journal accepts writes) and is written back as soon as one does (keep the agent running; do not rotate again)"
            }
            Rollback::Superseded => {
                "another change to the credential (a rotation, a put or a delete) reached the secret store first, so the old one was not put back"
            }
        }
    }
}

/// A rotation that went through: the proof's token, and (a second
/// secret only) what deleting the old one at Snyk answered.
#[derive(Debug)]
pub struct Rotated {
    pub issued: Issued,
    pub old_left: Option<RestError>,
}

/// `rotate-secret` for a client-secret service account whose single flight
/// the caller holds: a new secret at Snyk (a second one; with `replace`,
/// the only one), durable at once, proven by a grant, then (a second
/// secret) the old one deleted at Snyk — docs/protocol.md rule 15's order: create, store,
/// prove, delete.
pub async fn rotate_secret<I: SecretRotation>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    replace: bool,
) -> Result<Rotated, RotationStopped> {
    // 0. A secret of ours the store does not hold yet lands first (a
    //    rollback's old secret, a new one a lander is landing): a rotation
    //    claiming the record over it would drop it.
    if mem.unlanded.is_some() && land(io, mem, rules).await == Landing::Pending {
        return Err(RotationStopped::Busy(
            "a secret the secret store has not taken yet is still being written there; nothing was asked of Snyk: run rotate-secret again later".into(),
        ));
    }
    // 1. The stored secret.
    let (stored, old) = stored_secret(io).await?;
    // 2. The claim, before Snyk is asked (as before a refresh's send): in
    //    the store by check-and-set, then in the journal. No other agent
    //    mints with a secret that is about to change (it waits for the
    //    landing), and after a crash the new secret, once journaled, lands
    //    by succession over the claimed record.
    let claimed = claim_secret(io, mem, rules, &stored, &old).await?;
    // 3. A new secret at Snyk: from here on it exists once (with `replace`,
    //    it is the only one Snyk accepts).
    let new = match io.new_secret(replace).await {
        Ok(new) => new,
        Err(e) => {
            release_secret_claim(io, mem, rules, claimed).await;
            return Err(RotationStopped::NotIssued(e));
        }
    };
    let (retired_early, proven_early) = sabotaged_order(io, rules, replace, &old, &new).await;
    // 4. Durable before anything else can fail: the journal, then the
    //    store by succession (nothing landed since the read). The landing
    //    clears the claim.
    mem.claim = None;
    let over = stored.record.generation;
    let landing = store_secret(io, mem, rules, &stored.record, &new, over).await;
    match landing {
        Landing::Landed | Landing::Pending => {}
        Landing::InMemory => return Err(RotationStopped::NotDurable),
        Landing::Discarded => return Err(RotationStopped::Superseded),
    }
    // 5. Proven by a grant.
    let proven = match proven_early {
        Some(p) => p,
        None => io.prove(&new).await,
    };
    let grant = match proven {
        Ok(g) => g,
        Err(error) if !replace && error.is_permanent() => {
            // Snyk refuses the second secret for good; the old one still
            // works: it goes back (whether the new one landed or not: a
            // landing whose answer was lost is Pending, yet stored).
            let rolled_back = roll_back(io, mem, rules, &stored.record, &new, &old).await;
            return Err(RotationStopped::NotProven { error, rolled_back });
        }
        Err(error) => {
            return Err(RotationStopped::NotProven {
                error,
                rolled_back: Rollback::NotTried,
            });
        }
    };
    // 6. A second secret: the old one goes.
    let old_left = match (replace, retired_early) {
        (true, _) => None,
        (false, Some(early)) => early,
        (false, None) => io.retire(&old).await.err(),
    };
    Ok(Rotated {
        issued: Issued {
            access_token: grant.access_token,
            expires_in: grant.expires_in,
            landing,
        },
        old_left,
    })
}

/// Teeth for tests/sim_secrets.rs only ([`Sabotage`]; never in the agent):
/// the old secret deleted, or the new one proven, while the new one is still
/// in memory only. What was answered, for the steps it replaces.
async fn sabotaged_order<I: SecretRotation>(
    io: &mut I,
    rules: &Rules,
    replace: bool,
    old: &Secret,
    new: &Secret,
) -> (
    Option<Option<RestError>>,
    Option<Result<TokenGrant, GrantError>>,
) {
    let retired = if !replace && rules.sabotage.retire_before_durable {
        Some(io.retire(old).await.err())
    } else {
        None
    };
    let proven = if replace && rules.sabotage.secret_durable_after_proof {
        Some(io.prove(new).await)
    } else {
        None
    };
    (retired, proven)
}

/// Step 5 of [`rotate_secret`] when Snyk refused a second secret for good
/// (docs/protocol.md rule 15): the old secret, which may exist in memory
/// only now, is journaled first (before anything else can fail), then lands
/// ([`persist`]) — only over a record that still holds the refused secret
/// and carries no claim (`landing.rs`, `put_back`: a claimed record waits
/// for that rotation's landing, which discards ours), or over our claimed
/// record if the refused secret never landed (a lost write answer: the
/// landing was Pending). Found by
/// tests/sim_secrets.rs: another agent's `replace` may be under way (Snyk
/// refused ours because it revoked every other secret); writing the old
/// secret over its claim stored a revoked secret and discarded the only
/// valid one when it landed. `template`: the record the rotation read.
async fn roll_back<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    template: &Record,
    new: &Secret,
    old: &Secret,
) -> Rollback {
    if rules.sabotage.rollback_store_first {
        // Teeth for tests/sim_secrets.rs only: the store read (and the
        // claim checked) before the old secret is journaled; given up on.
        match io.read().await {
            Ok(Some(v)) if v.record.claim.is_none() => {}
            _ => return Rollback::Superseded,
        }
    }
    let seen = mem.generation.max(template.generation);
    let mut record = template.clone();
    record.client_secret = Some(old.clone());
    record.updated_at = Some(crate::clock::rfc3339(io.wall()));
    record.generation = seen + 1;
    record.claim = None;
    let base = Base {
        fp: Some(new.digest()),
        generation: seen,
        login: false,
        via: Vec::new(),
    };
    mem.claim = None;
    match persist(io, mem, rules, record, base).await {
        Landing::Landed => Rollback::Stored,
        Landing::Pending => Rollback::Journaled,
        Landing::InMemory => Rollback::InMemory,
        Landing::Discarded => Rollback::Superseded,
    }
}

/// Step 1 of [`rotate_secret`]: the stored record of a client-secret
/// service account, and its secret.
async fn stored_secret<I: Io>(io: &mut I) -> Result<(Versioned, Secret), RotationStopped> {
    let stored = match io.read().await {
        Ok(Some(v)) if !v.hidden && !v.record.deleted => v,
        Ok(_) => {
            return Err(RotationStopped::NotManaged(
                "is not managed here: store it first with `snykey put --kind client_secret`".into(),
            ));
        }
        Err(e) => return Err(RotationStopped::Store(e)),
    };
    if stored.record.kind() != Kind::ClientSecret {
        return Err(RotationStopped::NotManaged(
            "is not a client_secret service account".into(),
        ));
    }
    match stored.record.client_secret.clone() {
        Some(old) => Ok((stored, old)),
        None => Err(RotationStopped::NotManaged("has no stored secret".into())),
    }
}

/// Step 2 of [`rotate_secret`]: the claim on the stored record, keyed by
/// the old secret's digest ([`claim`], as a refresh claims its token). A
/// live claim of another agent stops the rotation (nothing asked of Snyk);
/// one of ours left by a crash, or one past the takeover period, is taken.
async fn claim_secret<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    stored: &Versioned,
    old: &Secret,
) -> Result<(Record, u64), RotationStopped> {
    if let Some(why) = live_foreign_claim(&stored.record, stored.version, mem, rules, io.mono()) {
        return Err(RotationStopped::Busy(why));
    }
    match claim(io, mem, rules, stored.record.clone(), stored.version, old, 1).await {
        Ok((record, version, _)) => Ok((record, version)),
        Err(Outcome::Later {
            why: Why::Store(e), ..
        }) => Err(RotationStopped::Store(e)),
        Err(Outcome::Later {
            why: Why::Journal(e),
            ..
        }) => Err(RotationStopped::Busy(format!(
            "the recovery journal does not accept writes ({e}); nothing was asked of Snyk"
        ))),
        Err(_) => Err(RotationStopped::Busy(
            "the stored record changed while it was being claimed; nothing was asked of Snyk: run rotate-secret again".into(),
        )),
    }
}

/// Snyk issued no secret: the claim goes (by check-and-set on the claimed
/// version; if that fails, it is taken over after the takeover period).
async fn release_secret_claim<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    (mut record, version): (Record, u64),
) {
    mem.claim = None;
    if rules.claims == Claims::Store && record.claim.is_some() {
        record.claim = None;
        let _ = io.write(&record, version).await;
    }
    let _ = io.note(&mem.entry(io.wall())).await;
}

/// Another agent's claim on a service account's record that is still live
/// (rule 5: until its version stayed unchanged for the takeover period on
/// our clock): the sentence to wait with. A claim of ours (a crash's
/// leftover: this agent holds the credential's single flight) is not live.
pub fn live_foreign_claim(
    record: &Record,
    version: u64,
    mem: &mut Memory,
    rules: &Rules,
    now: Duration,
) -> Option<String> {
    let c = record.claim.as_ref()?;
    let ours = [&mem.claim, &mem.pending]
        .iter()
        .any(|m| m.as_ref().is_some_and(|m| m.nonce == c.nonce));
    if ours {
        return None;
    }
    match foreign_claim(c, version, mem, rules, now) {
        Err(Decision::Wait(why)) => Some(why),
        _ => None,
    }
}

/// `secret` as the stored client secret, by [`persist`]: a successor of
/// the record at generation `over` (nothing else may have landed since).
async fn store_secret<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    template: &Record,
    secret: &Secret,
    over: u64,
) -> Landing {
    let mut record = template.clone();
    record.client_secret = Some(secret.clone());
    record.updated_at = Some(crate::clock::rfc3339(io.wall()));
    record.generation = over.max(mem.generation) + 1;
    record.claim = None;
    let base = Base {
        fp: None,
        generation: over,
        login: false,
        via: Vec::new(),
    };
    persist(io, mem, rules, record, base).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Claim;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// One service account's record, this agent's journal, and a Snyk that
    /// refuses the new secret for good at its test grant — with, if asked,
    /// another agent's `replace` claiming the record first (which is why
    /// Snyk refuses it: that replace revoked every other secret).
    struct World {
        versions: Vec<Record>,
        journal: Option<Entry>,
        foreign_replace: bool,
        nonces: u64,
        /// What the next store writes do (then: taken).
        writes: Vec<Fault>,
        journal_down: bool,
        journal_down_at_proof: bool,
        /// This agent's monotonic clock.
        clock: Duration,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Fault {
        /// Taken as asked.
        None,
        /// Applied, its answer lost.
        AnswerLost,
        /// Not applied (the store is down).
        Down,
    }

    impl Io for World {
        fn mono(&self) -> Duration {
            self.clock
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
            if cas != self.versions.len() as u64 {
                return Err(StoreError::Conflict { expected: cas });
            }
            self.versions.push(record.clone());
            if fault == Fault::AnswerLost {
                return Err(StoreError::Unavailable("answer lost".into()));
            }
            Ok(self.versions.len() as u64)
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
            panic!("no refresh token is sent by a secret rotation");
        }
    }

    impl SecretRotation for World {
        async fn new_secret(&mut self, _: bool) -> Result<Secret, RestError> {
            Ok(Secret::new("cs-new"))
        }
        async fn prove(&mut self, _: &Secret) -> Result<TokenGrant, GrantError> {
            self.journal_down |= self.journal_down_at_proof;
            if self.foreign_replace {
                let mut r = self.versions.last().cloned().unwrap_or_default();
                r.claim = Some(Claim {
                    fp: Secret::new("cs-new").digest(),
                    nonce: "f".repeat(32),
                    agent: "host-b".into(),
                    attempts: 1,
                    deadline: "2027-01-15T08:00:10Z".into(),
                });
                self.versions.push(r);
            }
            Err(GrantError::Permanent {
                error: "invalid_client".into(),
                description: None,
            })
        }
        async fn retire(&mut self, _: &Secret) -> Result<(), RestError> {
            Ok(())
        }
    }

    fn world(foreign_replace: bool, writes: &[Fault]) -> World {
        World {
            versions: vec![Record {
                kind: Some(Kind::ClientSecret),
                client_secret: Some(Secret::new("cs-old")),
                generation: 3,
                ..Default::default()
            }],
            journal: None,
            foreign_replace,
            nonces: 0,
            writes: writes.to_vec(),
            journal_down: false,
            journal_down_at_proof: false,
            clock: Duration::from_secs(1_000),
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

    fn rotate(w: &mut World, mem: &mut Memory) -> Result<Rotated, RotationStopped> {
        block_on(rotate_secret(w, mem, &rules(), false))
    }

    fn run(foreign_replace: bool) -> (World, Result<Rotated, RotationStopped>) {
        let mut w = world(foreign_replace, &[]);
        let out = rotate(&mut w, &mut Memory::default());
        (w, out)
    }

    fn rolled_back(out: &Result<Rotated, RotationStopped>) -> Option<Rollback> {
        match out {
            Err(RotationStopped::NotProven { rolled_back, .. }) => Some(*rolled_back),
            _ => None,
        }
    }

    fn stored(w: &World) -> (String, bool) {
        let r = w.versions.last().cloned().unwrap_or_default();
        let secret = r.client_secret.map(|s| s.expose().to_string());
        (secret.unwrap_or_default(), r.claim.is_some())
    }

    #[test]
    fn a_refused_second_secret_is_rolled_back_to_the_old_one() {
        let (w, out) = run(false);
        assert!(matches!(
            out,
            Err(RotationStopped::NotProven {
                rolled_back: Rollback::Stored,
                ..
            })
        ));
        assert_eq!(stored(&w), ("cs-old".to_string(), false));
        assert!(w.journal.is_some_and(|e| e.is_empty()));
    }

    #[test]
    fn a_rollback_never_writes_over_another_agents_live_claim() {
        // Another agent's replace claimed the record while our secret was
        // being proven: its new secret is the only valid one, and lands
        // over its own claim. Ours does not go back over it.
        // Ours waits in the journal (it lands only over an unclaimed
        // record that holds the refused secret).
        let (w, out) = run(true);
        assert!(matches!(
            out,
            Err(RotationStopped::NotProven {
                rolled_back: Rollback::Journaled,
                ..
            })
        ));
        assert_eq!(stored(&w), ("cs-new".to_string(), true));
        let journaled = w
            .journal
            .and_then(|e| e.record)
            .and_then(|r| r.client_secret);
        assert_eq!(
            journaled.map(|s| s.expose().to_string()).as_deref(),
            Some("cs-old")
        );
    }

    #[test]
    fn a_refused_secret_whose_landing_answer_was_lost_is_rolled_back_too() {
        // Review F1: the new secret's write was applied, only its answer
        // was lost (Pending): the store holds it, unclaimed, one generation
        // up; the old secret still goes back over it.
        let mut w = world(false, &[Fault::None, Fault::AnswerLost]);
        let out = rotate(&mut w, &mut Memory::default());
        assert_eq!(rolled_back(&out), Some(Rollback::Stored));
        assert_eq!(stored(&w), ("cs-old".to_string(), false));
        assert_eq!(w.versions.last().map(|r| r.generation), Some(5));
        assert!(w.journal.is_some_and(|e| e.is_empty()));
    }

    #[test]
    fn a_refused_secret_that_never_landed_leaves_the_old_one_stored_a_generation_up() {
        // The new secret's write never reached the store: the old one is
        // stored again over our own claim, which goes, and the generation
        // moves past the refused secret's journaled base (it can never land).
        let mut w = world(false, &[Fault::None, Fault::Down]);
        let out = rotate(&mut w, &mut Memory::default());
        assert_eq!(rolled_back(&out), Some(Rollback::Stored));
        assert_eq!(stored(&w), ("cs-old".to_string(), false));
        assert_eq!(w.versions.last().map(|r| r.generation), Some(4));
    }

    #[test]
    fn the_old_secret_is_journaled_before_the_store_is_tried_and_lands_later() {
        // Review F2: the store fails at the rollback; the old secret is in
        // the journal already, and a lander stores it once the store is back.
        let mut w = world(false, &[Fault::None, Fault::None, Fault::Down]);
        let mut mem = Memory::default();
        let out = rotate(&mut w, &mut mem);
        assert_eq!(rolled_back(&out), Some(Rollback::Journaled));
        assert_eq!(stored(&w), ("cs-new".to_string(), false));
        let journaled = w.journal.clone().and_then(|e| e.record);
        assert_eq!(
            journaled
                .and_then(|r| r.client_secret)
                .map(|s| s.expose().to_string()),
            Some("cs-old".to_string())
        );
        // After a restart too: what the journal holds lands.
        let entry = w.journal.clone().unwrap_or_default();
        let mut recovered = Memory::recover(entry, Duration::ZERO);
        assert_eq!(
            block_on(land(&mut w, &mut recovered, &rules())),
            Landing::Landed
        );
        assert_eq!(stored(&w), ("cs-old".to_string(), false));
    }

    #[test]
    fn an_old_secret_neither_the_journal_nor_the_store_takes_is_held_for_a_lander() {
        // The journal fills up at the test grant, and the store is down.
        let mut w = world(false, &[Fault::None, Fault::None, Fault::Down]);
        w.journal_down_at_proof = true;
        let mut mem = Memory::default();
        let out = rotate(&mut w, &mut mem);
        assert_eq!(rolled_back(&out), Some(Rollback::InMemory));
        assert!(mem.unlanded.as_ref().is_some_and(|u| !u.journaled));
        w.journal_down = false;
        assert_eq!(block_on(land(&mut w, &mut mem, &rules())), Landing::Landed);
        assert_eq!(stored(&w), ("cs-old".to_string(), false));
    }

    #[test]
    fn a_rollback_lands_over_a_foreign_claim_once_it_is_past_the_takeover_period() {
        // Another agent's replace claimed the record and died: its claim
        // never lands nor lets go. Ours waits the takeover period on our
        // own clock, then lands, and rotate-secret is no longer Busy.
        let (mut w, out) = run(true);
        assert_eq!(rolled_back(&out), Some(Rollback::Journaled));
        let entry = w.journal.clone().unwrap_or_default();
        let mut mem = Memory::recover(entry, w.clock);
        w.foreign_replace = false;
        assert!(matches!(
            rotate(&mut w, &mut mem),
            Err(RotationStopped::Busy(_))
        ));
        w.clock += rules().takeover / 2;
        assert_eq!(block_on(land(&mut w, &mut mem, &rules())), Landing::Pending);
        assert_eq!(stored(&w), ("cs-new".to_string(), true));
        w.clock += rules().takeover;
        assert_eq!(block_on(land(&mut w, &mut mem, &rules())), Landing::Landed);
        assert_eq!(stored(&w), ("cs-old".to_string(), false));
        assert!(w.journal.is_some_and(|e| e.record.is_none()));
    }
}
