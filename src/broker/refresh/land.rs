//! Single-copy secrets kept (I2): a successor that needs no send (a login's
//! token, a new client secret) persisted through the same path as a
//! refresh, what its landing means for the caller, and the background
//! lander that retries a journaled or in-memory successor until the store
//! takes it, then hands out the access token held back meanwhile.

use crate::broker::agent_io::AgentIo;
use crate::broker::journal::Base;
use crate::broker::rotation::{self, Io, Landing};
use crate::broker::slot::{Flight, Slot};
use crate::broker::{Broker, BrokerError, detached_span};
use crate::credential::State;
use crate::store::Record;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

impl Broker {
    /// Lands a successor that needs no send (a login's token, a new client
    /// secret) through the same persist-before-publish path as a refresh:
    /// journal, then the store by succession. `Ok(true)` once in the store,
    /// `Ok(false)` when journaled only (a lander retries).
    pub(in crate::broker) async fn persist_record(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        record: Record,
        base: Base,
    ) -> Result<bool, BrokerError> {
        let mut io = AgentIo::new(self, &slot.key);
        let landing = rotation::persist(&mut io, &mut flight.mem, &self.rules, record, base).await;
        self.kept(slot, flight, landing)
    }

    /// What a single-copy secret's persist means for the caller: a lander
    /// for what the store does not hold yet (journaled, or held in memory
    /// only), an error when it is not durable or was superseded.
    pub(in crate::broker) fn kept(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        landing: Landing,
    ) -> Result<bool, BrokerError> {
        let key = &slot.key;
        match landing {
            Landing::Landed => Ok(true),
            Landing::Discarded => Err(BrokerError::Busy(format!(
                "a newer change to {key} reached the secret store first; yours was dropped"
            ))),
            Landing::Pending => {
                self.degraded(
                    slot,
                    "waiting for the secret store to take the new credential",
                );
                self.spawn_lander(slot, flight);
                Ok(false)
            }
            Landing::InMemory => {
                // The only copy: kept in memory, retried until the journal
                // or the store takes it (I2); nothing is handed out meanwhile.
                self.degraded(slot, "a new secret is held in memory only");
                self.spawn_lander(slot, flight);
                crate::metrics::refresh("not_durable");
                Err(BrokerError::NotDurable(format!(
                    "neither the secret store nor the recovery journal ({}) accepts writes: the new secret for {key} is held in memory and written as soon as one of them does (keep the agent running)",
                    self.journal.dir().display()
                )))
            }
        }
    }

    /// Retries landing a journaled successor in the background until it
    /// lands or is discarded, then publishes a held-back access token.
    pub(in crate::broker) fn spawn_lander(self: &Arc<Self>, slot: &Arc<Slot>, flight: &mut Flight) {
        if flight.lander_running {
            return;
        }
        flight.lander_running = true;
        let broker = Arc::clone(self);
        let slot = Arc::clone(slot);
        // Its own span (not the caller's): it outlives whoever started it.
        let span = detached_span(&slot.key);
        let lander = async move {
            let mut delay = Duration::from_millis(250);
            let mut shutdown = broker.shutdown.clone();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(crate::clock::jittered(delay, 0.2)) => {}
                    _ = shutdown.changed() => {}
                }
                let mut flight = slot.flight.lock().await;
                if flight.mem.unlanded.is_none() || slot.status().deleted {
                    flight.lander_running = false;
                    return;
                }
                let mut io = AgentIo::new(&broker, &slot.key);
                // What this landing brings: a held token waits for exactly it.
                let waiting_for = crate::broker::slot::unlanded_digest(&flight.mem);
                // Held in memory only: the journal first, whenever it takes
                // writes again (I2).
                if flight.mem.unlanded.as_ref().is_some_and(|u| !u.journaled) {
                    let entry = flight.mem.entry(broker.clock.now());
                    if io.note(&entry).await.is_ok() {
                        if let Some(u) = flight.mem.unlanded.as_mut() {
                            u.journaled = true;
                        }
                    }
                }
                let landing = rotation::land(&mut io, &mut flight.mem, &broker.rules).await;
                let journaled = flight.mem.unlanded.as_ref().is_none_or(|u| u.journaled);
                if landing != Landing::Pending || journaled {
                    // (land() never answers InMemory.)
                    // Durable now: a held-back token may go out.
                    let held_for = flight.held_for.take();
                    if let Some(t) = flight.held.take() {
                        // Not when a later login or rotation replaced the
                        // successor it waited for: that one is dropped (I2).
                        if landing != Landing::Discarded && held_for == waiting_for {
                            broker.publish(&slot, flight.mem.generation, t).await;
                        }
                    }
                }
                if landing != Landing::Pending {
                    if slot.status().state == State::Degraded {
                        let mut st = slot.status();
                        st.state = State::Ok;
                        st.last_error = None;
                    }
                    flight.lander_running = false;
                    return;
                }
                if *shutdown.borrow() {
                    flight.lander_running = false;
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        };
        self.grants.spawn(lander.instrument(span));
    }
}
