//! Each credential's Snyk region (issue 26): the `api_url` its record names,
//! or the agent's `snyk.api_url` when it names none (records of older
//! agents). Its grants, REST calls, token answers (`snyk_api`, exported as
//! `SNYK_API`) and published tokens all take the region from here.

use super::Broker;
use super::slot::Slot;
use crate::credential::{CredKey, Kind};
use crate::snyk::SnykOAuth;
use crate::snyk::rest::SnykRest;
use std::borrow::Cow;
use std::sync::Arc;

/// A token answer's region (`snyk_api`) and `token_type`.
pub type Details = (Option<String>, &'static str);

impl Broker {
    /// Whether `api_url` is the agent's own region (or names none).
    fn is_agent_region(&self, api_url: Option<&str>) -> bool {
        api_url.is_none_or(|u| Some(u) == self.snyk_api.as_deref())
    }

    /// The OAuth client of the region `api_url` (a record's; `None`: the agent's).
    pub(crate) fn oauth_at(&self, api_url: Option<&str>) -> Cow<'_, SnykOAuth> {
        match api_url {
            Some(u) if !self.is_agent_region(Some(u)) => Cow::Owned(self.snyk.at(u)),
            _ => Cow::Borrowed(&self.snyk),
        }
    }

    /// The REST client of the region `api_url` (`None`: the agent's).
    pub(crate) fn rest_at(&self, api_url: Option<&str>) -> Cow<'_, SnykRest> {
        match api_url {
            Some(u) if !self.is_agent_region(Some(u)) => Cow::Owned(self.rest.at(u)),
            _ => Cow::Borrowed(&self.rest),
        }
    }

    /// The region a credential's tokens are valid in, for its token
    /// answers, token files and published tokens: its record's, else the
    /// agent's `snyk.api_url`.
    pub fn snyk_api_for(&self, key: &CredKey) -> Option<String> {
        self.answer_details(key).0
    }

    /// What a token answer says besides the token: the region (as
    /// [`Broker::snyk_api_for`]) and the token's scheme (`token` for an API
    /// key, which the Snyk CLI takes as `SNYK_TOKEN`; `bearer` for the rest).
    pub fn answer_details(&self, key: &CredKey) -> Details {
        self.details_of(self.existing_slot(key).as_ref())
    }

    /// [`Broker::answer_details`] of a slot at hand.
    pub(super) fn details_of(&self, slot: Option<&Arc<Slot>>) -> Details {
        let token_type = match slot.map(|s| s.status().kind) {
            Some(Kind::ApiKey) => crate::render::TOKEN_TYPE_API_KEY,
            _ => crate::render::TOKEN_TYPE_BEARER,
        };
        let api = slot
            .and_then(|s| s.api_url())
            .map(|u| u.to_string())
            .or_else(|| self.snyk_api.clone());
        (api, token_type)
    }

    /// Notes the region of a record this agent just read, wrote or granted
    /// with, for what it hands out next.
    pub(super) fn note_region(&self, key: &CredKey, api_url: Option<&str>) {
        if let Some(slot) = self.existing_slot(key) {
            slot.set_api_url(api_url);
        }
    }
}
