//! The agent's side of the configuration: what each part is built with,
//! made from the validated [`Config`](crate::config::Config) sections. The
//! parts themselves (the stores, ...) take settings of their own and never
//! read the configuration, so no lower layer depends on `config`.

use crate::broker::publish::PublishSettings;
use crate::cache::memory::MemoryCache;
use crate::cache::snapshot::{self, Keeper, Origin, Saved};
use crate::config::{BaoAuth, Config, PublishConfig, StoreConfig};
use crate::store::SecretStore;
use crate::store::openbao::{Auth, OpenBaoSettings};
use std::sync::Arc;

/// `[store]` as the OpenBao store reads it (only its public fields).
impl From<&StoreConfig> for OpenBaoSettings {
    fn from(cfg: &StoreConfig) -> OpenBaoSettings {
        let mount_or = |default: &str| {
            if cfg.auth_mount.is_empty() {
                default.to_string()
            } else {
                cfg.auth_mount.clone()
            }
        };
        let auth = match cfg.auth {
            BaoAuth::Token => Auth::Token {
                token: cfg.token.clone(),
                file: cfg.token_file.clone(),
            },
            BaoAuth::AppRole => Auth::AppRole {
                mount: mount_or("approle"),
                role_id_file: cfg.role_id_file.clone().unwrap_or_default(),
                secret_id_file: cfg.secret_id_file.clone().unwrap_or_default(),
            },
            BaoAuth::Kubernetes => Auth::Kubernetes {
                mount: mount_or("kubernetes"),
                role: cfg.kubernetes_role.clone(),
                jwt_file: cfg.kubernetes_jwt_file.clone(),
            },
        };
        OpenBaoSettings {
            addrs: if cfg.addrs.is_empty() {
                vec![cfg.addr.clone()]
            } else {
                cfg.addrs.clone()
            },
            auth,
            ca_cert: cfg.ca_cert.clone(),
            mount: cfg.mount.clone(),
            kv_version: cfg.kv_version,
            prefix: cfg.prefix.clone(),
        }
    }
}

/// `[publish]` as the broker's publisher takes it.
impl From<&PublishConfig> for PublishSettings {
    fn from(cfg: &PublishConfig) -> PublishSettings {
        PublishSettings {
            min_validity: cfg.min_validity,
            credentials: cfg.patterns.clone(),
        }
    }
}

/// The token cache, and the memory cache itself when it is the one (its
/// snapshot is written from it).
pub(crate) async fn open_cache(
    cfg: &Config,
) -> Result<(Arc<dyn crate::cache::TokenCache>, Option<Arc<MemoryCache>>), String> {
    match cfg.cache.backend {
        crate::config::CacheBackend::Memory => {
            let memory = Arc::new(MemoryCache::new());
            Ok((
                Arc::clone(&memory) as Arc<dyn crate::cache::TokenCache>,
                Some(memory),
            ))
        }
        crate::config::CacheBackend::Redis => {
            let url = cfg.cache.connection_url();
            let cache = crate::cache::redis::RedisCache::connect(
                url.secret(),
                &cfg.cache.key_prefix,
                format!("redis {url}"),
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok((Arc::new(cache), None))
        }
    }
}

/// `cache.snapshot`: the tokens the last run saved (for [`crate::broker::Broker::start`]
/// to take back) and the keeper that saves this run's, when the snapshot is
/// used: on, with the memory cache (`memory`), on a store that keeps
/// generations across a delete (not KV v1). When it is not used, a snapshot
/// an earlier run left is removed: access tokens are not left on disk.
pub(crate) fn token_snapshot(
    cfg: &Config,
    memory: Option<&Arc<MemoryCache>>,
    store: &dyn SecretStore,
) -> (Vec<Saved>, Option<Arc<Keeper>>) {
    let path = &cfg.cache.snapshot_path;
    let used = match memory {
        Some(memory) if cfg.cache.snapshot && store.checks_versions() => memory,
        _ => {
            if cfg.cache.snapshot && memory.is_some() {
                tracing::info!(
                    "cache.snapshot is not used with KV v1 (it keeps no generation across a delete): every restart mints every token again"
                );
            }
            match snapshot::remove(path) {
                Ok(true) => {
                    tracing::info!(path = %path.display(), "removed the token snapshot of an earlier run (not used now)")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot remove the token snapshot of an earlier run")
                }
            }
            return (Vec::new(), None);
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        use std::os::unix::fs::DirBuilderExt;
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the token snapshot's directory; it cannot be written");
        }
    }
    let origin = Origin {
        store: store.describe(),
        api_url: cfg.snyk.api_url.clone(),
    };
    let saved = match snapshot::read(path, &origin) {
        Ok(saved) => saved.unwrap_or_default(),
        Err(why) => {
            tracing::warn!(path = %path.display(), "the token snapshot is ignored: {why}; every credential's token is minted again (the next write replaces the file)");
            Vec::new()
        }
    };
    let keeper = Keeper::new(
        Arc::clone(used),
        path.clone(),
        origin,
        cfg.cache.snapshot_interval,
    );
    (saved, Some(keeper))
}
