//! Re-reading the configuration while the agent runs: on SIGHUP, and on the
//! admin route `POST /v1/reload` (`snykey reload`, the systemd unit's
//! `ExecReload=`), which is answered only once the new file was applied or
//! refused, so `systemctl reload snykey` fails with the reason when it was
//! refused.
//!
//! Both arrive at one place: the agent's signal task owns the [`Reloader`]
//! (the configuration in force) and runs one reload at a time; a request
//! reaches it through `api::reloads`, a channel whose answer is the outcome.
//! Every changed key is either applied live or named as needing a restart:
//! which keys are live is declared beside their fields (`live` in
//! `config/sections/`, [`Config::live_keys`]), where `docs/configuration.md`
//! reads it too. A file that does not validate is refused whole and the
//! running configuration stays.

use crate::api::AppState;
use crate::config::Config;
use crate::wire::Reloaded;

/// Applies the config file's `server.log_level` at run time; set by the
/// binary, which knows whether `--log-level` or `SNYKEY_LOG` pin the filter
/// instead. Returns a sentence saying what is in force.
pub type LogReloader = Box<dyn Fn(Option<&str>) -> Result<String, String> + Send + Sync>;

/// What started a reload (the prefix of its log lines).
#[derive(Clone, Copy, Debug)]
pub enum Origin {
    Signal,
    Request,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Signal => "SIGHUP",
            Origin::Request => "reload request",
        }
    }
}

/// The configuration in force, and how to change the log filter.
pub struct Reloader {
    current: Config,
    log: Option<LogReloader>,
}

impl Reloader {
    pub fn new(current: Config, log: Option<LogReloader>) -> Reloader {
        Reloader { current, log }
    }

    /// Re-reads the config file and applies what it can. `Err` is the
    /// sentence saying why the new file was refused (nothing changed then).
    pub fn reload(&mut self, origin: Origin, state: &AppState) -> Result<Reloaded, String> {
        let why = origin.as_str();
        let new = match Config::load(self.current.file.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "{why}: the new configuration is invalid; keeping the running one");
                let file = self
                    .current
                    .file
                    .as_deref()
                    .map(|f| format!(" in {}", f.display()))
                    .unwrap_or_default();
                return Err(format!(
                    "the new configuration{file} is invalid, and the agent keeps running on the previous one: {e}"
                ));
            }
        };
        let plan = plan_reload(&self.current, &new);
        let log_filter = apply_live(&new, state, self.log.as_ref(), why);
        tracing::info!(
            changed = ?plan.live,
            allowed_uids = ?new.server.allowed_uids,
            allowed_gids = ?new.server.allowed_gids,
            min_validity_secs = new.refresh.min_validity.as_secs(),
            "{why}: configuration reloaded (allow-lists, admins, access rules, audit log, refresh settings, log filter)"
        );
        tracing::info!("{why}: access: {}", state.policy().summary());
        for key in &plan.restart {
            tracing::warn!(
                setting = %key,
                "{why}: this setting changed but cannot change while running; restart the agent to apply it"
            );
        }
        // The file this reload read: an agent started without one (none at
        // the default path yet) finds it there once it is written, and
        // `current.file` (not a live key) would still say "no config file".
        let file = new.file.as_ref().map(|f| f.display().to_string());
        self.current = keep_live(self.current.clone(), &new);
        Ok(Reloaded {
            file,
            applied: plan.live,
            restart_needed: plan.restart,
            log_filter,
        })
    }
}

/// What a reload does with each changed key (from [`Config::changed_keys`],
/// which compares the section structs field by field).
#[derive(Debug, Default, PartialEq)]
struct ReloadPlan {
    /// Applied to the running agent.
    live: Vec<String>,
    /// Changed in the file, but in force only after a restart.
    restart: Vec<String>,
}

fn plan_reload(current: &Config, new: &Config) -> ReloadPlan {
    let (live, restart) = current
        .changed_keys(new)
        .into_iter()
        .partition(|k| Config::is_live(k));
    ReloadPlan { live, restart }
}

