//! Steps 2 and 3 of a refresh: may this agent send the stored token now
//! (a foreign live claim, the quiet period of a lost answer, a dead token),
//! and the claim that must precede every send.

use super::*;

/// Step 2's verdict.
pub(super) enum Decision {
    Send {
        token: Secret,
        attempts: u32,
    },
    NeedsLogin(String),
    /// Snyk refused this very request as malformed: not sent again.
    Malformed(String),
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
pub(super) fn decide(
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
    if let Some((shape, why)) = &mem.malformed {
        if *shape == request_shape(record) {
            return Decision::Malformed(why.clone());
        }
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
        Some(c) if c.fp == fp => match foreign_claim(c, version, mem, rules, now) {
            Ok(attempts) => attempts,
            Err(wait) => return wait,
        },
        // No claim on this token in the store: only ours from the journal
        // can say it was sent (journal-only claims, or a legacy entry).
        _ => match &mem.claim {
            Some(m) if note_names(m, &token) => m.attempts,
            _ => 0,
        },
    };
    match in_doubt {
        0 => Decision::Send { token, attempts: 1 },
        1 => {
            let since = mem.doubt_since.unwrap_or(Duration::ZERO);
            let due = since + rules.quiet();
            if mem.claim.as_ref().is_some_and(|m| m.fp == fp || m.fp.starts_with("legacy:"))
                && now < due
                && !rules.sabotage.no_quiet_period
            {
                return Decision::Quiet(due - now);
            }
            Decision::Send { token, attempts: 2 }
        }
        _ if rules.sabotage.retry_without_limit => Decision::Send {
            token,
            attempts: in_doubt.saturating_add(1),
        },
        _ => Decision::NeedsLogin(
            "two answers from Snyk to this refresh token were lost in transit; it may be spent, so it is not sent again".into(),
        ),
    }
}

/// Does this agent's journaled claim name `token`: by its digest, or — a
/// journal of the version before claims — as `legacy:<short fingerprint>`?
pub(super) fn note_names(m: &Note, token: &Secret) -> bool {
    m.fp == token.digest()
        || m.fp
            .strip_prefix("legacy:")
            .is_some_and(|short| short == token.fingerprint())
}

/// Step 2 for a claim on the stored token that is not ours: live until its
/// version stayed unchanged for the takeover period on our own clock
/// (`Err`: wait); then taken over, with every send under it in doubt.
pub(super) fn foreign_claim(
    c: &Claim,
    version: u64,
    mem: &mut Memory,
    rules: &Rules,
    now: Duration,
) -> Result<u32, Decision> {
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
        return Err(Decision::Wait(format!(
            "agent {} is refreshing this credential (claimed {}s ago by our clock; taken over after {}s)",
            clean(&c.agent),
            quiet_for.as_secs(),
            rules.takeover.as_secs()
        )));
    }
    // Taken over: every send under that claim may have consumed it.
    Ok(c.attempts.max(1))
}

