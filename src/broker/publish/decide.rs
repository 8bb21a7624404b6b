//! The rule every agent follows before it writes a published path: a pure
//! function of what the path holds and what is offered ([`decide`]), so the
//! rotation simulation (`tests/sim.rs`) can run the same rule as the agent.
//!
//! What is published is ordered by **(generation, expiry)**: `generation` is
//! the credential's store generation (docs/protocol.md rule 4: up at every landing,
//! put, login and delete, never down) that the token was minted at, as the
//! minting agent knew it; within one generation the later expiry is newer.
//! Expiry is compared in whole seconds, as it is published. Then:
//!
//! * **Only newer.** A token is written only over an older one, never over a
//!   newer one: agents publishing the same credential, in any order, never
//!   move the record back (check-and-set on the version read makes each
//!   decision stand on what is really there).
//! * **Never after a delete.** A delete leaves a `deleted` marker at its
//!   tombstone's generation, above every token minted before it; only a
//!   token of a later generation (a put or login after the delete) is
//!   written over it. A token in flight during the delete never lands.
//! * **Not past a put.** A `put` whose first token is not minted yet leaves
//!   a `superseded` marker at its record's generation: a token of the chain
//!   it replaced is withdrawn and not written again.
//! * **Always enough validity.** A token with less than `min_validity` left
//!   is never written; one on the path is withdrawn (`stale`, [`Offer::Check`])
//!   before it falls below that (see [`withdraw_at`]). A new token replaces
//!   the marker.
//!
//! [`refresh_by`] is the other half of the last rule: the latest refresh that
//! still publishes its token in time, which the proactive refresh honours.

use crate::credential::Withdrawn;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a published path holds, as far as the rule goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shelved {
    /// Nothing: never written, or removed by another tool.
    Empty,
    /// A token minted at `generation`, expiring at `expires_at`.
    Token {
        generation: u64,
        expires_at: SystemTime,
    },
    /// A marker: no token, and why.
    Withdrawn { generation: u64, why: Withdrawn },
}

/// What an agent asks to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// A token it handed out, minted at `generation` (its view of the
    /// record's generation then: never above what the store held).
    Token {
        generation: u64,
        expires_at: SystemTime,
    },
    /// No token any more: the credential was deleted (`generation`: its
    /// tombstone's), or a put replaced it and has no token yet (`generation`:
    /// the put's record).
    Withdraw { generation: u64, why: Withdrawn },
    /// Nothing new: withdraw the published token if it has no more than
    /// `min_validity` and `grace` left (the check runs `grace` before the
    /// token would have less than `min_validity`: [`withdraw_at`]).
    Check { grace: Duration },
}

/// What to do with the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write this, by check-and-set on the version read.
    Write(Shelved),
    /// Leave it as it is.
    Keep(Kept),
}

/// Why a path is left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// It holds something newer than the offer (or the same).
    Newer,
    /// It holds the marker of a delete that came after the offered token.
    Deleted,
    /// The offered token has less than `min_validity` left.
    TooShort,
    /// [`Offer::Check`]: what it holds needs no withdrawal.
    Fresh,
}

/// The rule (module docs). `now` and `min_validity` judge validity.
pub fn decide(current: Shelved, offer: Offer, now: SystemTime, min_validity: Duration) -> Verdict {
    match offer {
        Offer::Token {
            generation,
            expires_at,
        } => {
            let expires_at = whole_seconds(expires_at);
            if left(expires_at, now) < min_validity {
                return Verdict::Keep(Kept::TooShort);
            }
            let write = match current {
                Shelved::Empty => true,
                Shelved::Token {
                    generation: g,
                    expires_at: e,
                } => generation > g || (generation == g && expires_at > whole_seconds(e)),
                Shelved::Withdrawn {
                    generation: g,
                    why: Withdrawn::Deleted,
                } => generation > g,
                Shelved::Withdrawn { generation: g, .. } => generation >= g,
            };
            match current {
                _ if write => Verdict::Write(Shelved::Token {
                    generation,
                    expires_at,
                }),
                Shelved::Withdrawn {
                    why: Withdrawn::Deleted,
                    ..
                } => Verdict::Keep(Kept::Deleted),
                _ => Verdict::Keep(Kept::Newer),
            }
        }
        Offer::Withdraw { generation, why } => {
            let write = match current {
                // Marked even when empty: a token in flight from before the
                // delete or put must not land after it.
                Shelved::Empty => true,
                Shelved::Token { generation: g, .. } => g < generation,
                Shelved::Withdrawn {
                    generation: g,
                    why: w,
                } => {
                    g < generation
                        || (g == generation && w != Withdrawn::Deleted && why == Withdrawn::Deleted)
                }
            };
            if write {
                Verdict::Write(Shelved::Withdrawn { generation, why })
            } else {
                Verdict::Keep(Kept::Newer)
            }
        }
        Offer::Check { grace } => match current {
            Shelved::Token {
                generation,
                expires_at,
            } if left(whole_seconds(expires_at), now) <= min_validity + grace => {
                Verdict::Write(Shelved::Withdrawn {
                    generation,
                    why: Withdrawn::Stale,
                })
            }
            _ => Verdict::Keep(Kept::Fresh),
        },
    }
}

