//! The broker's side of publishing: what it hands the publisher, and what
//! it asks of it for status, readiness and the proactive refresh's plan.

use super::super::Broker;
use super::super::slot::Slot;
use crate::cache::CachedToken;
use crate::credential::{CredKey, Published, Withdrawn};
use std::time::Duration;

impl Broker {
    /// The broker's hook: a token it hands out (minted, landed or logged in
    /// at `generation`, its record's generation as this agent knows it)
    /// goes to the publisher too. Never waits.
    pub(in crate::broker) fn offer_published(
        &self,
        slot: &Slot,
        generation: u64,
        token: &CachedToken,
    ) {
        if let Some(p) = &self.publisher {
            let api_url = slot.api_url();
            let api_url = api_url.as_deref().or(self.snyk_api());
            p.offer_token(&slot.key, token, generation, api_url);
        }
    }

    /// The credential has no token to publish any more (module docs).
    pub(in crate::broker) fn withdraw_published(
        &self,
        key: &CredKey,
        generation: u64,
        why: Withdrawn,
    ) {
        if let Some(p) = &self.publisher {
            p.withdraw(key, generation, why);
        }
    }

    /// After a delete: a sentence on its published token, once the
    /// publisher tried (`None` when it is not published).
    pub(in crate::broker) async fn published_removal(&self, key: &CredKey) -> Option<String> {
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
    pub(in crate::broker) fn publish_validity(&self, key: &CredKey) -> Option<Duration> {
        self.publisher
            .as_ref()
            .filter(|p| p.covers(key))
            .map(|p| p.min_validity())
    }

    /// What `GET /v1/credentials` shows of publishing `key`.
    pub(in crate::broker) fn published_status(&self, key: &CredKey) -> Option<Published> {
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
    pub(in crate::broker) fn start_publisher(&self) {
        if let Some(p) = &self.publisher {
            p.spawn(self.shutdown.clone());
        }
    }

    /// The publish-failing gauge, at each scrape.
    pub(in crate::broker) fn export_publish_gauge(&self) {
        let n = self.publisher.as_ref().map_or(0, |p| p.failing().0);
        crate::metrics::get().publish_failing.set(n as i64);
    }
}