/// Step 3: the claim. Invariant (rule 3): with store claims, a send follows
/// only this agent's own successful check-and-set on a version that holds
/// the token and carries the fresh nonce; the journal notes the nonce before
/// the send, so the claim is recognised as ours after a restart.
pub(super) async fn claim<I: Io>(
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
    let mut journal_only = false;
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
            // Rule 7: an agent that owns its store (`store.exclusive`) goes
            // on with the claim in its journal only, the journal being the
            // durable copy until the store takes writes again. The write may
            // have been applied all the same: `pending` keeps its nonce, so
            // such a claim is known as ours when it shows up.
            Err(_) if rules.may_chain() => journal_only = true,
            Err(e) => {
                return Err(Outcome::Later {
                    after: Duration::ZERO,
                    why: Why::Store(e),
                });
            }
        }
    }
    mem.watch = None;
    if !journal_only {
        mem.pending = None;
    }
    mem.claim = Some(Note {
        fp,
        nonce,
        attempts,
        sent: true,
    });
    if !rules.sabotage.send_before_note {
        note_claim(io, mem).await?;
    }
    Ok((record, version, deadline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Claim;

    fn rules() -> Rules {
        Rules::new(Claims::Store, false, Duration::from_secs(30))
    }

    #[test]
    fn a_put_of_the_stored_token_keeps_its_region_unless_it_names_one() {
        let eu = Some("https://api.eu.snyk.io".to_string());
        let stored = Record {
            refresh_token: Some(Secret::new("r")),
            api_url: eu.clone(),
            ..Default::default()
        };
        let given = Record {
            refresh_token: Some(Secret::new("r")),
            ..Default::default()
        };
        assert_eq!(adopt(&stored, given).api_url, eu);
        let au = Some("https://api.au.snyk.io".to_string());
        let given = Record {
            refresh_token: Some(Secret::new("r")),
            api_url: au.clone(),
            ..Default::default()
        };
        assert_eq!(adopt(&stored, given).api_url, au);
    }

    fn claimed(token: &str, nonce: &str, attempts: u32) -> Record {
        Record {
            refresh_token: Some(Secret::new(token)),
            claim: Some(Claim {
                fp: Secret::new(token).digest(),
                nonce: nonce.into(),
                agent: "other".into(),
                attempts,
                deadline: String::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn another_agents_claim_is_waited_for_until_the_takeover_period_passed_on_our_clock() {
        let r = rules();
        let mut mem = Memory::default();
        let rec = claimed("S", "n1", 1);
        let t0 = Duration::from_secs(1000);
        assert!(matches!(
            decide(&rec, 7, &mut mem, &r, t0),
            Decision::Wait(_)
        ));
        assert!(matches!(
            decide(&rec, 7, &mut mem, &r, t0 + r.takeover / 2),
            Decision::Wait(_)
        ));
        // A new version of the claim restarts the clock.
        assert!(matches!(
            decide(&rec, 8, &mut mem, &r, t0 + r.takeover),
            Decision::Wait(_)
        ));
        // Unchanged for the whole period: taken over, as the one permitted retry.
        assert!(matches!(
            decide(&rec, 8, &mut mem, &r, t0 + r.takeover * 2),
            Decision::Send { attempts: 2, .. }
        ));
    }

    #[test]
    fn a_lost_answer_is_retried_once_after_the_quiet_period_and_never_twice() {
        let r = rules();
        let now = Duration::from_secs(500);
        let mut mem = Memory {
            claim: Some(Note {
                fp: Secret::new("S").digest(),
                nonce: "mine".into(),
                attempts: 1,
                sent: false,
            }),
            doubt_since: Some(now),
            ..Default::default()
        };
        let rec = claimed("S", "mine", 1);
        assert!(matches!(
            decide(&rec, 3, &mut mem, &r, now + Duration::from_secs(1)),
            Decision::Quiet(_)
        ));
        assert!(matches!(
            decide(&rec, 3, &mut mem, &r, now + r.quiet()),
            Decision::Send { attempts: 2, .. }
        ));
        if let Some(c) = mem.claim.as_mut() {
            c.attempts = 2;
        }
        assert!(matches!(
            decide(
                &claimed("S", "mine", 2),
                4,
                &mut mem,
                &r,
                now + r.quiet() * 2
            ),
            Decision::NeedsLogin(_)
        ));
    }

    #[test]
    fn a_token_the_record_or_the_journal_calls_dead_is_never_sent() {
        let r = rules();
        let mut mem = Memory::default();
        let mut rec = claimed("S", "x", 0);
        rec.claim = None;
        rec.state = Some(RecordState::needs_login("refused"));
        assert!(matches!(
            decide(&rec, 1, &mut mem, &r, Duration::ZERO),
            Decision::NeedsLogin(_)
        ));
        rec.state = None;
        mem.dead = Some(Secret::new("S").digest());
        assert!(matches!(
            decide(&rec, 1, &mut mem, &r, Duration::ZERO),
            Decision::NeedsLogin(_)
        ));
    }
}
