//! The rules a refresh runs with: where claims live ([`Claims`]), the
//! periods derived from Snyk's timeout ([`Rules`]: the send window, the
//! takeover period, rule 6's quiet period), and the test-only switches that
//! turn one rule off ([`Sabotage`], for the simulations' teeth).

use std::time::Duration;

/// Where claims live (docs/protocol.md rules 3 and 7, and "Where claims live").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claims {
    /// In the store, by check-and-set before every send: the store arbitrates
    /// between agents (KV v2).
    Store,
    /// In this agent's journal only: the store is used by this agent alone
    /// (the file store, locked with `flock`).
    Journal,
    /// In the journal only, and nothing arbitrates between agents (KV v1):
    /// the Redis lock is the only guard. Start-up and `/v1/ready` warn.
    Unprotected,
}

/// What start-up, `check-config` and `/v1/ready` say with [`Claims::Unprotected`].
pub const UNPROTECTED: &str = "the secret store is KV v1, which has no check-and-set: agents sharing it are not protected from replaying a refresh token (only the Redis lock guards them); use KV v2";

/// Rules the protocol is run with.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub claims: Claims,
    /// Rule 7: may keep rotating with the journal as the durable copy while
    /// the store refuses writes (`store.exclusive`, always for the file store).
    pub exclusive: bool,
    /// A claimant sends only this long after taking its claim (monotonic).
    pub send_window: Duration,
    /// The longest a request to Snyk can take (the HTTP timeout).
    pub snyk_max: Duration,
    /// Rule 5: another agent's claim is taken over only after its version
    /// stayed unchanged this long on our own monotonic clock.
    pub takeover: Duration,
    /// Turns rules off, one at a time, to show the simulation notices.
    #[doc(hidden)]
    pub sabotage: Sabotage,
}

/// Rules a test may switch off (never in the agent: `Rules::new` leaves
/// every switch off, and only `tests/sim.rs` turns one on, to show that the
/// simulation notices the rule is gone).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Sabotage {
    /// Rule 3: send without the claim's check-and-set.
    pub no_claim_cas: bool,
    /// Rule 4: land over whatever the store holds.
    pub no_succession: bool,
    /// Rule 5: take another agent's claim over at once.
    pub no_takeover_wait: bool,
    /// Rule 8: a put replaces a record under another agent's live claim.
    pub put_over_live_claim: bool,
    /// Rule 8: a put forgets the record's history (`prev_fp`, `put_fps`):
    /// a token given again is rotated again.
    pub put_forgets_history: bool,
    /// Rule 4: land the successor in the store first, journal it afterwards.
    pub land_before_journal: bool,
    /// Rule 3: send before the claim is noted in the journal.
    pub send_before_note: bool,
    /// Rule 6: retry an unknown outcome without waiting for the quiet period.
    pub no_quiet_period: bool,
    /// Rule 6: retry an unknown outcome more than once.
    pub retry_without_limit: bool,
    /// Rule 10: a login landing over a version another tool deleted ignores
    /// the version counter (the bound of the hidden generation).
    pub hidden_generation_ignored: bool,
    /// Rule 7: a non-exclusive agent goes on rotating from its journal
    /// while the store refuses writes, as only an exclusive agent may.
    pub chain_without_exclusive: bool,
    // ---- tests/sim_secrets.rs (issue 22): the single-copy secrets of
    // `secrets.rs`. Each breaks one ordering; never set by the agent.
    /// `rotate_secret --mode replace`: the new secret is made durable only
    /// after the test grant (it waits in memory through the grant).
    #[doc(hidden)]
    pub secret_durable_after_proof: bool,
    /// Zero-downtime `rotate_secret`: the old secret is deleted at Snyk
    /// before the new one is durable.
    #[doc(hidden)]
    pub retire_before_durable: bool,
    /// `login`: the access token is handed out (reported landed) although
    /// neither the journal nor the store took its refresh token.
    #[doc(hidden)]
    pub login_hands_out_first: bool,
    /// Zero-downtime `rotate_secret` whose new secret Snyk refused: the
    /// rollback reads the store before journaling the old secret, and gives
    /// it up when the read fails or the record is under a claim.
    #[doc(hidden)]
    pub rollback_store_first: bool,
}

impl Rules {
    /// Rules derived from Snyk's timeout: the takeover period is the send
    /// window + Snyk's maximum request time + a landing grace of two minutes.
    pub fn new(claims: Claims, exclusive: bool, snyk_timeout: Duration) -> Rules {
        let send_window = Duration::from_secs(10);
        Rules {
            claims,
            exclusive,
            send_window,
            snyk_max: snyk_timeout,
            takeover: send_window + snyk_timeout + Duration::from_secs(120),
            sabotage: Sabotage::default(),
        }
    }

    /// Rule 7: may rotate on with the journal as the durable copy while the
    /// store refuses writes (only an exclusive agent; the switch is teeth).
    pub(crate) fn may_chain(&self) -> bool {
        self.exclusive || self.sabotage.chain_without_exclusive
    }

    /// Rule 6: an unknown outcome is retried only after this quiet period,
    /// longer than Snyk's maximum request time.
    pub fn quiet(&self) -> Duration {
        self.snyk_max + self.snyk_max / 2 + Duration::from_secs(1)
    }
}
