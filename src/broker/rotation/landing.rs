//! Rule 4: landing by succession; persisting a record that needs no send
//! (a login, a new secret); rule 10's tombstone.

use super::*;

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
        let verdict = match (succession(current.as_ref(), &u, rules), &current) {
            // A rollback waits on a claim on the refused secret (its
            // rotation lands first, or lets go) — but not on one past rule
            // 5's takeover period (its version unchanged that long on our
            // clock, `mem.watch`, as `live_foreign_claim` times it), nor on
            // a leftover of ours: its holder's send window is long over, as
            // when a refresh takes such a claim over. Waiting on it would
            // keep `rotate_secret` stopped at its step 0 for good
            // (docs/protocol.md rule 15).
            (Verdict::Wait, Some(cur))
                if super::secrets::live_foreign_claim(
                    &cur.record,
                    cur.version,
                    mem,
                    rules,
                    io.mono(),
                )
                .is_none() =>
            {
                let mut unclaimed = cur.clone();
                unclaimed.record.claim = None;
                succession(Some(&unclaimed), &u, rules)
            }
            (verdict, _) => verdict,
        };
        let (record, cas) = match verdict {
            Verdict::AlreadyThere => {
                finish_landing(io, mem, u.record.generation).await;
                return Landing::Landed;
            }
            // A claim on the record: its rotation lands first, or goes.
            Verdict::Wait => return Landing::Pending,
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

pub(super) async fn finish_landing<I: Io>(io: &mut I, mem: &mut Memory, generation: u64) {
    mem.generation = mem.generation.max(generation);
    mem.unlanded = None;
    let _ = io.note(&mem.entry(io.wall())).await;
}

pub(super) enum Verdict {
    AlreadyThere,
    Discard,
    Wait,
    Write { generation: u64, cas: u64 },
}

/// May `u` land over what the store holds now?
pub(super) fn succession(current: Option<&Versioned>, u: &Unlanded, rules: &Rules) -> Verdict {
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
    // A version another tool deleted (`bao kv delete`) hides its record, and
    // with it its generation: the version counter, which no generation of
    // the record's history exceeds (each generation step is a write), keeps
    // the generation from going down (rule 10) under a login over it.
    let floor = if cur.hidden && !rules.sabotage.hidden_generation_ignored {
        rec.generation.max(cur.version)
    } else {
        rec.generation
    };
    let next = Verdict::Write {
        generation: floor + 1,
        cas: cur.version,
    };
    if let (None, Some(refused)) = (&u.record.refresh_token, &u.base.fp) {
        return put_back(rec, u, refused, next);
    }
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
        // The predecessor. Unless a put stored it again since (a stale
        // token given to `put`: the generation went up and the put history
        // names it): then this successor was landed and rotated before, and
        // landing it again would bring back a spent token.
        Some(base)
            if rec.holds(base)
                && (rec.generation <= u.base.generation || !rec.put_fps.contains(base)) =>
        {
            next
        }
        // A secret (no refresh token): lands if nothing landed since.
        None if rec.generation == u.base.generation => next,
        _ => Verdict::Discard,
    }
}

/// A client secret going back over the one Snyk refused (`rotate_secret`'s
/// rollback, docs/protocol.md rule 15; `refused`: that one's digest): over
/// a record that still holds the refused one and carries no claim (a claim:
/// a rotation of it is under way, which lands first or lets go; [`land`]
/// reads one past the takeover period as none), or over
/// the rotation's own claimed record at the base generation (the refused
/// secret never landed there; the write moves the generation past it).
fn put_back(rec: &Record, u: &Unlanded, refused: &str, next: Verdict) -> Verdict {
    let secret = |r: &Record| r.client_secret.as_ref().map(Secret::digest);
    let holds_back = secret(rec) == secret(&u.record);
    if rec.deleted {
        Verdict::Discard
    } else if holds_back && rec.generation == u.base.generation {
        next
    } else if holds_back {
        Verdict::AlreadyThere
    } else if secret(rec).as_deref() != Some(refused) {
        Verdict::Discard
    } else if rec.claim.is_some() {
        Verdict::Wait
    } else {
        next
    }
}

