//! The configuration's behaviour: defaults, overrides, every error naming its key
//! and origin, redaction, systemd paths, the arrays of tables.

use super::*;
use std::time::Duration;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn load(toml_text: Option<&str>, e: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let mut base = env(&[
        ("SNYKEY_SOCKET", "/tmp/x.sock"),
        ("XDG_STATE_HOME", "/tmp/state"),
    ]);
    base.extend(env(e));
    match toml_text {
        Some(t) => {
            std::fs::write(&path, t).unwrap();
            Config::load_from(Some(&path), &base)
        }
        None => Config::load_from(None, &base),
    }
}

#[test]
fn embedded_defaults_are_valid() {
    let c = load(None, &[]).unwrap();
    assert_eq!(c.server.socket, PathBuf::from("/tmp/x.sock"));
    assert_eq!(c.server.socket_mode, 0o660);
    assert_eq!(c.cache.backend, CacheBackend::Memory);
    assert_eq!(c.store.backend, StoreBackend::File);
    assert_eq!(
        c.store.path,
        PathBuf::from("/tmp/state/snykey/credentials.json")
    );
    assert_eq!(c.snyk.api_url, "https://api.snyk.io");
    assert_eq!(c.snyk.app_url, "https://app.snyk.io");
    assert_eq!(c.refresh.min_validity, Duration::from_secs(300));
    assert_eq!(
        c.server.redirect_uri,
        "http://127.0.0.1:8080/authorization-code/callback"
    );
}

#[test]
fn env_overrides_file_and_lists_are_comma_separated() {
    let c = load(
        Some("[snyk]\napi_url = \"https://api.eu.snyk.io/\"\n[refresh]\nmin_validity = 60\n"),
        &[
            ("SNYKEY_SERVER_ALLOWED_UIDS", "0, 1000"),
            ("SNYKEY_REFRESH_MIN_VALIDITY", "1h30m"),
        ],
    )
    .unwrap();
    assert_eq!(c.snyk.api_url, "https://api.eu.snyk.io");
    assert_eq!(c.snyk.app_url, "https://app.eu.snyk.io");
    assert_eq!(c.server.allowed_uids, vec![0, 1000]);
    assert_eq!(c.refresh.min_validity, Duration::from_secs(5400));
}

