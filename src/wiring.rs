//! The agent's side of the configuration: what each part is built with,
//! made from the validated [`Config`](crate::config::Config) sections. The
//! parts themselves (the stores, ...) take settings of their own and never
//! read the configuration, so no lower layer depends on `config`.

use crate::broker::publish::PublishSettings;
use crate::config::{BaoAuth, PublishConfig, StoreConfig};
use crate::store::openbao::{Auth, OpenBaoSettings};

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