/// The latest time a credential whose token was issued at `issued` and
/// expires at `expires` must be refreshed so that its next token is
/// published while this one still has `min_validity` left: a tenth of the
/// lifetime is kept for the grant and the write. A `min_validity` above
/// four fifths of the lifetime cannot be kept (every token would be too
/// short soon after it is minted); it is capped there.
pub fn refresh_by(issued: SystemTime, expires: SystemTime, min_validity: Duration) -> SystemTime {
    let lifetime = expires.duration_since(issued).unwrap_or(Duration::ZERO);
    let keep = min_validity.min(lifetime.mul_f64(0.8)) + lifetime / 10;
    expires.checked_sub(keep).unwrap_or(issued).max(issued)
}

/// When a published token expiring at `expires` (whole seconds, as
/// published) is withdrawn if nothing newer replaced it: `min_validity`
/// before it expires, less `grace` ([`grace`] of its lifetime), so that a
/// reader never finds less than `min_validity` left.
pub fn withdraw_at(expires: SystemTime, grace: Duration, min_validity: Duration) -> SystemTime {
    whole_seconds(expires)
        .checked_sub(min_validity + grace)
        .unwrap_or(UNIX_EPOCH)
}

/// How long before a published token would have less than `min_validity`
/// left it is withdrawn, when nothing replaced it: a twentieth of its
/// lifetime, at most 30 s — less than the tenth [`refresh_by`] keeps, so a
/// refresh on time always comes first.
pub fn grace(lifetime: Duration) -> Duration {
    (lifetime / 20).min(Duration::from_secs(30))
}

/// `t` rounded down to a whole second: what is published and read back.
pub fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => UNIX_EPOCH,
    }
}