/// Journals a successor that needs no send (a login's token, a new client
/// secret: each the only copy there is) and lands it: the same
/// persist-before-publish path as a refresh. Neither the journal nor the
/// store taking it, it stays in memory ([`Landing::InMemory`]) for a lander,
/// never dropped; the journal on disk still holds what it replaces.
pub async fn persist<I: Io>(
    io: &mut I,
    mem: &mut Memory,
    rules: &Rules,
    record: Record,
    base: Base,
) -> Landing {
    if base.login {
        // A login starts a new chain (a human reset, rule 4).
        mem.claim = None;
        mem.pending = None;
        mem.doubt_since = None;
        mem.dead = None;
        mem.watch = None;
        mem.malformed = None;
        mem.replaced = None;
    }
    let fresh_login = base.login;
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
        return Landing::InMemory;
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
            // A version another tool deleted hides its generation: the
            // version counter bounds it (see `succession`).
            generation: cur
                .record
                .generation
                .max(mem.generation)
                .max(if cur.hidden { cur.version } else { 0 })
                + 1,
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
    mem.replaced = None;
    let _ = io.note(&mem.entry(io.wall())).await;
    Ok(())
}

/// An agent id from a record, printable and short.
pub(super) fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::new(Claims::Store, false, Duration::from_secs(30))
    }

    fn stored(token: &str, generation: u64, version: u64) -> Versioned {
        Versioned {
            record: Record {
                refresh_token: Some(Secret::new(token)),
                generation,
                ..Default::default()
            },
            version,
            hidden: false,
        }
    }

    fn successor(token: &str, base: Option<&str>, generation: u64, login: bool) -> Unlanded {
        Unlanded {
            record: Record {
                refresh_token: Some(Secret::new(token)),
                generation: generation + 1,
                ..Default::default()
            },
            base: Base {
                fp: base.map(|b| Secret::new(b).digest()),
                generation,
                login,
                via: Vec::new(),
            },
            journaled: true,
            fresh_login: false,
        }
    }

    #[test]
    fn a_successor_lands_only_over_its_own_predecessor() {
        let u = successor("T", Some("S"), 4, false);
        assert!(matches!(
            succession(Some(&stored("S", 4, 9)), &u, &rules()),
            Verdict::Write {
                generation: 5,
                cas: 9
            }
        ));
        // A newer rotation (or anything else) is never overwritten.
        assert!(matches!(
            succession(Some(&stored("U", 6, 12)), &u, &rules()),
            Verdict::Discard
        ));
        assert!(matches!(succession(None, &u, &rules()), Verdict::Discard));
        // Already there (a landing whose answer was lost).
        assert!(matches!(
            succession(Some(&stored("T", 5, 10)), &u, &rules()),
            Verdict::AlreadyThere
        ));
    }

    #[test]
    fn a_replayed_login_lands_unless_something_newer_landed_since() {
        let login = successor("L", None, 4, true);
        assert!(matches!(
            succession(Some(&stored("S", 4, 9)), &login, &rules()),
            Verdict::Write { .. }
        ));
        assert!(matches!(
            succession(Some(&stored("T", 5, 10)), &login, &rules()),
            Verdict::Discard
        ));
        let mut fresh = login.clone();
        fresh.fresh_login = true;
        let mut after_delete = stored("gone", 5, 10);
        after_delete.record.deleted = true;
        // A tombstone stops a rotation, not a login made after the delete.
        assert!(matches!(
            succession(
                Some(&after_delete),
                &successor("T", Some("S"), 4, false),
                &rules()
            ),
            Verdict::Discard
        ));
        let mut late = successor("L", None, 5, true);
        late.fresh_login = true;
        assert!(matches!(
            succession(Some(&after_delete), &late, &rules()),
            Verdict::Write { .. }
        ));
    }

    #[test]
    fn without_succession_switched_on_anything_would_be_overwritten() {
        let mut r = rules();
        r.sabotage.no_succession = true;
        let u = successor("T", Some("S"), 4, false);
        assert!(matches!(
            succession(Some(&stored("U", 6, 12)), &u, &r),
            Verdict::Write { .. }
        ));
    }
}
