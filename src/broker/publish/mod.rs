//! Publishing access tokens for jobs that cannot reach the socket
//! (`[publish]`): each covered credential's current access token — only
//! `access_token`, `expires_at`, `api_url`, `org_id` and the ordering
//! `generation` ([`crate::wire::published`]) — at a KV v2 path of its own
//! ([`TokenShelf`]), which jobs read with their own platform identity
//! (OpenBao's JWT auth: `snykey token --from-openbao`, `hashicorp/vault-action`,
//! GitLab's `secrets: vault`).
//!
//! * **Off the token path.** The broker hands every token it mints to
//!   [`Publisher::offer_token`] (a map insert and a timer, no await); a
//!   worker writes it. A write that fails is logged, counted
//!   (`snykey_publishes_total{result="failed"}`), shown in `GET
//!   /v1/credentials`, `/v1/ready`'s body and `snykey doctor`, and retried
//!   with backoff; serving tokens on the socket never waits for it.
//! * **Only newer, never after a delete.** Every write is a check-and-set on
//!   the version read, decided by [`decide::decide`] (a pure function the
//!   simulation runs too): several agents publishing the same credential
//!   never move the record back, and nothing minted before a delete (or
//!   replaced by a put) is published after it.
//! * **Always `min_validity` left.** The proactive refresh of a published
//!   credential is planned so that the next token is published while the
//!   current one still has `publish.min_validity` left ([`decide::refresh_by`]);
//!   if no new token comes in time (Snyk down), the published one is
//!   withdrawn before it falls below that ([`decide::withdraw_at`]): a job
//!   finds no token rather than one that runs out under it.
//! * **Deleted with the credential.** A delete writes a `deleted` marker and
//!   destroys every older version: no version keeps a deleted credential's
//!   token.

pub mod decide;
mod hooks;
mod worker;

use super::scheduler::Scheduler;
use crate::access::Pattern;
use crate::cache::CachedToken;
use crate::clock::Clock;
use crate::credential::{CredKey, Published, Withdrawn};
use crate::locks::Recover;
use crate::secret::Secret;
use crate::store::TokenShelf;
use decide::{Offer, Shelved, Verdict};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, watch};

/// `[publish]` as the broker takes it.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// What is published always has at least this long left.
    pub min_validity: Duration,
    /// The credentials published; empty: every one.
    pub credentials: Vec<Pattern>,
}

/// Writes published tokens (module docs). One per agent.
pub struct Publisher {
    shelf: Arc<dyn TokenShelf>,
    settings: PublishSettings,
    clock: Arc<dyn Clock>,
    /// When each credential's path is next looked at: at once after an
    /// offer, at [`decide::withdraw_at`] of what it holds, or after a backoff.
    queue: Arc<Scheduler>,
    entries: Mutex<HashMap<CredKey, Entry>>,
    /// Woken whenever a worker finishes ([`Publisher::settle`]).
    settled: Notify,
}

/// One credential's publishing, in this agent.
#[derive(Default)]
struct Entry {
    /// What to write next; the newest offer wins.
    pending: Option<Pending>,
    /// A worker is at it (one at a time per credential).
    busy: bool,
    /// What the path held after this agent's last look.
    seen: Option<Shelved>,
    /// The lifetime of the last token offered (the withdrawal's grace).
    lifetime: Option<Duration>,
    /// The grace of the planned validity check ([`decide::grace`]).
    check_grace: Duration,
    failures: u32,
    last_error: Option<String>,
    /// Writes tried, for [`Publisher::settle`].
    attempts: u64,
    /// Said once: the validity cannot be kept with this token lifetime.
    warned_short: bool,
}

#[derive(Clone)]
struct Pending {
    offer: Offer,
    token: Option<Secret>,
    api_url: Option<String>,
    lifetime: Option<Duration>,
}

impl Publisher {
    pub fn new(
        shelf: Arc<dyn TokenShelf>,
        settings: PublishSettings,
        clock: Arc<dyn Clock>,
    ) -> Arc<Publisher> {
        Arc::new(Publisher {
            shelf,
            settings,
            clock,
            queue: Scheduler::new(),
            entries: Mutex::new(HashMap::new()),
            settled: Notify::new(),
        })
    }

    /// Is this credential's token published?
    pub fn covers(&self, key: &CredKey) -> bool {
        self.settings.credentials.is_empty()
            || self.settings.credentials.iter().any(|p| p.matches(key))
    }

    pub fn min_validity(&self) -> Duration {
        self.settings.min_validity
    }

    /// The path jobs read for `key`.
    pub fn path(&self, key: &CredKey) -> String {
        self.shelf.path(key)
    }

    /// A token the broker handed out, minted at `generation`: published
    /// when newer than what the path holds. Never waits.
    pub fn offer_token(
        &self,
        key: &CredKey,
        token: &CachedToken,
        generation: u64,
        api_url: Option<&str>,
    ) {
        if !self.covers(key) || token.access_token.is_empty() {
            return;
        }
        let lifetime = token.lifetime();
        if let Some(l) = lifetime {
            self.warn_if_too_short(key, l);
        }
        self.enqueue(
            key,
            Pending {
                offer: Offer::Token {
                    generation,
                    expires_at: token.expires_at,
                },
                token: Some(token.access_token.clone()),
                api_url: api_url.map(str::to_string),
                lifetime,
            },
        );
    }

