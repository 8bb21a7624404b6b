use super::*;
use proptest::prelude::*;

fn all_keys() -> Vec<(&'static str, &'static str)> {
    SECTIONS
        .iter()
        .flat_map(|s| s.keys.iter().map(move |k| (s.name, *k)))
        .collect()
}

const MARK: &str = "pw-SECRET-4e1d";

fn load(toml_text: Option<&str>, e: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let mut env: Vec<(String, String)> = vec![
        ("SNYKEY_SOCKET".into(), "/tmp/x.sock".into()),
        ("XDG_STATE_HOME".into(), "/tmp/state".into()),
    ];
    env.extend(e.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    match toml_text {
        Some(t) => {
            std::fs::write(&path, t).unwrap();
            Config::load_from(Some(&path), &env)
        }
        None => Config::load_from(None, &env),
    }
}

/// A value shaped like an OpenBao token carrying the mark: whatever key it
/// lands in, an error must not show it.
fn token() -> String {
    format!("hvs.{}AbCdEfGhIjKlMnOp", MARK.replace('-', ""))
}

/// Every secret form a value can take: a token, a URL password, a query
/// password, and anything at all in the key that holds a secret.
fn secret_forms(junk: &str) -> Vec<String> {
    let m = MARK.replace('-', "");
    vec![
        token(),
        format!("https://user:{m}{junk}@host.example:8200"),
        format!("redis+unix:///r.sock?pass={m}"),
        format!("u:{m}@h:6379"),
    ]
}

#[test]
fn a_secret_value_is_never_quoted_and_a_plain_one_is() {
    // Found by the two properties below when every value was hidden: now a
    // value is shown unless it could be a secret.
    for (var, value) in [
        ("SNYKEY_SERVER_SOCKET_MODE", token()),
        ("SNYKEY_STORE_KV_VERSION", token()),
        ("SNYKEY_SERVER_ALLOWED_UIDS", format!("0,{}", token())),
        ("SNYKEY_SERVER_CALLBACK_LISTEN", token()),
    ] {
        let e = load(None, &[(var, &value)]).unwrap_err().to_string();
        assert!(!e.contains("SECRET4e1d"), "{e}");
    }
    // A store address that is no URL at all is shown, unless token-shaped.
    let e = load(Some(&format!("[store]\naddr = \"{},\"\n", token())), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("store.addr") && !e.contains("SECRET4e1d"), "{e}");
    let e = load(Some("[store]\naddr = \"bao-1 8200,\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("store.addr") && e.contains("bao-1 8200"), "{e}");
    let e = load(
        Some(&format!(
            "[refresh]\nmin_validity = {{ x = \"{}\" }}\n",
            token()
        )),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("refresh.min_validity") && !e.contains("SECRET4e1d"),
        "{e}"
    );
}

proptest! {
    #![proptest_config(crate::prop::config(256))]

    #[test]
    fn prop_any_toml_text_is_judged_without_panic(text in "\\PC{0,200}|(\\[(server|store|cache|snyk|refresh)\\]\n)?[a-z_]{1,16} = (\"\\PC{0,20}\"|[0-9-]{1,22}|true|\\[\\]|\\{\\})\n") {
        let _ = load(Some(&text), &[]);
    }

    #[test]
    fn prop_toml_errors_never_quote_a_secret(
        index in 0..all_keys().len(),
        shape in 0u8..5,
        form in 0usize..4,
        junk in "[a-z0-9]{0,12}",
    ) {
        let (section, key) = all_keys()[index];
        let secret = secret_forms(&junk)[form].clone();
        let line = match shape {
            0 => format!("{key} = \"{secret}\""),
            1 => format!("{key} = \"{secret}"),
            2 => format!("{key} = [\"{secret}\", 1]"),
            3 => format!("{key} = {{ x = \"{secret}\" }}"),
            _ => format!("{key} = \"{secret}\"\n{key} = \"{secret}\""),
        };
        let text = format!("[{section}]\n{line}\n");
        if let Err(e) = load(Some(&text), &[]) {
            let msg = e.to_string();
            prop_assert!(!msg.contains("SECRET4e1d"), "{}", msg);
        }
    }

    #[test]
    fn prop_env_values_fail_naming_the_key_never_a_secret(
        index in 0..all_keys().len(),
        junk in "\\PC{0,20}|[0-9]{0,25}|-1|0x10|1e9",
        form in 0usize..5,
    ) {
        let (section, key) = all_keys()[index];
        let var = format!("SNYKEY_{}_{}", section.to_uppercase(), key.to_uppercase());
        let value = match secret_forms("").get(form) {
            Some(s) => format!("{s}{junk}"),
            None => junk,
        };
        if let Err(e) = load(None, &[(&var, &value)]) {
            let msg = e.to_string();
            prop_assert!(msg.contains(&format!("{section}.{key}")), "{}", msg);
            prop_assert!(!msg.contains("SECRET4e1d"), "{}.{} shows a secret: {}", section, key, msg);
        }
    }

    #[test]
    fn prop_the_secret_key_never_shows_its_value(junk in "\\PC{1,40}") {
        // store.token takes any text; a TOML error about it shows none of it.
        let text = format!("[store]\ntoken = [\"{}\", 1]\n", junk.replace(['"', '\\'], "x"));
        if let Err(e) = load(Some(&text), &[]) {
            let msg = e.to_string();
            let t = junk.replace(['"', '\\'], "x");
            if t.trim().len() >= 4 {
                prop_assert!(!msg.contains(t.trim()), "{}", msg);
            }
        }
    }
}