#[test]
fn errors_name_the_key_and_its_origin() {
    let e = load(Some("[store]\npth = \"/x\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("store.pth") && e.contains("c.toml") && e.contains("path"),
        "{e}"
    );
    let e = load(None, &[("SNYKEY_REFRESH_JITTER", "lots")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("refresh.jitter") && e.contains("SNYKEY_REFRESH_JITTER"),
        "{e}"
    );
    let e = load(None, &[("SNYKEY_CACHE_BACKNED", "redis")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cache.backned"), "{e}");
    let e = load(None, &[("SNYKEY_SERVER_CALLBACK_LISTEN", "0.0.0.0:8080")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("server.callback_listen") && e.contains("loopback"),
        "{e}"
    );
    let e = load(None, &[("SNYKEY_SNYK_API_URL", "http://api.snyk.io")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("snyk.api_url") && e.contains("https"), "{e}");
    let e = load(Some("[refresh]\nmin_validity = \"5 parsecs\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("refresh.min_validity"), "{e}");
    let e = load(None, &[("SNYKEY_SERVER_SOCKET_MODE", "0999")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.socket_mode"), "{e}");
}

#[test]
fn unrelated_snykey_variables_are_not_config_keys() {
    assert!(
        load(
            None,
            &[
                ("SNYKEY_LOG", "trace"),
                ("SNYKEY_ORG_ID", "o"),
                ("SNYKEY_CLIENT_ID", "c")
            ]
        )
        .is_ok()
    );
}

#[test]
fn check_config_output_redacts_secrets() {
    let c = load(
        None,
        &[
            ("SNYKEY_CACHE_URL", "redis://snykey:pa55word@redis:6379/1"),
            ("BAO_TOKEN", "s.supersecret"),
        ],
    )
    .unwrap();
    let out = c.to_redacted_toml();
    assert!(
        !out.contains("pa55word") && !out.contains("supersecret"),
        "{out}"
    );
    assert!(
        out.contains("redis://snykey:[redacted]@redis:6379/1"),
        "{out}"
    );
    // The output is itself a valid config.
    let _: toml::Table = out.parse().unwrap();
}

#[test]
fn redirect_uris_that_only_look_like_loopback_are_refused() {
    for u in [
        "http://127.evil.example/authorization-code/callback",
        "http://127.0.0.1@evil.example/authorization-code/callback",
        "http://localhost.evil.example/cb",
    ] {
        let e = load(None, &[("SNYKEY_SERVER_REDIRECT_URI", u)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.redirect_uri"), "{u}: {e}");
        // Not a secret: shown, so the operator sees which value is wrong.
        assert!(e.contains("evil.example"), "{u}: {e}");
    }
    let c = load(
        None,
        &[
            ("SNYKEY_SERVER_CALLBACK_LISTEN", "[::1]:8080"),
            (
                "SNYKEY_SERVER_REDIRECT_URI",
                "http://[::1]:8080/authorization-code/callback",
            ),
        ],
    )
    .unwrap();
    assert_eq!(
        c.server.redirect_uri,
        "http://[::1]:8080/authorization-code/callback"
    );
}

// --- issue 24 item 5: the redirect URI follows the callback listener ---

#[test]
fn the_redirect_uri_follows_callback_listen_unless_given() {
    let c = load(
        Some("[server]\ncallback_listen = \"127.0.0.1:18081\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(
        c.server.redirect_uri,
        "http://127.0.0.1:18081/authorization-code/callback"
    );
    let c = load(None, &[("SNYKEY_SERVER_CALLBACK_LISTEN", "[::1]:28082")]).unwrap();
    assert_eq!(
        c.server.redirect_uri,
        "http://[::1]:28082/authorization-code/callback"
    );
    // Given and agreeing (localhost reaches 127.0.0.1; the seed's path too).
    for (listen, uri) in [
        (
            "127.0.0.1:18081",
            "http://localhost:18081/authorization-code/callback",
        ),
        ("127.0.0.1:18081", "http://127.0.0.1:18081/v1/callback"),
        (
            "127.0.0.1:80",
            "http://127.0.0.1/authorization-code/callback",
        ),
    ] {
        let c = load(
            None,
            &[
                ("SNYKEY_SERVER_CALLBACK_LISTEN", listen),
                ("SNYKEY_SERVER_REDIRECT_URI", uri),
            ],
        )
        .unwrap_or_else(|e| panic!("{listen} {uri}: {e}"));
        assert_eq!(c.server.redirect_uri, uri);
    }
}

#[test]
fn a_redirect_uri_that_does_not_reach_callback_listen_is_refused() {
    for (listen, uri, says) in [
        // The README's advice followed, the redirect left on 8080 (issue 24).
        (
            "127.0.0.1:18081",
            "http://127.0.0.1:8080/authorization-code/callback",
            "does not reach server.callback_listen = \"127.0.0.1:18081\"",
        ),
        (
            "[::1]:8080",
            "http://127.0.0.1:8080/authorization-code/callback",
            "does not reach",
        ),
        (
            "127.0.0.2:8080",
            "http://localhost:8080/authorization-code/callback",
            "does not reach",
        ),
        (
            "127.0.0.1:0",
            "http://127.0.0.1:8080/authorization-code/callback",
            "random port",
        ),
        (
            "127.0.0.1:8080",
            "http://127.0.0.1:8080/other",
            "path the callback listener does not serve",
        ),
    ] {
        let e = load(
            Some(&format!(
                "[server]\ncallback_listen = {listen:?}\nredirect_uri = {uri:?}\n"
            )),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("server.redirect_uri") && e.contains(says) && e.contains(uri),
            "{listen} {uri}: {e}"
        );
    }
}

// --- issue 24 item 6: values are shown, secrets are not ---

#[test]
fn a_bad_value_that_is_not_secret_is_quoted_in_the_error() {
    for (var, value, says) in [
        (
            "SNYKEY_SNYK_API_URL",
            "htps//api.snyk.io",
            "\"htps//api.snyk.io\" is not a URL",
        ),
        (
            "SNYKEY_SNYK_API_URL",
            "http://api.snyk.io",
            "\"http://api.snyk.io\" must use https://",
        ),
        ("SNYKEY_STORE_ADDR", "bao-1:8200", "\"bao-1:8200\""),
        (
            "SNYKEY_SERVER_SOCKET_MODE",
            "0999",
            "\"0999\" is not an octal mode",
        ),
        (
            "SNYKEY_SERVER_CALLBACK_LISTEN",
            "localhost:80800",
            "\"localhost:80800\"",
        ),
        ("SNYKEY_REFRESH_MIN_VALIDITY", "5 parsecs", "\"5 parsecs\""),
        ("SNYKEY_REFRESH_JITTER", "lots", "\"lots\" is not a number"),
        ("SNYKEY_STORE_KV_VERSION", "3", "3 must be 1 or 2"),
        (
            "SNYKEY_SERVER_SOCKET",
            "run/snykey.sock",
            "\"run/snykey.sock\" must be an absolute path",
        ),
        (
            "SNYKEY_SNYK_REST_VERSION",
            "2024-13",
            "\"2024-13\" is not a version",
        ),
    ] {
        let e = load(None, &[(var, value)]).unwrap_err().to_string();
        assert!(e.contains(says), "{var}={value}: {e}");
    }
    // And from the file, with the file named.
    let e = load(Some("[snyk]\napi_url = \"api.snyk.io\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("snyk.api_url") && e.contains("c.toml") && e.contains("\"api.snyk.io\""),
        "{e}"
    );
}

#[test]
fn a_secret_is_never_quoted_whatever_key_it_lands_in() {
    const TOKEN: &str = "hvs.CAESIpwSECRET4e1dAbCdEfGhIjKlMn";
    for (var, value) in [
        // A token pasted into keys that take no token.
        ("SNYKEY_STORE_ADDR", TOKEN),
        ("SNYKEY_SNYK_API_URL", TOKEN),
        ("SNYKEY_STORE_KV_VERSION", TOKEN),
        ("SNYKEY_SERVER_SOCKET_MODE", TOKEN),
        ("SNYKEY_REFRESH_MIN_VALIDITY", TOKEN),
        // A password in a URL, in every URL key.
        ("SNYKEY_SNYK_API_URL", "https://u:pwSECRET4e1d@api.snyk.io"),
        ("SNYKEY_STORE_ADDR", "https://u:pwSECRET4e1d@bao:8200"),
        ("SNYKEY_CACHE_URL", "redis//u:pwSECRET4e1d@redis:6379"),
        (
            "SNYKEY_SERVER_REDIRECT_URI",
            "http://u:pwSECRET4e1d@127.0.0.1:8080/cb",
        ),
    ] {
        let e = load(None, &[(var, value)]).unwrap_err().to_string();
        assert!(!e.contains("SECRET4e1d"), "{var}: {e}");
        assert!(
            e.contains(
                &var.trim_start_matches("SNYKEY_")
                    .to_ascii_lowercase()
                    .replacen('_', ".", 1)
            ),
            "{var}: {e}"
        );
    }
}

#[test]
fn remote_metrics_need_an_explicit_allow() {
    let e = load(None, &[("SNYKEY_SERVER_METRICS_LISTEN", "0.0.0.0:9464")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("server.metrics_listen") && e.contains("metrics_allow_remote"),
        "{e}"
    );
    let c = load(
        None,
        &[
            ("SNYKEY_SERVER_METRICS_LISTEN", "0.0.0.0:9464"),
            ("SNYKEY_SERVER_METRICS_ALLOW_REMOTE", "true"),
        ],
    )
    .unwrap();
    assert!(c.server.metrics_allow_remote);
    assert!(c.to_redacted_toml().contains("metrics_allow_remote = true"));
    let c = load(None, &[("SNYKEY_SERVER_METRICS_LISTEN", "[::1]:9464")]).unwrap();
    assert!(!c.server.metrics_allow_remote);
}

#[test]
fn a_password_in_a_store_or_snyk_url_is_refused_without_being_quoted() {
    for (var, url) in [
        ("SNYKEY_STORE_ADDR", "http://:hunter2@127.0.0.1:8200"),
        ("SNYKEY_STORE_ADDR", "https://bao:hunter2@bao.example:8200"),
        ("SNYKEY_STORE_ADDR", "https://bao:hunter2@[bad"),
        ("SNYKEY_SNYK_API_URL", "https://u:hunter2@api.snyk.io"),
        ("SNYKEY_SNYK_API_URL", "http://u:hunter2@api.snyk.io"),
    ] {
        let e = load(None, &[(var, url)]).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{var}={url}: {e}");
    }
}

#[test]
fn check_config_hides_a_redis_unix_socket_password() {
    let c = load(
        None,
        &[
            ("SNYKEY_CACHE_BACKEND", "redis"),
            (
                "SNYKEY_CACHE_URL",
                "redis+unix:///run/redis/redis.sock?db=2&pass=pa55word",
            ),
        ],
    )
    .unwrap();
    let out = c.to_redacted_toml();
    assert!(!out.contains("pa55word"), "{out}");
    assert!(
        out.contains("redis+unix:///run/redis/redis.sock?db=2&pass=[redacted]"),
        "{out}"
    );
}

#[test]
fn the_example_config_is_valid_and_names_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    load(Some(&text), &[]).unwrap();
    for Section {
        name: section,
        keys,
        ..
    } in SECTIONS
    {
        for key in keys.iter() {
            let section_text = text
                .split(&format!("[{section}]"))
                .nth(1)
                .unwrap_or_default();
            let section_text = section_text.split("\n[").next().unwrap_or_default();
            assert!(
                section_text.contains(&format!("\n# {key} = ")),
                "examples/config.toml lacks {section}.{key} (commented out, with its default)"
            );
        }
    }
    for t in tables::TABLES {
        let table_text = text
            .split(&format!("# [[{}]]", t.name))
            .nth(1)
            .unwrap_or_default();
        let table_text = table_text.split("\n\n").next().unwrap_or_default();
        for d in t.keys {
            assert!(
                table_text.contains(&format!("\n# {} = ", d.key)),
                "examples/config.toml lacks {}'s {} (in its commented-out [[{}]] table)",
                t.name,
                d.key,
                t.name
            );
        }
    }
}

/// Issue 24 item 5: copying the example (as the systemd steps say) pinned
/// `store.addr` over `BAO_ADDR`, the socket over `$RUNTIME_DIRECTORY`, the
/// store over `$STATE_DIRECTORY`. Every key is commented out: copied, it
/// yields exactly the configuration of no file at all, whatever the
/// environment says.
#[test]
fn the_example_config_copied_as_it_is_overrides_nothing() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    for environment in [
        vec![],
        vec![
            ("BAO_ADDR", "https://bao.internal:8200"),
            ("RUNTIME_DIRECTORY", "/run/snykey-rt"),
            ("STATE_DIRECTORY", "/var/lib/snykey-state"),
            ("SNYKEY_SERVER_CALLBACK_LISTEN", "127.0.0.1:18081"),
        ],
    ] {
        let mut with_file = load(Some(&text), &environment).unwrap();
        let without = load(None, &environment).unwrap();
        with_file.file = None;
        assert_eq!(with_file, without, "{environment:?}");
    }
    let c = load(Some(&text), &[("BAO_ADDR", "https://bao.internal:8200")]).unwrap();
    assert_eq!(c.store.addr, "https://bao.internal:8200");
    let c = load(
        Some(&text),
        &[("SNYKEY_SERVER_CALLBACK_LISTEN", "127.0.0.1:18081")],
    )
    .unwrap();
    assert_eq!(
        c.server.redirect_uri,
        "http://127.0.0.1:18081/authorization-code/callback"
    );
}

// --- issue 14: systemd directories and credentials, secrets from files ---

#[test]
fn a_relative_file_setting_names_a_systemd_credential() {
    let creds = tempfile::tempdir().unwrap();
    let dir = creds.path().display().to_string();
    let c = load(
        Some("[store]\nbackend = \"openbao\"\ntoken_file = \"bao-token\"\n"),
        &[("CREDENTIALS_DIRECTORY", &dir)],
    )
    .unwrap();
    assert_eq!(c.store.token_file, Some(creds.path().join("bao-token")));
    // An absolute path stays as it is.
    let c = load(
        Some("[store]\nauth = \"approle\"\nrole_id_file = \"/etc/r\"\nsecret_id_file = \"sid\"\n"),
        &[("CREDENTIALS_DIRECTORY", &dir)],
    )
    .unwrap();
    assert_eq!(c.store.role_id_file, Some(PathBuf::from("/etc/r")));
    assert_eq!(c.store.secret_id_file, Some(creds.path().join("sid")));
    // Relative without the variable: refused, naming the key and the fix.
    let e = load(Some("[store]\ntoken_file = \"bao-token\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("store.token_file") && e.contains("CREDENTIALS_DIRECTORY"),
        "{e}"
    );
    // No escaping the credentials directory.
    let e = load(
        Some("[store]\ntoken_file = \"../etc/shadow\"\n"),
        &[("CREDENTIALS_DIRECTORY", &dir)],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("store.token_file"), "{e}");
}

#[test]
fn the_redis_password_comes_from_a_file_and_the_user_from_its_own_key() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("redis-pw"), "s3cr:t/@x\n").unwrap();
    let dir = creds.path().display().to_string();
    let c = load(
        Some("[cache]\nbackend = \"redis\"\nurl = \"rediss://redis.internal:6380/2\"\nusername = \"snykey\"\npassword_file = \"redis-pw\"\n"),
        &[("CREDENTIALS_DIRECTORY", &dir)],
    )
    .unwrap();
    assert_eq!(
        c.cache.connection_url().expose(),
        "rediss://snykey:s3cr%3At%2F%40x@redis.internal:6380/2"
    );
    assert_eq!(c.cache.username.as_deref(), Some("snykey"));
    let out = c.to_redacted_toml();
    assert!(!out.contains("s3cr"), "{out}");
    assert!(out.contains("password_file = "), "{out}");
    // A password alone authenticates as the default user.
    let c = load(
        None,
        &[
            ("CREDENTIALS_DIRECTORY", &dir),
            ("SNYKEY_CACHE_PASSWORD_FILE", "redis-pw"),
        ],
    )
    .unwrap();
    assert_eq!(
        c.cache.connection_url().expose(),
        "redis://:s3cr%3At%2F%40x@127.0.0.1:6379/0"
    );
    // Not in two places at once; not from a missing or empty file.
    let e = load(
        None,
        &[
            ("CREDENTIALS_DIRECTORY", &dir),
            ("SNYKEY_CACHE_URL", "redis://u:p@h:6379/0"),
            ("SNYKEY_CACHE_PASSWORD_FILE", "redis-pw"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("cache.password_file") && e.contains("one place"),
        "{e}"
    );
    let e = load(
        None,
        &[
            ("CREDENTIALS_DIRECTORY", &dir),
            ("SNYKEY_CACHE_PASSWORD_FILE", "missing"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("cache.password_file") && e.contains("cannot read"),
        "{e}"
    );
    assert!(!e.contains("s3cr"), "{e}");
}

#[test]
fn systemd_directories_set_the_default_paths() {
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(
        conf.path().join("config.toml"),
        "[snyk]\napi_url = \"https://api.eu.snyk.io\"\n",
    )
    .unwrap();
    let conf_dir = conf.path().display().to_string();
    let e = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    let c = Config::load_from(
        None,
        &e(&[
            ("STATE_DIRECTORY", "/var/lib/snykey"),
            ("RUNTIME_DIRECTORY", "/run/snykey-test"),
            ("CONFIGURATION_DIRECTORY", &conf_dir),
            ("XDG_STATE_HOME", "/home/u/.local/state"),
        ]),
    )
    .unwrap();
    assert_eq!(c.file, Some(conf.path().join("config.toml")));
    assert_eq!(c.snyk.api_url, "https://api.eu.snyk.io");
    assert_eq!(
        c.server.socket,
        PathBuf::from("/run/snykey-test/snykey.sock")
    );
    assert_eq!(
        c.store.path,
        PathBuf::from("/var/lib/snykey/credentials.json")
    );
    assert_eq!(
        c.store.journal_dir,
        PathBuf::from("/var/lib/snykey/journal")
    );
    // Without them: XDG.
    let c = Config::load_from(
        None,
        &e(&[
            ("XDG_STATE_HOME", "/home/u/.local/state"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.store.path,
        PathBuf::from("/home/u/.local/state/snykey/credentials.json")
    );
    assert_eq!(
        c.server.socket,
        PathBuf::from("/run/user/1000/snykey/snykey.sock")
    );
    assert_eq!(
        default_config_files(
            &|n: &str| (n == "CONFIGURATION_DIRECTORY").then(|| "/etc/snykey-alt".to_string())
        ),
        vec![
            PathBuf::from("/etc/snykey-alt/config.toml"),
            PathBuf::from(DEFAULT_CONFIG_FILE)
        ]
    );
}

#[test]
fn access_tables_admins_and_audit_log_are_read_and_checked() {
    let c = load(
        Some(
            "[server]\nadmin_uids = [1500]\naudit_log = \"/var/log/snykey/audit.log\"\n\n[[access]]\ncredentials = [\"o1/c1\", \"o2/*\"]\nuids = [1001]\n\n[[access]]\ncredentials = [\"o3/c3\"]\ngids = [2001]\n",
        ),
        &[("SNYKEY_SERVER_ADMIN_GIDS", "3000,3001")],
    )
    .unwrap();
    let a = &c.access;
    assert_eq!(c.server.admin_uids, vec![1500]);
    assert_eq!(c.server.admin_gids, vec![3000, 3001]);
    assert_eq!(
        c.server.audit_log.as_deref(),
        Some(Path::new("/var/log/snykey/audit.log"))
    );
    assert_eq!(a.grants.len(), 2);
    assert_eq!(a.grants[0].credentials.len(), 2);
    assert_eq!(a.grants[1].gids, vec![2001]);
    // check-config prints them back as a valid config that reads the same.
    let out = c.to_redacted_toml();
    assert!(
        out.contains("[[access]]\ncredentials = [\"o1/c1\", \"o2/*\"]"),
        "{out}"
    );
    let again = load(Some(&out), &[]).unwrap();
    assert_eq!(again.access.grants, a.grants);
    assert_eq!(again.server.admin_gids, vec![3000, 3001]);
    // Defaults: nothing configured.
    let d = load(None, &[]).unwrap();
    assert!(d.access.grants.is_empty() && d.server.admin_uids.is_empty());
    assert!(d.server.audit_log.is_none());
}

#[test]
fn bad_access_tables_are_refused_with_the_table_named() {
    for (text, want) in [
        (
            "[[access]]\ncredentials = [\"o1\"]\nuids = [1]\n",
            "access[0].credentials",
        ),
        (
            "[[access]]\ncredentials = []\nuids = [1]\n",
            "access[0].credentials",
        ),
        ("[[access]]\ncredentials = [\"o/c\"]\n", "grants nobody"),
        (
            "[[access]]\ncredentials = [\"o/c\"]\nuids = [-1]\n",
            "access[0].uids",
        ),
        (
            "[[access]]\ncredentials = [\"o/c\"]\nuid = [1]\n",
            "access[0].uid",
        ),
        (
            "[[access]]\ncredentials = [\"o/c\"]\nuids = [1]\n[[access]]\ncredentials = [\"../x/c\"]\nuids = [1]\n",
            "access[1].credentials",
        ),
        ("[access]\ncredentials = [\"o/c\"]\n", "[[access]] tables"),
        ("[server]\naudit_log = \"audit.log\"\n", "server.audit_log"),
    ] {
        let e = load(Some(text), &[]).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("c.toml"), "{text}: {e}");
    }
    let e = load(None, &[("SNYKEY_ACCESS_UIDS", "1")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("only be written in the config file"), "{e}");
}

#[test]
fn rest_versions_are_checked() {
    assert!(check::is_rest_version("2024-10-15"));
    assert!(check::is_rest_version("2024-10-15~beta"));
    assert!(!check::is_rest_version("2024-1-15"));
    assert!(!check::is_rest_version("latest"));
}
#[test]
fn cache_url_takes_the_sentinel_forms_and_redacts_their_password() {
    let c = load(
        Some("[cache]\nbackend = \"redis\"\nurl = \"redis+sentinel://snykey:pw-xyz@10.0.0.1:26379,10.0.0.2:26379/mymaster/2\"\n"),
        &[],
    )
    .unwrap();
    assert!(c.cache.url.expose().starts_with("redis+sentinel://"));
    let shown = c.to_redacted_toml();
    assert!(!shown.contains("pw-xyz"), "{shown}");
    assert!(
        load(
            None,
            &[("SNYKEY_CACHE_URL", "rediss+sentinel://s1,s2:26380/m")]
        )
        .is_ok()
    );
    let e = load(
        None,
        &[("SNYKEY_CACHE_URL", "redis+sentinel://u:pw-xyz@s1:26379")],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cache.url") && e.contains("master"), "{e}");
    assert!(!e.contains("pw-xyz"), "{e}");
    let e = load(None, &[("SNYKEY_CACHE_URL", "http://x")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("redis+sentinel://"), "{e}");
}
#[test]
fn store_addr_takes_the_nodes_of_a_cluster() {
    let c = load(
        Some("[store]\naddr = [\"https://bao-1:8200\", \"https://bao-2:8200/\"]\n"),
        &[],
    )
    .unwrap();
    assert_eq!(
        c.store.addrs,
        vec!["https://bao-1:8200", "https://bao-2:8200"]
    );
    assert_eq!(c.store.addr, "https://bao-1:8200");
    assert!(
        c.to_redacted_toml()
            .contains("addr = [\"https://bao-1:8200\", \"https://bao-2:8200\"]")
    );
    let c = load(
        None,
        &[(
            "SNYKEY_STORE_ADDR",
            "http://127.0.0.1:8200, http://127.0.0.1:8210",
        )],
    )
    .unwrap();
    assert_eq!(c.store.addrs.len(), 2);
    // BAO_ADDR stays one address.
    let c = load(None, &[("BAO_ADDR", "http://127.0.0.1:8300")]).unwrap();
    assert_eq!(c.store.addrs, vec!["http://127.0.0.1:8300"]);
    let e = load(Some("[store]\naddr = [1]\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("store.addr"), "{e}");
}

// --- issue 26 part 2: [publish] ---

const OPENBAO: &str = "[store]\nbackend = \"openbao\"\ntoken = \"t\"\n";

#[test]
fn publishing_is_off_by_default_and_on_with_a_prefix_beside_the_store() {
    let c = load(None, &[]).unwrap();
    assert!(!c.publish.enabled());
    assert_eq!(c.publish.mount, "kv", "follows store.mount");
    let c = load(
        Some(&format!(
            "{OPENBAO}[publish]\nprefix = \"/snyk-tokens/\"\nmin_validity = \"20m\"\ncredentials = [\"o-1/*\", \"o-2/c\"]\n"
        )),
        &[],
    )
    .unwrap();
    assert!(c.publish.enabled());
    assert_eq!(
        (c.publish.prefix.as_str(), c.publish.mount.as_str()),
        ("snyk-tokens", "kv")
    );
    assert_eq!(c.publish.min_validity, std::time::Duration::from_secs(1200));
    assert_eq!(c.publish.patterns.len(), 2);
    assert!(
        c.to_redacted_toml()
            .contains("[publish]\nprefix = \"snyk-tokens\"")
    );
    // From the environment too (lists comma-separated).
    let c = load(
        Some(OPENBAO),
        &[
            ("SNYKEY_PUBLISH_PREFIX", "ci/tokens"),
            ("SNYKEY_PUBLISH_MOUNT", "kv-ci"),
            ("SNYKEY_PUBLISH_CREDENTIALS", "o-1/*,o-2/c"),
        ],
    )
    .unwrap();
    assert_eq!(c.publish.mount, "kv-ci");
    assert_eq!(c.publish.patterns.len(), 2);
}

#[test]
fn publishing_where_it_cannot_work_is_refused_naming_the_key() {
    let refused = |text: &str, e: &[(&str, &str)]| load(Some(text), e).unwrap_err().to_string();
    // The file store: nothing for jobs to read.
    let e = refused("[publish]\nprefix = \"snyk-tokens\"\n", &[]);
    assert!(
        e.contains("publish.prefix") && e.contains("store.backend"),
        "{e}"
    );
    // KV v1: no generations kept across a delete, no check-and-set.
    let e = refused(
        &format!("{OPENBAO}kv_version = 1\nmount = \"kv1\"\n[publish]\nprefix = \"snyk-tokens\"\n"),
        &[],
    );
    assert!(e.contains("KV v2"), "{e}");
    // Inside the store's records, or around them: jobs must never reach a record.
    for prefix in ["snyk", "snyk/tokens", "a"] {
        let store_prefix = if prefix == "a" { "a/b" } else { "snyk" };
        let e = refused(
            &format!("{OPENBAO}prefix = \"{store_prefix}\"\n[publish]\nprefix = \"{prefix}\"\n"),
            &[],
        );
        assert!(e.contains("overlaps store.prefix"), "{prefix}: {e}");
    }
    // On another mount the same prefix is fine.
    load(
        Some(&format!(
            "{OPENBAO}[publish]\nprefix = \"snyk\"\nmount = \"kv-ci\"\n"
        )),
        &[],
    )
    .unwrap();
    // Paths, validity and patterns are checked.
    let e = refused(&format!("{OPENBAO}[publish]\nprefix = \"a/../b\"\n"), &[]);
    assert!(e.contains("publish.prefix"), "{e}");
    let e = refused(
        &format!("{OPENBAO}[publish]\nprefix = \"t\"\nmin_validity = \"0s\"\n"),
        &[],
    );
    assert!(e.contains("publish.min_validity"), "{e}");
    let e = refused(
        &format!("{OPENBAO}[publish]\nprefix = \"t\"\ncredentials = [\"no-slash\"]\n"),
        &[],
    );
    assert!(e.contains("publish.credentials"), "{e}");
    let e = refused(&format!("{OPENBAO}[publish]\nprefx = \"t\"\n"), &[]);
    assert!(
        e.contains("publish.prefx") && e.contains("unknown key"),
        "{e}"
    );
}
