//! How the API asks the agent for a reload (`POST /v1/reload`): a channel to
//! the agent's signal task, which owns the configuration in force and runs
//! one reload at a time (`crate::reload`); the answer is the outcome.

use crate::wire::Reloaded;
use tokio::sync::{mpsc, oneshot};

/// Why a reload request did not apply a configuration.
#[derive(Debug)]
pub enum ReloadFailed {
    /// The new configuration is invalid; the running one stays. The sentence says why.
    Refused(String),
    /// The agent is stopping: nothing was reloaded.
    Stopping,
}

type Reply = oneshot::Sender<Result<Reloaded, String>>;

/// The handle the API holds to ask the signal task for a reload.
#[derive(Clone)]
pub struct ReloadRequests(mpsc::Sender<Reply>);

/// The signal task's end of [`ReloadRequests`].
pub struct ReloadInbox(mpsc::Receiver<Reply>);

/// A connected pair: requests sent on the first arrive in the second.
pub fn channel() -> (ReloadRequests, ReloadInbox) {
    // Reloads run one at a time; a few more may wait their turn.
    let (tx, rx) = mpsc::channel(8);
    (ReloadRequests(tx), ReloadInbox(rx))
}

impl ReloadRequests {
    /// Asks for a reload and waits until it was applied or refused.
    pub async fn reload(&self) -> Result<Reloaded, ReloadFailed> {
        let (tx, rx) = oneshot::channel();
        self.0.send(tx).await.map_err(|_| ReloadFailed::Stopping)?;
        match rx.await {
            Ok(outcome) => outcome.map_err(ReloadFailed::Refused),
            Err(_) => Err(ReloadFailed::Stopping),
        }
    }
}

impl ReloadInbox {
    /// The next request; `None` once every [`ReloadRequests`] is gone.
    pub async fn next(&mut self) -> Option<impl FnOnce(Result<Reloaded, String>)> {
        let reply = self.0.recv().await?;
        Some(move |outcome| {
            // The caller may have gone away; the reload happened all the same.
            let _ = reply.send(outcome);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_gets_the_outcome_and_a_stopped_agent_says_so() {
        let (requests, mut inbox) = channel();
        let served = tokio::spawn(async move {
            let reply = inbox.next().await.unwrap();
            reply(Err("the new configuration is invalid: x".into()));
            // The signal task ends (the agent stops): later requests are told.
        });
        match requests.reload().await {
            Err(ReloadFailed::Refused(why)) => assert!(why.contains("invalid: x"), "{why}"),
            other => panic!("{other:?}"),
        }
        served.await.unwrap();
        assert!(matches!(
            requests.reload().await,
            Err(ReloadFailed::Stopping)
        ));
    }
}
