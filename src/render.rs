//! What `snykey-helper` and `snykey token` print, and the tiny JSON reader the
//! helper uses instead of serde (std-only: the helper must start as fast as a
//! process spawns).

/// The output formats of the README's "Getting a token into a tool".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Token,
    Json,
    Env,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "token" => Some(Format::Token),
            "json" => Some(Format::Json),
            "env" => Some(Format::Env),
            _ => None,
        }
    }
}

/// `token_type` of an OAuth access token.
pub const TOKEN_TYPE_BEARER: &str = "bearer";
/// `token_type` of a service account's Snyk API key (`Authorization: token`).
pub const TOKEN_TYPE_API_KEY: &str = "token";

/// What the Snyk CLI needs besides the token (the README's "Getting a token into a tool"): the credential's
/// region as `SNYK_API` (the CLI derives its v1 and REST URLs from it), and
/// the credential's organization as `SNYK_CFG_ORG` (the org `snyk test` runs
/// against), which the caller's own `SNYK_CFG_ORG` overrides; and which
/// variable the token goes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnykEnv<'a> {
    /// The credential's region (its own `api_url`, else the agent's
    /// `snyk.api_url`); absent from an older agent's answer.
    pub snyk_api: Option<&'a str>,
    /// The credential's org id, unless the caller already set `SNYK_CFG_ORG`.
    pub org: Option<&'a str>,
    /// The token is a Snyk API key (`token_type` `token`): it goes in
    /// `SNYK_TOKEN`, the variable the Snyk CLI sends as `Authorization:
    /// token`; an OAuth access token goes in `SNYK_OAUTH_TOKEN`.
    pub api_key: bool,
}

/// The name of the Snyk CLI's organization variable.
pub const SNYK_CFG_ORG: &str = "SNYK_CFG_ORG";

impl<'a> SnykEnv<'a> {
    /// For a token of `org_id`: `SNYK_CFG_ORG` is exported only when this
    /// process's environment has none (a caller that chose an org keeps it).
    pub fn new(snyk_api: Option<&'a str>, org_id: &'a str) -> SnykEnv<'a> {
        let caller_set = std::env::var_os(SNYK_CFG_ORG).is_some_and(|v| !v.is_empty());
        SnykEnv {
            snyk_api,
            org: (!caller_set).then_some(org_id),
            api_key: false,
        }
    }

    /// The answer's `token_type` (absent from older agents: `bearer`).
    pub fn token_type(self, token_type: Option<&str>) -> SnykEnv<'a> {
        SnykEnv {
            api_key: token_type == Some(TOKEN_TYPE_API_KEY),
            ..self
        }
    }

    /// The variable the token goes in.
    pub fn token_var(&self) -> &'static str {
        if self.api_key {
            "SNYK_TOKEN"
        } else {
            "SNYK_OAUTH_TOKEN"
        }
    }

    /// The variables to set, in the order they are printed.
    pub fn vars(&self) -> impl Iterator<Item = (&'static str, &'a str)> {
        [("SNYK_API", self.snyk_api), (SNYK_CFG_ORG, self.org)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
    }
}

/// Renders a token answer; `env` adds what `--format env` exports besides
/// the token.
pub fn token_output(
    format: Format,
    access_token: &str,
    expires_at: &str,
    env: SnykEnv<'_>,
) -> String {
    match format {
        Format::Token => format!("{access_token}\n"),
        Format::Json => format!(
            "{{\"access_token\":{},\"token_type\":\"{}\",\"expires_at\":{}}}\n",
            json_string(access_token),
            if env.api_key {
                TOKEN_TYPE_API_KEY
            } else {
                TOKEN_TYPE_BEARER
            },
            json_string(expires_at)
        ),
        Format::Env => {
            let mut s = format!("export {}={}\n", env.token_var(), shell_quote(access_token));
            for (name, value) in env.vars() {
                s.push_str(&format!("export {name}={}\n", shell_quote(value)));
            }
            s
        }
    }
}