fn left(expires: SystemTime, now: SystemTime) -> Duration {
    expires.duration_since(now).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Duration = Duration::from_secs(600);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn now() -> SystemTime {
        at(0)
    }

    fn token(generation: u64, expires: u64) -> Shelved {
        Shelved::Token {
            generation,
            expires_at: at(expires),
        }
    }

    fn offer(generation: u64, expires: u64) -> Offer {
        Offer::Token {
            generation,
            expires_at: at(expires),
        }
    }

    fn marker(generation: u64, why: Withdrawn) -> Shelved {
        Shelved::Withdrawn { generation, why }
    }

    #[test]
    fn a_token_is_written_only_over_an_older_one() {
        // Empty: written.
        assert_eq!(
            decide(Shelved::Empty, offer(3, 3600), now(), V),
            Verdict::Write(token(3, 3600))
        );
        // Same generation: the later expiry wins, the earlier or the same is kept.
        assert_eq!(
            decide(token(3, 3000), offer(3, 3600), now(), V),
            Verdict::Write(token(3, 3600))
        );
        assert_eq!(
            decide(token(3, 3600), offer(3, 3000), now(), V),
            Verdict::Keep(Kept::Newer)
        );
        assert_eq!(
            decide(token(3, 3600), offer(3, 3600), now(), V),
            Verdict::Keep(Kept::Newer)
        );
        // A higher generation wins; a lower one never, whatever its expiry.
        assert_eq!(
            decide(token(3, 3600), offer(4, 3500), now(), V),
            Verdict::Write(token(4, 3500))
        );
        assert_eq!(
            decide(token(4, 3000), offer(3, 3600), now(), V),
            Verdict::Keep(Kept::Newer)
        );
    }

    #[test]
    fn expiry_is_compared_in_the_whole_seconds_it_is_published_in() {
        let published = Shelved::Token {
            generation: 1,
            expires_at: at(3600),
        };
        let later_in_the_same_second = Offer::Token {
            generation: 1,
            expires_at: at(3600) + Duration::from_millis(700),
        };
        assert_eq!(
            decide(published, later_in_the_same_second, now(), V),
            Verdict::Keep(Kept::Newer)
        );
        let Verdict::Write(Shelved::Token { expires_at, .. }) =
            decide(Shelved::Empty, later_in_the_same_second, now(), V)
        else {
            panic!("an empty path takes the token");
        };
        assert_eq!(expires_at, at(3600), "rounded down as published");
    }

    #[test]
    fn a_token_with_less_than_the_validity_left_is_never_written() {
        assert_eq!(
            decide(Shelved::Empty, offer(9, 599), now(), V),
            Verdict::Keep(Kept::TooShort)
        );
        assert_eq!(
            decide(marker(1, Withdrawn::Stale), offer(9, 599), now(), V),
            Verdict::Keep(Kept::TooShort)
        );
        assert_eq!(
            decide(Shelved::Empty, offer(9, 600), now(), V),
            Verdict::Write(token(9, 600))
        );
    }

    #[test]
    fn nothing_minted_before_a_delete_is_published_after_it() {
        // The delete marks the path at its tombstone's generation, above
        // every token minted before it.
        assert_eq!(
            decide(
                token(5, 3600),
                Offer::Withdraw {
                    generation: 6,
                    why: Withdrawn::Deleted
                },
                now(),
                V
            ),
            Verdict::Write(marker(6, Withdrawn::Deleted))
        );
        // Even on an empty path.
        assert_eq!(
            decide(
                Shelved::Empty,
                Offer::Withdraw {
                    generation: 6,
                    why: Withdrawn::Deleted
                },
                now(),
                V
            ),
            Verdict::Write(marker(6, Withdrawn::Deleted))
        );
        // A token in flight from before the delete, whatever its expiry.
        for g in [0, 5, 6] {
            assert_eq!(
                decide(marker(6, Withdrawn::Deleted), offer(g, 3600), now(), V),
                Verdict::Keep(Kept::Deleted),
                "generation {g}"
            );
        }
        // A put or login after the delete publishes again.
        assert_eq!(
            decide(marker(6, Withdrawn::Deleted), offer(7, 3600), now(), V),
            Verdict::Write(token(7, 3600))
        );
        // An older delete does not remove a newer credential's token.
        assert_eq!(
            decide(
                token(8, 3600),
                Offer::Withdraw {
                    generation: 6,
                    why: Withdrawn::Deleted
                },
                now(),
                V
            ),
            Verdict::Keep(Kept::Newer)
        );
    }

    #[test]
    fn a_put_withdraws_the_token_of_the_credential_it_replaced() {
        let put = Offer::Withdraw {
            generation: 4,
            why: Withdrawn::Superseded,
        };
        assert_eq!(
            decide(token(3, 3600), put, now(), V),
            Verdict::Write(marker(4, Withdrawn::Superseded))
        );
        // The replaced chain's tokens stay out; the put's own come in.
        assert_eq!(
            decide(marker(4, Withdrawn::Superseded), offer(3, 3600), now(), V),
            Verdict::Keep(Kept::Newer)
        );
        assert_eq!(
            decide(marker(4, Withdrawn::Superseded), offer(4, 3600), now(), V),
            Verdict::Write(token(4, 3600))
        );
        // The put's own token already published: kept.
        assert_eq!(
            decide(token(4, 3600), put, now(), V),
            Verdict::Keep(Kept::Newer)
        );
        // A delete at the same generation outranks a put's marker, not the reverse.
        assert_eq!(
            decide(
                marker(4, Withdrawn::Superseded),
                Offer::Withdraw {
                    generation: 4,
                    why: Withdrawn::Deleted
                },
                now(),
                V
            ),
            Verdict::Write(marker(4, Withdrawn::Deleted))
        );
        assert_eq!(
            decide(marker(4, Withdrawn::Deleted), put, now(), V),
            Verdict::Keep(Kept::Newer)
        );
    }

    #[test]
    fn a_token_about_to_fall_below_the_validity_is_withdrawn_and_a_new_one_replaces_it() {
        let check = Offer::Check {
            grace: Duration::from_secs(30),
        };
        assert_eq!(
            decide(token(2, 631), check, now(), V),
            Verdict::Keep(Kept::Fresh)
        );
        // At the check's time (grace before the floor), or later: withdrawn.
        for left in [630, 599] {
            assert_eq!(
                decide(token(2, left), check, now(), V),
                Verdict::Write(marker(2, Withdrawn::Stale)),
                "{left}s left"
            );
        }
        for other in [
            Shelved::Empty,
            marker(2, Withdrawn::Stale),
            marker(2, Withdrawn::Deleted),
        ] {
            assert_eq!(decide(other, check, now(), V), Verdict::Keep(Kept::Fresh));
        }
        // The same generation (a service account's next grant) replaces it.
        assert_eq!(
            decide(marker(2, Withdrawn::Stale), offer(2, 3600), now(), V),
            Verdict::Write(token(2, 3600))
        );
        assert_eq!(
            decide(marker(2, Withdrawn::Stale), offer(1, 3600), now(), V),
            Verdict::Keep(Kept::Newer)
        );
    }

    #[test]
    fn any_order_of_offers_ends_with_the_newest_and_never_moves_back() {
        // Every order of a set of offers (two agents, a delete, a put) ends
        // with the same state, and the published (generation, expiry) never
        // goes down along the way.
        let offers = [
            offer(1, 3000),
            offer(2, 3300),
            offer(2, 3600),
            offer(3, 3900),
            Offer::Withdraw {
                generation: 3,
                why: Withdrawn::Superseded,
            },
        ];
        let rank = |s: Shelved| match s {
            Shelved::Empty => (0, 0, 0),
            Shelved::Token {
                generation,
                expires_at,
            } => (
                generation,
                1,
                expires_at.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            ),
            Shelved::Withdrawn { generation, .. } => (generation, 0, 0),
        };
        let mut finals = std::collections::HashSet::new();
        let mut order: Vec<usize> = (0..offers.len()).collect();
        permute(&mut order, 0, &mut |o| {
            let mut state = Shelved::Empty;
            for &i in o {
                if let Verdict::Write(next) = decide(state, offers[i], now(), V) {
                    assert!(rank(next) >= rank(state), "{state:?} -> {next:?}");
                    state = next;
                }
            }
            finals.insert(format!("{state:?}"));
        });
        assert_eq!(finals.len(), 1, "{finals:?}");
        assert!(finals.contains(&format!("{:?}", token(3, 3900))));
    }

    fn permute(v: &mut Vec<usize>, k: usize, f: &mut dyn FnMut(&[usize])) {
        if k == v.len() {
            f(v);
            return;
        }
        for i in k..v.len() {
            v.swap(k, i);
            permute(v, k + 1, f);
            v.swap(k, i);
        }
    }

    #[test]
    fn the_refresh_comes_before_the_withdrawal_and_keeps_the_validity() {
        let issued = at(0);
        let expires = at(3600);
        let lifetime = Duration::from_secs(3600);
        let by = refresh_by(issued, expires, V);
        // 10 minutes of validity and 6 of grant margin before expiry.
        assert_eq!(by, at(3600 - 600 - 360));
        let withdraw = withdraw_at(expires, grace(lifetime), V);
        assert_eq!(withdraw, at(3600 - 600 - 30));
        assert!(by < withdraw);
        // A validity beyond what the lifetime allows is capped at 4/5 of it.
        let by = refresh_by(issued, expires, Duration::from_secs(7200));
        assert_eq!(by, at(3600 - 2880 - 360));
        // Short lifetimes keep the order.
        let (issued, expires) = (at(0), at(20));
        let v = Duration::from_secs(6);
        assert!(
            refresh_by(issued, expires, v)
                < withdraw_at(expires, grace(Duration::from_secs(20)), v)
        );
    }
}
