//! What every request handler can reach: the broker, the access policy
//! in force (replaced whole on a reload), and the way to ask for a reload.

use super::callback::CallbackListener;
use super::reloads::ReloadRequests;
use crate::access::Policy;
use crate::broker::Broker;
use crate::locks::Recover;
use std::sync::{Arc, RwLock};

/// What every request handler can reach.
pub struct AppState {
    pub broker: Arc<Broker>,
    /// Replaced whole on SIGHUP; a request takes its own `Arc` of it.
    pub access: RwLock<Arc<Policy>>,
    /// The browser-login callback listener, bound on demand (`None`: no
    /// browser logins, as in tests of the API alone).
    pub callback: Option<Arc<CallbackListener>>,
    /// `POST /v1/reload` asks the agent's signal task through this.
    pub reloads: ReloadRequests,
}

impl AppState {
    /// `access.own_uid` is set here: the agent's own uid is always allowed
    /// and always an admin (it can read the store anyway).
    pub fn new(
        broker: Arc<Broker>,
        access: Policy,
        callback: Option<Arc<CallbackListener>>,
        reloads: ReloadRequests,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            broker,
            access: RwLock::new(Arc::new(with_own_uid(access))),
            callback,
            reloads,
        })
    }

    pub fn set_access(&self, access: Policy) {
        *self.access.write().recover() = Arc::new(with_own_uid(access));
    }

    /// The rules in force for this request.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.access.read().recover())
    }
}

fn with_own_uid(mut access: Policy) -> Policy {
    // SAFETY: geteuid cannot fail.
    access.own_uid = unsafe { libc::geteuid() };
    access
}