/// Quotes for a POSIX shell only when needed (tokens are usually URL-safe).
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b'+' | b'~' | b'%' | b','
                )
        });
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The string-valued members of a top-level JSON object; other members
/// (numbers, booleans, null, nested values) are skipped. `None` if the text
/// is not a JSON object.
pub fn string_fields(text: &str) -> Option<Vec<(String, String)>> {
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    p.ws();
    p.eat(b'{')?;
    let mut out = Vec::new();
    p.ws();
    if p.peek() == Some(b'}') {
        return Some(out);
    }
    loop {
        p.ws();
        let key = p.string()?;
        p.ws();
        p.eat(b':')?;
        p.ws();
        if p.peek() == Some(b'"') {
            let v = p.string()?;
            out.push((key, v));
        } else {
            p.skip_value()?;
        }
        p.ws();
        match p.next()? {
            b',' => continue,
            b'}' => return Some(out),
            _ => return None,
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }
    fn hex4(&mut self) -> Option<u32> {
        let h = self.b.get(self.i..self.i + 4)?;
        self.i += 4;
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    }
    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let c = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                self.eat(b'\\')?;
                                self.eat(b'u')?;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo.checked_sub(0xDC00)?)
                            } else {
                                hi
                            };
                            char::from_u32(cp)?
                        }
                        _ => return None,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                c => out.push(c),
            }
        }
    }
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        break;
                    }
                    self.i += 1;
                }
                Some(())
            }
        }
    }
}

/// Finds a field in the output of [`string_fields`].
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_agent_answers() {
        let f = string_fields(r#"{"access_token":"a\"b\\c\u00e9\ud83d\ude00","token_type":"bearer","expires_at":"2026-01-01T00:00:00Z","n":1,"x":null,"o":{"k":["}"]}}"#).unwrap();
        assert_eq!(field(&f, "access_token"), Some("a\"b\\cé😀"));
        assert_eq!(field(&f, "expires_at"), Some("2026-01-01T00:00:00Z"));
        assert_eq!(field(&f, "n"), None);
        assert!(string_fields("not json").is_none());
        assert!(string_fields("{\"a\":").is_none());
        assert_eq!(string_fields("{}").unwrap().len(), 0);
    }

    #[test]
    fn json_output_round_trips_through_serde() {
        let env = SnykEnv {
            snyk_api: Some("https://api.snyk.io"),
            org: Some("o"),
            api_key: false,
        };
        let out = token_output(Format::Json, "t\"ok", "2026-01-01T00:00:00Z", env);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["access_token"], "t\"ok");
        assert_eq!(v["token_type"], "bearer");
        assert_eq!(v.as_object().unwrap().len(), 3);
        let key = env.token_type(Some("token"));
        let v: serde_json::Value =
            serde_json::from_str(&token_output(Format::Json, "k", "t", key)).unwrap();
        assert_eq!(v["token_type"], "token");
    }

    #[test]
    fn an_api_key_is_exported_as_snyk_token_and_a_bearer_token_as_snyk_oauth_token() {
        let env = SnykEnv::default();
        assert_eq!(env.token_type(None).token_var(), "SNYK_OAUTH_TOKEN");
        assert_eq!(
            env.token_type(Some("bearer")).token_var(),
            "SNYK_OAUTH_TOKEN"
        );
        let key = env.token_type(Some("token"));
        assert_eq!(
            token_output(Format::Env, "k", "", key),
            "export SNYK_TOKEN=k\n"
        );
        assert_eq!(token_output(Format::Token, "k", "", key), "k\n");
    }

    #[test]
    fn env_output_exports_the_region_and_the_org_when_known() {
        assert_eq!(
            token_output(Format::Env, "abc", "", SnykEnv::default()),
            "export SNYK_OAUTH_TOKEN=abc\n"
        );
        let env = SnykEnv {
            snyk_api: Some("https://api.eu.snyk.io"),
            org: Some("my org"),
            api_key: false,
        };
        assert_eq!(
            token_output(Format::Env, "abc", "", env),
            "export SNYK_OAUTH_TOKEN=abc\nexport SNYK_API=https://api.eu.snyk.io\nexport SNYK_CFG_ORG='my org'\n"
        );
        assert_eq!(token_output(Format::Token, "abc", "", env), "abc\n");
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
    }
}
