//! Forced refresh (`POST /v1/credentials/{org}/{client}/refresh`,
//! `snykey refresh`, `snykey-helper --refresh`): mint a new access token now,
//! because the one held may have been revoked before its expiry.
//!
//! Deliberately thin: it runs the same single-flight mint as every refresh
//! (so an `oauth_app` credential goes through the rotation rule, docs/protocol.md),
//! with one requirement added: the token must be *newer* than the one the
//! agent holds now. The only state of its own is the rate limit: at most one
//! forced grant per credential per interval (default 10 s,
//! `refresh.force_interval`); every other forced request inside the interval
//! gets the token of the last forced grant, so a loop of helpers cannot burn
//! Snyk's rate limit or rotate a refresh token in a tight loop.

use super::{Broker, BrokerError, CredKey, Want};
use crate::cache::CachedToken;
use crate::locks::Recover;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The default of `refresh.force_interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

static INTERVAL_MS: AtomicU64 = AtomicU64::new(DEFAULT_INTERVAL.as_millis() as u64);

/// Sets the rate limit's interval (at start and on SIGHUP).
pub fn set_interval(d: Duration) {
    INTERVAL_MS.store(d.as_millis() as u64, Ordering::Relaxed);
}

fn interval() -> Duration {
    Duration::from_millis(INTERVAL_MS.load(Ordering::Relaxed))
}

/// The last forced grant of a credential.
struct Forced {
    /// On the monotonic clock: a wall-clock step cannot lift the limit.
    at: Instant,
    token: CachedToken,
}

/// Keyed by the broker (its address: a process normally has one) and the
/// credential. A few dozen bytes per credential ever forced.
type Ledger = HashMap<(usize, CredKey), Forced>;

static LAST: Mutex<Option<Ledger>> = Mutex::new(None);

/// How a forced refresh was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForceOutcome {
    /// A new token was minted for this request.
    Minted,
    /// Another forced refresh inside the interval minted it; this is its token.
    RateLimited,
}

impl Broker {
    /// Mints a token newer than the one held now, unless a forced refresh of
    /// this credential happened within the interval: then its token.
    #[tracing::instrument(name = "credential", level = "error", skip_all, fields(org_id = %key.org, client_id = %key.client))]
    pub async fn force_refresh(
        self: &Arc<Self>,
        key: &CredKey,
    ) -> Result<(CachedToken, ForceOutcome), BrokerError> {
        let slot = self.slot(key).await?;
        let id = (Arc::as_ptr(self) as usize, key.clone());
        let recent = |now: Instant| -> Option<CachedToken> {
            let last = LAST.lock().recover();
            let f = last.as_ref()?.get(&id)?;
            (now.duration_since(f.at) < interval()
                && f.token.remaining(self.clock.now()) > Duration::from_secs(1))
            .then(|| f.token.clone())
        };
        let limited = |t: CachedToken| {
            crate::metrics::get()
                .forced_refreshes
                .with_label_values(&["rate_limited"])
                .inc();
            Ok((t, ForceOutcome::RateLimited))
        };
        if let Some(t) = recent(Instant::now()) {
            return limited(t);
        }
        // Single flight: concurrent forced requests queue here; the first
        // mints, the others find its token in the ledger. The grant runs in
        // a task of its own: a caller that hangs up never cuts it short.
        let broker = Arc::clone(self);
        let key2 = key.clone();
        let (token, minted) = self
            .spawn_grant(async move {
                let key = &key2;
                let mut flight = slot.flight.lock().await;
                {
                    let last = LAST.lock().recover();
                    if let Some(f) = last.as_ref().and_then(|l| l.get(&id)) {
                        if f.at.elapsed() < interval()
                            && f.token.remaining(broker.clock.now()) > Duration::from_secs(1)
                        {
                            return Ok((f.token.clone(), false));
                        }
                    }
                }
                // "Newer than the current token": the newest one anybody has,
                // the shared cache's (another agent may have refreshed), else ours.
                let current = match broker.cache.get(key).await {
                    Ok(Some(t)) => Some(t),
                    _ => slot.hot(),
                };
                let want = Want {
                    validity: Duration::MAX,
                    seen: current.map(|t| t.access_token.fingerprint()),
                };
                tracing::info!("forced refresh: minting a new access token");
                let token = broker.mint(&slot, &mut flight, None, &want).await?;
                LAST.lock()
                    .recover()
                    .get_or_insert_with(HashMap::new)
                    .insert(
                        id,
                        Forced {
                            at: Instant::now(),
                            token: token.clone(),
                        },
                    );
                Ok((token, true))
            })
            .await?;
        if !minted {
            return limited(token);
        }
        crate::metrics::get()
            .forced_refreshes
            .with_label_values(&["minted"])
            .inc();
        Ok((token, ForceOutcome::Minted))
    }
}
