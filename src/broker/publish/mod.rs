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

use super::Broker;
use super::scheduler::{self, Scheduler};
use super::slot::Slot;
use crate::access::Pattern;
use crate::cache::CachedToken;
use crate::clock::{Clock, rfc3339};
use crate::credential::{CredKey, Published, Withdrawn};
use crate::locks::Recover;
use crate::secret::Secret;
use crate::store::{StoreError, TokenShelf};
use crate::wire::published::PublishedToken;
use decide::{Kept, Offer, Shelved, Verdict};
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

    /// One credential's turn: writes what is pending (or checks the
    /// validity of what the path holds), then plans the next look.
    async fn work(self: Arc<Self>, key: CredKey) {
        {
            let mut m = self.entries.lock().recover();
            let Some(e) = m.get_mut(&key) else {
                return;
            };
            if e.busy {
                // The worker at it takes the new offer when it is done.
                return;
            }
            e.busy = true;
        }
        loop {
            let (pending, grace) = match self.entries.lock().recover().get_mut(&key) {
                Some(e) => (e.pending.take(), e.check_grace),
                None => (None, Duration::ZERO),
            };
            let offer = pending.as_ref().map_or(Offer::Check { grace }, |p| p.offer);
            let result = self.apply(&key, offer, pending.as_ref()).await;
            let mut m = self.entries.lock().recover();
            let Some(e) = m.get_mut(&key) else {
                break;
            };
            e.attempts += 1;
            match result {
                Ok(seen) => {
                    e.seen = Some(seen);
                    e.failures = 0;
                    e.last_error = self.refusal(&key, pending.as_ref(), seen);
                    if let Some(l) = pending.as_ref().and_then(|p| p.lifetime) {
                        e.lifetime = Some(l);
                    }
                    if e.pending.is_some() {
                        continue;
                    }
                    e.busy = false;
                    let deleted = matches!(
                        pending.as_ref().map(|p| p.offer),
                        Some(Offer::Withdraw {
                            why: Withdrawn::Deleted,
                            ..
                        })
                    );
                    if deleted {
                        // Done with a deleted credential.
                        m.remove(&key);
                        self.queue.cancel(&key);
                    } else {
                        let now = self.clock.now();
                        let lifetime = e.lifetime.unwrap_or_else(|| match seen {
                            Shelved::Token { expires_at, .. } => {
                                expires_at.duration_since(now).unwrap_or_default()
                            }
                            _ => Duration::ZERO,
                        });
                        e.check_grace = decide::grace(lifetime);
                        // A check that kept the token runs again no sooner
                        // than a second later (never a spin).
                        let floor = if pending.is_none() {
                            Duration::from_secs(1)
                        } else {
                            Duration::ZERO
                        };
                        self.plan_check(&key, seen, e.check_grace, floor);
                    }
                }
                Err(err) => {
                    e.failures = e.failures.saturating_add(1);
                    let message = err.to_string();
                    if e.last_error.as_deref() != Some(message.as_str()) {
                        tracing::warn!(org_id = %key.org, client_id = %key.client,
                            path = %self.shelf.path(&key), error = %message, failures = e.failures,
                            "cannot write the published token for jobs; retrying (tokens are still served on the socket)");
                    } else {
                        tracing::debug!(org_id = %key.org, client_id = %key.client, error = %message, "the published token still cannot be written");
                    }
                    e.last_error = Some(message);
                    // The offer is kept, unless a newer one came meanwhile.
                    if let Some(p) = pending {
                        let now = self.clock.now();
                        e.pending = Some(match e.pending.take() {
                            Some(newer) if supersedes(&p, &newer, now) => newer,
                            _ => p,
                        });
                    }
                    e.busy = false;
                    crate::metrics::publish("failed");
                    let wait = scheduler::backoff(e.failures, None, rand::random::<f64>());
                    self.queue
                        .schedule(&key, tokio::time::Instant::now() + wait);
                }
            }
            break;
        }
        self.settled.notify_waiters();
    }

    /// A token that was offered and not written for a reason an operator
    /// should see (the status shows it); `None` when all is well.
    fn refusal(&self, key: &CredKey, pending: Option<&Pending>, seen: Shelved) -> Option<String> {
        let Some(Offer::Token { generation, .. }) = pending.map(|p| p.offer) else {
            return None;
        };
        match seen {
            Shelved::Withdrawn {
                generation: g,
                why: Withdrawn::Deleted,
            } if g >= generation => Some(format!(
                "{} holds the deletion marker of generation {g}, above this credential's {generation}: if its store record was removed by hand (bao kv metadata delete), remove the published path too (bao kv metadata delete {})",
                self.shelf.path(key),
                self.shelf.path(key)
            )),
            _ => None,
        }
    }

    /// The next look at `key`: when what it holds must be withdrawn if no
    /// newer token replaced it by then ([`decide::withdraw_at`]), at least
    /// `floor` from now.
    fn plan_check(&self, key: &CredKey, seen: Shelved, grace: Duration, floor: Duration) {
        let Shelved::Token { expires_at, .. } = seen else {
            self.queue.cancel(key);
            return;
        };
        let now = self.clock.now();
        let when = decide::withdraw_at(expires_at, grace, self.settings.min_validity);
        let delay = when
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .max(floor);
        self.queue
            .schedule(key, tokio::time::Instant::now() + delay);
    }

    /// Reads the path, decides, writes by check-and-set (again after a
    /// conflict). What the path holds afterwards.
    async fn apply(
        &self,
        key: &CredKey,
        offer: Offer,
        pending: Option<&Pending>,
    ) -> Result<Shelved, StoreError> {
        let deleting = matches!(
            offer,
            Offer::Withdraw {
                why: Withdrawn::Deleted,
                ..
            }
        );
        for _ in 0..5 {
            let on = self.shelf.read(key).await?;
            let current = shelved(on.record.as_ref());
            match decide::decide(current, offer, self.clock.now(), self.settings.min_validity) {
                Verdict::Keep(why) => {
                    self.kept(key, offer, why);
                    if deleting
                        && matches!(
                            current,
                            Shelved::Withdrawn {
                                why: Withdrawn::Deleted,
                                ..
                            }
                        )
                    {
                        // Marked by another agent (or by us, whose destroy
                        // failed): the deleted credential's tokens go.
                        self.shelf.destroy_before(key, on.version).await?;
                    }
                    return Ok(current);
                }
                Verdict::Write(next) => {
                    let record = self.record(key, next, pending);
                    match self.shelf.write(key, &record, on.version).await {
                        Ok(version) => {
                            self.written(key, next);
                            if deleting {
                                self.shelf.destroy_before(key, version).await?;
                            }
                            return Ok(next);
                        }
                        // Someone else wrote meanwhile: read and decide again.
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "{} kept changing under this agent (other agents publishing): tried again later",
            self.shelf.path(key)
        )))
    }

    /// The record that makes the path hold `next`.
    fn record(&self, key: &CredKey, next: Shelved, pending: Option<&Pending>) -> PublishedToken {
        let org_id = key.org.to_string();
        match next {
            Shelved::Token {
                generation,
                expires_at,
            } => PublishedToken {
                access_token: pending.and_then(|p| p.token.clone()),
                expires_at: Some(rfc3339(expires_at)),
                api_url: pending.and_then(|p| p.api_url.clone()),
                org_id,
                generation,
                withdrawn: None,
            },
            Shelved::Withdrawn { generation, why } => PublishedToken {
                org_id,
                generation,
                withdrawn: Some(why),
                ..Default::default()
            },
            Shelved::Empty => PublishedToken {
                org_id,
                ..Default::default()
            },
        }
    }

    fn written(&self, key: &CredKey, next: Shelved) {
        let path = self.shelf.path(key);
        match next {
            Shelved::Token {
                generation,
                expires_at,
            } => {
                crate::metrics::publish("written");
                tracing::debug!(org_id = %key.org, client_id = %key.client, %path, generation,
                    expires_at = %rfc3339(expires_at), "published the access token for jobs");
            }
            Shelved::Withdrawn {
                why: Withdrawn::Deleted,
                ..
            } => {
                crate::metrics::publish("deleted");
                tracing::info!(org_id = %key.org, client_id = %key.client, %path,
                    "the published token of a deleted credential is removed (every version)");
            }
            Shelved::Withdrawn { why, .. } => {
                crate::metrics::publish("withdrawn");
                tracing::warn!(org_id = %key.org, client_id = %key.client, %path, reason = why.as_str(),
                    "withdrew the published token: {}", why.explain());
            }
            Shelved::Empty => {}
        }
    }

    fn kept(&self, key: &CredKey, offer: Offer, why: Kept) {
        match (offer, why) {
            (Offer::Check { .. }, _) => {}
            (_, Kept::TooShort) => {
                crate::metrics::publish("unchanged");
                tracing::warn!(org_id = %key.org, client_id = %key.client,
                    "a token with less than publish.min_validity left is not published");
            }
            (_, Kept::Deleted) => {
                crate::metrics::publish("unchanged");
                tracing::debug!(org_id = %key.org, client_id = %key.client,
                    "not published: the credential was deleted after this token was minted");
            }
            _ => crate::metrics::publish("unchanged"),
        }
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

/// What a published record means to [`decide::decide`]. A record that is
/// neither a token nor a marker is written over.
fn shelved(record: Option<&PublishedToken>) -> Shelved {
    let Some(r) = record else {
        return Shelved::Empty;
    };
    if let Some(why) = r.withdrawn {
        return Shelved::Withdrawn {
            generation: r.generation,
            why,
        };
    }
    match (&r.access_token, r.expiry()) {
        (Some(t), Some(expires_at)) if !t.is_empty() => Shelved::Token {
            generation: r.generation,
            expires_at,
        },
        _ => Shelved::Empty,
    }
}

impl Broker {
    /// The broker's hook: a token it hands out (minted, landed or logged in
    /// at `generation`, its record's generation as this agent knows it)
    /// goes to the publisher too. Never waits.
    pub(super) fn offer_published(&self, slot: &Slot, generation: u64, token: &CachedToken) {
        if let Some(p) = &self.publisher {
            let api_url = slot.api_url();
            let api_url = api_url.as_deref().or(self.snyk_api());
            p.offer_token(&slot.key, token, generation, api_url);
        }
    }

    /// The credential has no token to publish any more (module docs).
    pub(super) fn withdraw_published(&self, key: &CredKey, generation: u64, why: Withdrawn) {
        if let Some(p) = &self.publisher {
            p.withdraw(key, generation, why);
        }
    }

    /// After a delete: a sentence on its published token, once the
    /// publisher tried (`None` when it is not published).
    pub(super) async fn published_removal(&self, key: &CredKey) -> Option<String> {
        let p = self.publisher.as_ref().filter(|p| p.covers(key))?;
        let path = p.path(key);
        Some(match p.settle(key, Duration::from_secs(10)).await {
            Ok(()) => format!("its published token at {path} is removed"),
            Err(e) => format!(
                "its published token at {path} is not removed yet ({e}); the agent keeps trying"
            ),
        })
    }

    /// The validity a published credential's tokens must keep (the
    /// proactive refresh honours it), if it is published.
    pub(super) fn publish_validity(&self, key: &CredKey) -> Option<Duration> {
        self.publisher
            .as_ref()
            .filter(|p| p.covers(key))
            .map(|p| p.min_validity())
    }

    /// What `GET /v1/credentials` shows of publishing `key`.
    pub(super) fn published_status(&self, key: &CredKey) -> Option<Published> {
        self.publisher.as_ref()?.status(key)
    }

    /// `/v1/ready`'s warning while writes of published tokens fail (the
    /// agent is ready: it serves tokens on its socket).
    pub fn publish_warning(&self) -> Option<String> {
        let p = self.publisher.as_ref()?;
        match p.failing() {
            (0, _) => None,
            (n, last) => Some(format!(
                "publishing tokens for jobs fails for {n} credential(s) (last: {}): jobs reading them may find an old or no token; the agent retries",
                last.unwrap_or_default()
            )),
        }
    }

    /// Starts the publisher's workers (at start-up).
    pub(super) fn start_publisher(&self) {
        if let Some(p) = &self.publisher {
            p.spawn(self.shutdown.clone());
        }
    }

    /// The publish-failing gauge, at each scrape.
    pub(super) fn export_publish_gauge(&self) {
        let n = self.publisher.as_ref().map_or(0, |p| p.failing().0);
        crate::metrics::get().publish_failing.set(n as i64);
    }
}

#[cfg(test)]
mod tests;
