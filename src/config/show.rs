//! `snykey check-config`: the effective configuration as TOML, serialized from
//! the section structs themselves. Secrets redact themselves by their types
//! (`SecretUrl`, `de::opt_secret`), so no key is listed here.

use super::tables::{AccessTable, SinkTable, access_table, sink_table};
use super::{
    CacheConfig, Config, PublishConfig, RefreshConfig, ServerConfig, SnykConfig, StoreConfig,
};
use serde::Serialize;

#[derive(Serialize)]
struct Shown<'a> {
    server: &'a ServerConfig,
    snyk: &'a SnykConfig,
    cache: &'a CacheConfig,
    store: &'a StoreConfig,
    refresh: &'a RefreshConfig,
    publish: &'a PublishConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sink: Vec<SinkTable>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    access: Vec<AccessTable>,
}

impl Config {
    /// The effective configuration as TOML, secrets redacted (`snykey check-config`).
    pub fn to_redacted_toml(&self) -> String {
        let shown = Shown {
            server: &self.server,
            snyk: &self.snyk,
            cache: &self.cache,
            store: &self.store,
            refresh: &self.refresh,
            publish: &self.publish,
            sink: self.sinks.iter().map(sink_table).collect(),
            access: self.access.grants.iter().map(access_table).collect(),
        };
        let header = match &self.file {
            Some(p) => format!(
                "# effective configuration (file {} + environment + defaults)\n\n",
                p.display()
            ),
            None => "# effective configuration (no file: environment + embedded defaults)\n\n"
                .to_string(),
        };
        match toml::to_string(&shown) {
            Ok(body) => header + &body,
            Err(e) => format!("{header}# cannot print the configuration as TOML: {e}\n"),
        }
    }
}