    /// No token any more (a delete, a put without a token yet): the path
    /// gets a marker at `generation`. Never waits.
    pub fn withdraw(&self, key: &CredKey, generation: u64, why: Withdrawn) {
        if !self.covers(key) {
            return;
        }
        self.enqueue(
            key,
            Pending {
                offer: Offer::Withdraw { generation, why },
                token: None,
                api_url: None,
                lifetime: None,
            },
        );
    }

    fn warn_if_too_short(&self, key: &CredKey, lifetime: Duration) {
        let v = self.settings.min_validity;
        if v <= lifetime.mul_f64(0.8) {
            return;
        }
        let mut m = self.entries.lock().recover();
        let e = m.entry(key.clone()).or_default();
        if !e.warned_short {
            e.warned_short = true;
            tracing::warn!(org_id = %key.org, client_id = %key.client,
                lifetime_s = lifetime.as_secs(), min_validity_s = v.as_secs(),
                "publish.min_validity is more than 4/5 of this credential's token lifetime: its published token cannot always keep it (lower publish.min_validity)");
        }
    }

    fn enqueue(&self, key: &CredKey, new: Pending) {
        {
            let mut m = self.entries.lock().recover();
            let e = m.entry(key.clone()).or_default();
            let now = self.clock.now();
            e.pending = Some(match e.pending.take() {
                Some(old) if !supersedes(&old, &new, now) => old,
                _ => new,
            });
        }
        self.queue.schedule(key, tokio::time::Instant::now());
    }

    /// Runs the workers until shutdown (the broker spawns it at start).
    pub(super) fn spawn(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        let me = Arc::clone(self);
        tokio::spawn(Arc::clone(&self.queue).run(
            move |key| {
                let me = Arc::clone(&me);
                async move { me.work(key).await }
            },
            shutdown,
        ));
    }

    /// Waits (at most `wait`) until a worker has tried what is pending for
    /// `key` now. `Err` says why it is not written yet (the worker goes on
    /// retrying).
    pub async fn settle(&self, key: &CredKey, wait: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + wait;
        let before = match self.entries.lock().recover().get(key) {
            Some(e) if e.pending.is_some() || e.busy => e.attempts,
            _ => return Ok(()),
        };
        loop {
            let notified = self.settled.notified();
            {
                let m = self.entries.lock().recover();
                match m.get(key) {
                    None => return Ok(()),
                    Some(e) if e.attempts > before && !e.busy => {
                        return match (e.failures, &e.last_error) {
                            (0, _) => Ok(()),
                            (_, err) => Err(err.clone().unwrap_or_default()),
                        };
                    }
                    Some(_) => {}
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(format!(
                    "OpenBao did not take the write within {}s",
                    wait.as_secs()
                ));
            }
        }
    }

    /// What `GET /v1/credentials` shows of `key` (`None`: not published).
    pub fn status(&self, key: &CredKey) -> Option<Published> {
        if !self.covers(key) {
            return None;
        }
        let m = self.entries.lock().recover();
        let e = m.get(key);
        let seen = e.and_then(|e| e.seen);
        Some(Published {
            path: self.path(key),
            expires_at: match seen {
                Some(Shelved::Token { expires_at, .. }) => Some(expires_at),
                _ => None,
            },
            withdrawn: match seen {
                Some(Shelved::Withdrawn { why, .. }) => Some(why),
                _ => None,
            },
            failures: e.map_or(0, |e| e.failures),
            last_error: e.and_then(|e| e.last_error.clone()),
        })
    }

    /// How many credentials' last write failed, and one of their errors.
    pub fn failing(&self) -> (usize, Option<String>) {
        let m = self.entries.lock().recover();
        let mut n = 0;
        let mut last = None;
        for (key, e) in m.iter().filter(|(_, e)| e.failures > 0) {
            n += 1;
            if last.is_none() {
                last = e.last_error.as_ref().map(|err| format!("{key}: {err}"));
            }
        }
        (n, last)
    }
}

/// Is `new` newer than `old` (two offers for one credential)? The same rule
/// as for the path, with no validity floor.
fn supersedes(old: &Pending, new: &Pending, now: SystemTime) -> bool {
    let as_shelved = match old.offer {
        Offer::Token {
            generation,
            expires_at,
        } => Shelved::Token {
            generation,
            expires_at,
        },
        Offer::Withdraw { generation, why } => Shelved::Withdrawn { generation, why },
        Offer::Check { .. } => return true,
    };
    match new.offer {
        Offer::Check { .. } => false,
        offer => matches!(
            decide::decide(as_shelved, offer, now, Duration::ZERO),
            Verdict::Write(_)
        ),
    }
}

#[cfg(test)]
mod tests;