/// The configuration in force after a reload: `new`'s values for the live
/// keys, `current`'s for the rest (so the next reload compares against what
/// runs).
fn keep_live(current: Config, new: &Config) -> Config {
    let mut applied = current;
    applied.keep_live(new);
    applied
}

/// Applies the live keys of `new` to the running agent (a key marked
/// `live = true` must be applied here, or a reload would report a change it
/// did not make); returns the sentence saying which log filter is in force.
fn apply_live(
    new: &Config,
    state: &AppState,
    log_reloader: Option<&LogReloader>,
    why: &str,
) -> String {
    state.set_access(crate::agent::access_of(new));
    if let Err(e) = crate::audit::configure(new.server.audit_log.as_deref(), "reopen") {
        tracing::error!("{why}: {e}; the audit log in use (if any) stays in use");
    }
    state.broker.set_settings(crate::agent::settings_of(new));
    crate::broker::force::set_interval(new.refresh.force_interval);
    match log_reloader.map(|reload| reload(Some(new.server.log_level.as_str()))) {
        Some(Ok(what)) => {
            tracing::info!("{why}: {what}");
            what
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "{why}: could not apply the log filter");
            format!("the log filter did not change: {e}")
        }
        None => "the log filter did not change (set by the process that runs the agent)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value other than the baseline's for every key; a key added to a
    /// section struct without one here fails the test below.
    const SAMPLES: &[(&str, &str)] = &[
        ("server.socket", "/tmp/snykey-other/s.sock"),
        ("server.socket_mode", "0600"),
        ("server.allowed_uids", "5"),
        ("server.allowed_gids", "5"),
        ("server.callback_listen", "127.0.0.1:8081"),
        ("server.metrics_listen", "127.0.0.1:9464"),
        ("server.metrics_allow_remote", "true"),
        ("server.allow_shared_dirs", "true"),
        (
            "server.redirect_uri",
            "http://localhost:8080/authorization-code/callback",
        ),
        ("server.shutdown_grace", "11s"),
        ("server.login_timeout", "5m"),
        ("server.log_level", "debug"),
        ("server.agent_id", "other"),
        ("server.sink_dirs", "/tmp/sinks-other"),
        ("server.admin_uids", "7"),
        ("server.admin_gids", "7"),
        ("server.audit_log", "/tmp/snykey-audit.log"),
        ("snyk.api_url", "https://api.eu.snyk.io"),
        ("snyk.app_url", "https://app.eu.snyk.io"),
        ("snyk.rest_version", "2024-11-01"),
        ("snyk.timeout", "31s"),
        ("cache.backend", "redis"),
        ("cache.url", "redis://127.0.0.1:6380/0"),
        ("cache.key_prefix", "other"),
        ("cache.username", "snykey"),
        ("cache.password_file", "PASSWORD_FILE"),
        ("cache.snapshot", "false"),
        ("cache.snapshot_interval", "30s"),
        ("cache.snapshot_path", "/var/lib/snykey/other.snapshot"),
        ("store.backend", "openbao"),
        ("store.path", "/tmp/other/credentials.json"),
        ("store.journal_dir", "/tmp/other/journal"),
        ("store.addr", "http://127.0.0.1:8300"),
        ("store.auth", "kubernetes"),
        ("store.token", "s.other-token"),
        ("store.token_file", "/tmp/token"),
        ("store.role_id_file", "/tmp/role-id"),
        ("store.secret_id_file", "/tmp/secret-id"),
        ("store.kubernetes_role", "other"),
        ("store.kubernetes_jwt_file", "/tmp/jwt"),
        ("store.auth_mount", "k8s"),
        ("store.mount", "kv2"),
        ("store.kv_version", "1"),
        ("store.prefix", "other"),
        ("store.ca_cert", "/tmp/ca.pem"),
        ("store.exclusive", "true"),
        ("refresh.min_validity", "10m"),
        ("refresh.jitter", "0.2"),
        ("refresh.at", "0.5"),
        ("refresh.force_interval", "30s"),
        // Publishing writes to OpenBao: its prefix is tried on an openbao
        // store (see `context`).
        ("publish.prefix", "snyk-tokens"),
        ("publish.mount", "kv2"),
        ("publish.min_validity", "20m"),
        ("publish.credentials", "o/*"),
    ];

    /// What a key's sample needs besides the baseline to load at all.
    fn context(key: &str) -> &'static [(&'static str, &'static str)] {
        match key {
            "publish.prefix" => &[("store.backend", "openbao")],
            _ => &[],
        }
    }

    fn var(key: &str) -> String {
        format!("SNYKEY_{}", key.replace('.', "_").to_ascii_uppercase())
    }

    /// Every value that others default from is given, so changing one key
    /// changes that key alone — except `server.redirect_uri`, which follows
    /// `server.callback_listen` unless given (a given one must agree with it).
    fn baseline() -> Vec<(String, String)> {
        [
            ("server.socket", "/tmp/snykey-test/s.sock"),
            ("server.agent_id", "test-agent"),
            ("server.sink_dirs", "/tmp/snykey-test"),
            ("snyk.app_url", "https://app.snyk.io"),
            ("store.path", "/tmp/snykey-test/credentials.json"),
            ("store.journal_dir", "/tmp/snykey-test/journal"),
            (
                "cache.snapshot_path",
                "/tmp/snykey-test/access-tokens.snapshot",
            ),
            ("store.token", "s.base-token"),
            ("publish.mount", "kv"),
        ]
        .iter()
        .map(|(k, v)| (var(k), v.to_string()))
        .collect()
    }

    #[test]
    fn every_key_changed_alone_is_either_applied_or_named_for_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("redis-password");
        std::fs::write(&password_file, "pw\n").unwrap();
        let mut live = 0;
        for key in Config::keys() {
            let sample = SAMPLES
                .iter()
                .find(|(k, _)| *k == key)
                .unwrap_or_else(|| panic!("no sample value for {key}: add one to SAMPLES"))
                .1
                .replace("PASSWORD_FILE", &password_file.display().to_string());
            let mut env = baseline();
            env.extend(context(&key).iter().map(|(k, v)| (var(k), v.to_string())));
            let base = Config::load_from(None, &env).unwrap();
            env.retain(|(v, _)| *v != var(&key));
            env.push((var(&key), sample));
            let new = Config::load_from(None, &env)
                .unwrap_or_else(|e| panic!("{key}: the sample does not load: {e}"));
            let plan = plan_reload(&base, &new);
            let named: Vec<&String> = plan.live.iter().chain(&plan.restart).collect();
            let mut expected = vec![key.clone()];
            if key == "server.callback_listen" {
                expected.push("server.redirect_uri".into());
            }
            assert_eq!(
                named,
                expected.iter().collect::<Vec<_>>(),
                "{key}: {plan:?}"
            );
            // What runs afterwards: the new value if applied, the old one if not.
            let after = keep_live(base.clone(), &new);
            if plan.live.is_empty() {
                assert_eq!(after.changed_keys(&new), expected, "{key}");
                assert!(after.changed_keys(&base).is_empty(), "{key}");
            } else {
                live += 1;
                assert!(after.changed_keys(&new).is_empty(), "{key} was not kept");
            }
        }
        assert_eq!(
            live,
            Config::live_keys().count() - 1,
            "every live key but [[access]] was seen"
        );
        assert!(
            SAMPLES
                .iter()
                .all(|(k, _)| Config::keys().any(|key| key == *k)),
            "a sample names a key that no longer exists"
        );
    }

    #[test]
    fn the_keys_sighup_once_ignored_now_ask_for_a_restart() {
        let base = Config::load_from(None, &baseline()).unwrap();
        for key in [
            "store.role_id_file",
            "store.secret_id_file",
            "store.kubernetes_role",
            "store.kubernetes_jwt_file",
            "store.auth_mount",
            "server.shutdown_grace",
            "server.login_timeout",
        ] {
            let sample = SAMPLES.iter().find(|(k, _)| *k == key).unwrap().1;
            let mut env = baseline();
            env.push((var(key), sample.to_string()));
            let new = Config::load_from(None, &env).unwrap();
            assert_eq!(plan_reload(&base, &new).restart, vec![key.to_string()]);
        }
    }
}
