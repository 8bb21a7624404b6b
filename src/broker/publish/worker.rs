//! The publisher's worker: one credential's turn at a time — read the
//! path, ask [`decide::decide`] what may be written over what it holds,
//! write by check-and-set, and plan the next look.

use super::super::scheduler;
use super::decide::{self, Kept, Offer, Shelved, Verdict};
use super::{Entry, Pending, Publisher, supersedes};
use crate::clock::rfc3339;
use crate::credential::{CredKey, Withdrawn};
use crate::locks::Recover;
use crate::store::StoreError;
use crate::wire::published::PublishedToken;
use std::sync::Arc;
use std::time::Duration;

impl Publisher {
    /// One credential's turn: writes what is pending (or checks the
    /// validity of what the path holds), then plans the next look.
    pub(super) async fn work(self: Arc<Self>, key: CredKey) {
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
                Err(err) => self.failed(&key, e, &err, pending),
            }
            break;
        }
        self.settled.notify_waiters();
    }

    /// A write that failed: said once per distinct error, counted, the
    /// offer kept (unless a newer one came meanwhile), retried after a backoff.
    fn failed(&self, key: &CredKey, e: &mut Entry, err: &StoreError, pending: Option<Pending>) {
        e.failures = e.failures.saturating_add(1);
        let message = err.to_string();
        if e.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(org_id = %key.org, client_id = %key.client,
                path = %self.shelf.path(key), error = %message, failures = e.failures,
                "cannot write the published token for jobs; retrying (tokens are still served on the socket)");
        } else {
            tracing::debug!(org_id = %key.org, client_id = %key.client, error = %message, "the published token still cannot be written");
        }
        e.last_error = Some(message);
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
        self.queue.schedule(key, tokio::time::Instant::now() + wait);
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
