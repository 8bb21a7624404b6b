//! Steps 4-6: the send within its window, and what Snyk's answer means for
//! the token that was sent (rule 6); rule 7's journal chain.

use super::*;

/// Rule 7: an exclusive agent rotates the journal's newest token while the
/// store refuses writes. The chain keeps its base, so the newest token
/// lands over the last one the store held once writes return.
pub(super) async fn rotate_chain<I: Io>(
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
        Decision::Malformed(why) => return Outcome::Malformed(why),
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
    if let Err(o) = note_claim(io, mem).await {
        return o;
    }
    send_claimed(io, mem, rules, u.record, 0, token, deadline).await
}

/// Steps 4-6: send the claimed token within the send window, then handle
/// Snyk's answer (rule 6) and land a new token by succession (rule 4).
pub(super) async fn send_claimed<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    record: Record,
    version: u64,
    token: Secret,
    deadline: Duration,
) -> Outcome {
    // 4. Never after the send window: a claimant paused past it may have
    //    been overtaken. Checked here, and again by `send` right before
    //    the request is written (after the connection is set up).
    if io.mono() > deadline {
        undo_attempt(mem);
        let _ = io.note(&mem.entry(io.wall())).await;
        return Outcome::Moved;
    }
    let answer = io.send(&token, &record, deadline).await;
    match answer {
        // 5a. Snyk rotated: the sent token is dead, the new one must become
        //     durable before the access token is handed out (I2).
        Ok(grant) => rotated(io, mem, rules, record, version, token, grant).await,
        // 5b'. Snyk refused the client's authentication (a wrong client
        //      secret): the token was not consumed (the client is checked
        //      before the grant) and is not dead; the same request would be
        //      refused again, so, like a malformed one, it is not sent again
        //      until a put or a login changes the record.
        Err(e) if e.refuses_client() => {
            malformed_request(io, mem, rules, &record, version, e).await
        }
        // 5b. Snyk refused the token for good: needs_login, in the record.
        Err(e @ GrantError::Permanent { .. }) => {
            refused(io, mem, &record, version, &token, e).await
        }
        // 5c'. Snyk refused the request itself as malformed (a missing
        //      client secret): not consumed, and the same request would get
        //      the same answer, so it is not sent again until the record
        //      changes.
        Err(e) if e.is_malformed() => malformed_request(io, mem, rules, &record, version, e).await,
        // 5c. Snyk answered with an error that did not consume the token:
        //     release the claim if nothing else is in doubt; retry later,
        //     each time under a fresh claim.
        Err(e) if e.token_not_consumed() => not_taken(io, mem, rules, &record, version, e).await,
        // 5d. Unknown outcome (timeout, dropped connection, a gateway page):
        //     the token may be spent. It stays claimed, and is retried at most
        //     once across all agents, after the quiet period.
        Err(e) => unknown(io, mem, rules, e).await,
    }
}

/// 5b', 5c'. Snyk refused this request's shape (malformed, or the client's
/// authentication): not consumed, and not sent again until the record changes.
async fn malformed_request<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    record: &Record,
    version: u64,
    e: GrantError,
) -> Outcome {
    let why = e.to_string();
    mem.malformed = Some((request_shape(record), why.clone()));
    let _ = not_taken(io, mem, rules, record, version, e).await;
    Outcome::Malformed(why)
}

/// 5a. Snyk rotated: the successor is journaled, then landed; the outcome
/// says whether the access token may go out.
async fn rotated<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    record: Record,
    version: u64,
    token: Secret,
    grant: TokenGrant,
) -> Outcome {
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
    // Snyk took the sent token: whatever a put replaced stays replaced.
    mem.replaced = None;
    mem.unlanded = Some(Unlanded {
        record: next,
        base,
        journaled: false,
        fresh_login: false,
    });
    // The journal first (fsync): it survives a crash mid-landing.
    let (journaled, landing) = if rules.sabotage.land_before_journal {
        let landing = land(io, mem, rules).await;
        (io.note(&mem.entry(io.wall())).await.is_ok(), landing)
    } else {
        let journaled = io.note(&mem.entry(io.wall())).await.is_ok();
        if let Some(u) = mem.unlanded.as_mut() {
            u.journaled = journaled;
        }
        (journaled, land(io, mem, rules).await)
    };
    if let Some(u) = mem.unlanded.as_mut() {
        u.journaled = journaled;
    }
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
        Landing::Pending | Landing::InMemory => Outcome::NotDurable {
            access_token: grant.access_token,
            expires_in: grant.expires_in,
        },
    }
}

/// 5b. Snyk refused the token for good.
async fn refused<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    record: &Record,
    version: u64,
    token: &Secret,
    e: GrantError,
) -> Outcome {
    let lost_before = mem.claim.as_ref().is_some_and(|c| c.attempts > 1);
    let why = if lost_before {
        format!(
            "{e}; an earlier answer from Snyk to this token was lost in transit and most likely rotated it"
        )
    } else {
        e.to_string()
    };
    bury(mem, token, &why);
    let _ = io.note(&mem.entry(io.wall())).await;
    mark_needs_login(io, mem, record, version, why).await
}

/// 5c. An error that did not consume the token.
async fn not_taken<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    record: &Record,
    version: u64,
    e: GrantError,
) -> Outcome {
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

/// 5d. Unknown outcome: the token may be spent.
async fn unknown<I: Io>(io: &mut I, mem: &mut Memory, rules: &Rules, e: GrantError) -> Outcome {
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

/// Notes the claim just made in the journal, before its send (rule 3). If
/// the journal refuses, nothing is sent and the attempt no longer counts;
/// the claim stays ours in memory.
pub(super) async fn note_claim<I: Io>(io: &mut I, mem: &mut Memory) -> Result<(), Outcome> {
    match io.note(&mem.entry(io.wall())).await {
        Ok(()) => Ok(()),
        Err(e) => {
            undo_attempt(mem);
            Err(Outcome::Later {
                after: Duration::ZERO,
                why: Why::Journal(e),
            })
        }
    }
}

/// The last send did not happen, or Snyk answered that it did not consume
/// the token: it no longer counts as in doubt.
pub(super) fn undo_attempt(mem: &mut Memory) {
    if let Some(c) = mem.claim.as_mut() {
        c.sent = false;
        c.attempts = c.attempts.saturating_sub(1);
    }
}

/// A 200 without a refresh token: the sent token is spent and nothing
/// continues the chain.
pub(super) async fn answered_without_successor<I: Io>(
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
pub(super) fn bury(mem: &mut Memory, token: &Secret, why: &str) {
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
pub(super) async fn mark_needs_login<I: Io>(
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
