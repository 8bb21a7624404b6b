//! The audit trail (`server.audit_log`, issue 17): one JSON line per admin
//! operation, per grant at Snyk, per refusal, and per first hand-out of an
//! access token to a peer. Never a secret, never a token fingerprint.
//!
//! **Hash chain.** Every line ends with `"prev"`: the SHA-256 (hex) of the
//! previous line's bytes (without its newline); the very first line carries
//! 64 zeros. The chain is carried across files: after logrotate moves the file
//! and SIGHUP reopens the path, the new file's first line names the old file's
//! last. `snykey audit verify OLD NEW` checks it and names the first line that
//! does not follow its predecessor. Deleting or changing a line is detected
//! once a later line exists; the agent writes an `audit` line at every start
//! and reopen, so a tampered tail shows at the next one.
//!
//! **One log per process**, like the metrics registry: the routing layer and
//! the broker call [`record`], [`grant`] and [`hand_out`] without plumbing; each
//! is one atomic load while the log is off. Lines are written with one
//! `write` to a file opened `O_APPEND`, created 0600 (a looser mode on an
//! existing file is tightened).

use crate::credential::CredKey;
use crate::locks::Recover;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// `prev` of the first line of a new chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who asked (from `SO_PEERCRED` and `/proc/PID/exe`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeerInfo {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    pub exe: Option<String>,
}

/// What happened; serialized in this field order, between `time` and `prev`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Event {
    /// `admin`, `refused`, `token`, `grant` or `audit`.
    pub event: &'static str,
    /// The operation (`put_credential`, `get_token`, `refresh`...).
    pub op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `ok`, `refused` or `error`.
    pub outcome: &'static str,
    /// The HTTP status answered, for API requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The API's error `code`, or a grant's failure class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When the handed-out token expires (identifies it without a fingerprint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerInfo>,
}

impl Event {
    pub fn with_key(mut self, key: &CredKey) -> Event {
        self.org_id = Some(key.org.to_string());
        self.client_id = Some(key.client.to_string());
        self
    }
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event,
    prev: &'a str,
}

/// Grants at Snyk, for [`grant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    Refresh,
    CodeExchange,
    ClientCredentials,
    SecretRotation,
}

impl GrantKind {
    fn as_str(self) -> &'static str {
        match self {
            GrantKind::Refresh => "refresh",
            GrantKind::CodeExchange => "code_exchange",
            GrantKind::ClientCredentials => "client_credentials",
            GrantKind::SecretRotation => "secret_rotation",
        }
    }
}

struct Writer {
    path: PathBuf,
    file: File,
    /// Hex SHA-256 of the last line written (or found) in the chain.
    prev: String,
    /// The file did not end with a newline when opened (a torn write).
    needs_newline: bool,
}

/// The process's audit log.
pub struct AuditLog {
    on: AtomicBool,
    writer: Mutex<Option<Writer>>,
    /// (credential, token expiry, uid, gid) already recorded as handed out.
    handed: Mutex<HashSet<(CredKey, u64, u32, u32)>>,
}

static LOG: LazyLock<AuditLog> = LazyLock::new(AuditLog::new);

/// Whether `server.audit_log` is set (one atomic load).
pub fn enabled() -> bool {
    LOG.enabled()
}

/// Opens, reopens (SIGHUP, logrotate) or closes (`None`) the process's log.
pub fn configure(path: Option<&Path>, why: &'static str) -> Result<(), String> {
    LOG.configure(path, why)
}

/// Appends one event; a no-op while the log is off.
pub fn record(event: Event) {
    LOG.record(event)
}

/// A grant at Snyk: `outcome` is `ok` or `error`, `code` a failure class
/// when it failed. Never pass a token or a secret.
///
/// Called for every request that asks Snyk for a token or a secret: each
/// send of a refresh token (`broker::refresh`: on demand, proactive, forced,
/// the rotation at `PUT`, a journaled send retried after a restart), the code
/// exchange (`api::callback`), every client-credentials grant of a service
/// account (client secret or private-key JWT) and the new secret of a
/// secret rotation (`broker::service_accounts`).
pub fn grant(kind: GrantKind, key: Option<&CredKey>, outcome: &'static str, code: Option<&str>) {
    if !enabled() {
        return;
    }
    let mut e = Event {
        event: "grant",
        op: kind.as_str(),
        outcome,
        code: code.map(str::to_string),
        ..Event::default()
    };
    if let Some(k) = key {
        e = e.with_key(k);
    }
    record(e)
}

/// [`grant`] for the result of a token request: `ok`, or `error` with the
/// failure class (never Snyk's own words: its answer is not copied into the
/// trail).
pub fn grant_result<T>(
    kind: GrantKind,
    key: Option<&CredKey>,
    result: &Result<T, crate::snyk::GrantError>,
) {
    match result {
        Ok(_) => grant(kind, key, "ok", None),
        Err(e) => grant(kind, key, "error", Some(grant_error_code(e))),
    }
}

/// The failure class of a token request, as the audit line names it.
pub fn grant_error_code(e: &crate::snyk::GrantError) -> &'static str {
    use crate::snyk::GrantError as G;
    match e {
        G::Permanent { .. } => "permanent",
        G::Refused { .. } => "refused",
        G::Unavailable { status: 429, .. } => "rate_limited",
        G::Unavailable { .. } => "unavailable",
        G::Unreachable { .. } => "unreachable",
        G::Unknown {
            timed_out: true, ..
        } => "timed_out",
        G::Unknown { .. } => "answer_lost",
    }
}

/// The failure class of a Snyk REST request (a secret rotation).
pub fn rest_error_code(e: &crate::snyk::rest::RestError) -> &'static str {
    use crate::snyk::rest::RestError as R;
    match e {
        R::Refused { .. } => "refused",
        R::Unavailable { .. } => "unavailable",
        R::Unreachable(_) => "unreachable",
        R::Protocol(_) => "protocol",
    }
}

/// A token handed to a peer: recorded the first time this token (known by its
/// expiry) reaches this uid/gid, not on every call.
/// `peer` is only called for the line itself, not on every call.
pub fn hand_out(
    key: &CredKey,
    expires_at: SystemTime,
    (uid, gid): (u32, u32),
    peer: impl FnOnce() -> PeerInfo,
) {
    LOG.hand_out(key, expires_at, (uid, gid), peer)
}

impl Default for AuditLog {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditLog {
    pub fn new() -> AuditLog {
        AuditLog {
            on: AtomicBool::new(false),
            writer: Mutex::new(None),
            handed: Mutex::new(HashSet::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// See [`configure`]. On failure the log in use (if any) stays in use.
    pub fn configure(&self, path: Option<&Path>, why: &'static str) -> Result<(), String> {
        let mut w = self.writer.lock().recover();
        let Some(path) = path else {
            if w.take().is_some() {
                tracing::info!("audit log closed (server.audit_log is now empty)");
            }
            self.on.store(false, Ordering::Relaxed);
            return Ok(());
        };
        let carried = w.as_ref().map(|old| old.prev.clone());
        let new = open(path, carried)?;
        *w = Some(new);
        self.on.store(true, Ordering::Relaxed);
        if let Some(w) = w.as_mut() {
            write_line(
                w,
                &Event {
                    event: "audit",
                    op: why,
                    outcome: "ok",
                    ..Event::default()
                },
            );
        }
        Ok(())
    }

    pub fn record(&self, event: Event) {
        if !self.enabled() {
            return;
        }
        let mut w = self.writer.lock().recover();
        if let Some(w) = w.as_mut() {
            write_line(w, &event);
        }
    }

    pub fn hand_out(
        &self,
        key: &CredKey,
        expires_at: SystemTime,
        (uid, gid): (u32, u32),
        peer: impl FnOnce() -> PeerInfo,
    ) {
        if !self.enabled() {
            return;
        }
        let exp = expires_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        {
            let mut handed = self.handed.lock().recover();
            if !handed.insert((key.clone(), exp, uid, gid)) {
                return;
            }
            if handed.len() > 10_000 {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                handed.retain(|(_, e, _, _)| *e > now);
            }
        }
        self.record(
            Event {
                event: "token",
                op: "get_token",
                outcome: "ok",
                expires_at: Some(crate::clock::rfc3339(expires_at)),
                peer: Some(peer()),
                ..Event::default()
            }
            .with_key(key),
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The chain hash of one line (its bytes without the newline).
pub fn line_hash(line: &[u8]) -> String {
    hex(&Sha256::digest(line))
}

fn write_line(w: &mut Writer, event: &Event) {
    let line = Line {
        time: crate::clock::rfc3339(SystemTime::now()),
        event,
        prev: &w.prev,
    };
    let Ok(mut text) = serde_json::to_string(&line) else {
        return;
    };
    let hash = line_hash(text.as_bytes());
    text.push('\n');
    if w.needs_newline {
        text.insert(0, '\n');
    }
    match w.file.write_all(text.as_bytes()) {
        Ok(()) => {
            w.prev = hash;
            w.needs_newline = false;
        }
        Err(e) => {
            crate::metrics::backend_error("audit");
            tracing::error!(path = %w.path.display(), error = %e, "cannot write to the audit log (server.audit_log); the event is lost");
        }
    }
}

/// Opens (creating 0600) `path` for appending. The chain continues from the
/// file's last line when it has one, else from `carried` (the file rotated
/// away), else from [`GENESIS`].
fn open(path: &Path, carried: Option<String>) -> Result<Writer, String> {
    let what = |e: std::io::Error| {
        format!(
            "cannot open the audit log {} (server.audit_log): {e}",
            path.display()
        )
    };
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(what)?;
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(what)?;
    let meta = file.metadata().map_err(what)?;
    if !meta.is_file() {
        return Err(format!(
            "the audit log {} (server.audit_log) is not a regular file",
            path.display()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the audit log was readable by others; setting its mode to 0600");
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(what)?;
    }
    let (last, needs_newline) = last_line(&mut file, meta.len()).map_err(what)?;
    let prev = match last {
        Some(line) => line_hash(&line),
        None => carried.unwrap_or_else(|| GENESIS.to_string()),
    };
    Ok(Writer {
        path: path.to_path_buf(),
        file,
        prev,
        needs_newline,
    })
}

/// The file's last line (without its newline), and whether the file lacks a
/// final newline.
fn last_line(file: &mut File, len: u64) -> std::io::Result<(Option<Vec<u8>>, bool)> {
    if len == 0 {
        return Ok((None, false));
    }
    let mut start = len.saturating_sub(64 * 1024);
    loop {
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        let torn = tail.last() != Some(&b'\n');
        let body = if torn {
            &tail[..]
        } else {
            &tail[..tail.len() - 1]
        };
        match body.iter().rposition(|b| *b == b'\n') {
            Some(i) => return Ok((Some(body[i + 1..].to_vec()), torn)),
            None if start == 0 => return Ok((Some(body.to_vec()), torn)),
            // One line longer than the window: read the whole file.
            None => start = 0,
        }
    }
}

/// What `snykey audit verify` found.
#[derive(Debug)]
pub struct Verified {
    pub lines: usize,
    /// Hash of the last line: anchor it elsewhere to protect the tail.
    pub last_hash: String,
    /// The first line continues a chain from a file that was not given.
    pub starts_mid_chain: bool,
}

/// Checks the hash chain through `files` in order (oldest first). The error
/// names the first line that does not follow its predecessor.
pub fn verify(files: &[PathBuf]) -> Result<Verified, String> {
    let mut prev: Option<(String, String)> = None; // (hash, "FILE line N")
    let mut lines = 0;
    let mut starts_mid_chain = false;
    for path in files {
        let data =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if data.is_empty() {
            continue;
        }
        let body = data.strip_suffix(b"\n").unwrap_or(&data);
        for (i, line) in body.split(|b| *b == b'\n').enumerate() {
            let at = format!("{} line {}", path.display(), i + 1);
            let v: serde_json::Value = serde_json::from_slice(line)
                .map_err(|_| format!("{at} is not a JSON audit line: it was changed or torn"))?;
            let Some(claimed) = v.get("prev").and_then(|p| p.as_str()) else {
                return Err(format!("{at} has no \"prev\" hash: it was changed"));
            };
            match &prev {
                Some((hash, before)) if hash != claimed => {
                    return Err(format!(
                        "{at} breaks the chain: its \"prev\" is not the SHA-256 of {before} ({before} was changed, or lines between them were deleted)"
                    ));
                }
                Some(_) => {}
                None => starts_mid_chain = claimed != GENESIS,
            }
            prev = Some((line_hash(line), at));
            lines += 1;
        }
    }
    Ok(Verified {
        lines,
        last_hash: prev.map(|(h, _)| h).unwrap_or_else(|| GENESIS.to_string()),
        starts_mid_chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CredKey {
        CredKey::parse("org1", "cli1").unwrap()
    }

    fn peer(uid: u32) -> PeerInfo {
        PeerInfo {
            uid,
            gid: uid,
            pid: Some(42),
            exe: Some("/usr/bin/snykey-helper".into()),
        }
    }

    fn admin(op: &'static str) -> Event {
        Event {
            event: "admin",
            op,
            outcome: "ok",
            status: Some(200),
            peer: Some(peer(0)),
            ..Event::default()
        }
        .with_key(&key())
    }

    #[test]
    fn lines_are_json_chained_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.log");
        let log = AuditLog::new();
        log.configure(Some(&path), "start").unwrap();
        log.record(admin("put_credential"));
        log.record(admin("delete_credential"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["prev"], GENESIS);
        assert_eq!(first["event"], "audit");
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["prev"], line_hash(lines[0].as_bytes()));
        assert_eq!(second["op"], "put_credential");
        assert_eq!(second["org_id"], "org1");
        assert_eq!(second["peer"]["exe"], "/usr/bin/snykey-helper");
        assert!(lines[2].ends_with(&format!(
            "\"prev\":\"{}\"}}",
            line_hash(lines[1].as_bytes())
        )));
        let v = verify(&[path]).unwrap();
        assert_eq!(v.lines, 3);
        assert!(!v.starts_mid_chain);
        assert_eq!(v.last_hash, line_hash(lines[2].as_bytes()));
    }

    #[test]
    fn a_changed_byte_or_a_deleted_line_is_found_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::new();
        log.configure(Some(&path), "start").unwrap();
        for _ in 0..4 {
            log.record(admin("put_credential"));
        }
        let good = std::fs::read_to_string(&path).unwrap();
        // One byte of line 3 (a digit of the status), still valid JSON.
        let lines: Vec<&str> = good.lines().collect();
        let changed = lines[2].replace("\"status\":200", "\"status\":201");
        let mut t = lines.clone();
        t[2] = &changed;
        std::fs::write(&path, t.join("\n") + "\n").unwrap();
        let e = verify(std::slice::from_ref(&path)).unwrap_err();
        assert!(
            e.contains("line 4 breaks the chain") && e.contains("line 3 was changed"),
            "{e}"
        );
        // Line 2 deleted.
        let mut t = lines.clone();
        t.remove(1);
        std::fs::write(&path, t.join("\n") + "\n").unwrap();
        let e = verify(std::slice::from_ref(&path)).unwrap_err();
        assert!(e.contains("line 2 breaks the chain"), "{e}");
        // A byte that breaks the JSON names that very line.
        std::fs::write(&path, good.replacen("{\"time\"", "{\"tim\x01", 1)).unwrap();
        let e = verify(std::slice::from_ref(&path)).unwrap_err();
        assert!(e.contains("line 1 is not a JSON audit line"), "{e}");
    }

    #[test]
    fn the_chain_is_carried_across_a_rotation_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let rotated = dir.path().join("audit.log.1");
        let log = AuditLog::new();
        log.configure(Some(&path), "start").unwrap();
        log.record(admin("put_credential"));
        // logrotate moves the file; SIGHUP reopens the path.
        std::fs::rename(&path, &rotated).unwrap();
        log.configure(Some(&path), "reopen").unwrap();
        log.record(admin("delete_credential"));
        let v = verify(&[rotated.clone(), path.clone()]).unwrap();
        assert_eq!(v.lines, 4);
        // The new file alone verifies, starting mid-chain.
        assert!(
            verify(std::slice::from_ref(&path))
                .unwrap()
                .starts_mid_chain
        );
        // Out of order, it does not.
        assert!(verify(&[path.clone(), rotated.clone()]).is_err());
        // A restart (a new process) continues the file's own chain.
        let again = AuditLog::new();
        again.configure(Some(&path), "start").unwrap();
        again.record(admin("login"));
        assert_eq!(verify(&[rotated, path]).unwrap().lines, 6);
    }

    #[test]
    fn a_token_is_recorded_once_per_peer_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::new();
        log.configure(Some(&path), "start").unwrap();
        let t1 = UNIX_EPOCH + std::time::Duration::from_secs(4_000_000_000);
        let t2 = t1 + std::time::Duration::from_secs(3600);
        for _ in 0..5 {
            log.hand_out(&key(), t1, (1001, 1001), || peer(1001));
        }
        log.hand_out(&key(), t1, (1002, 1002), || peer(1002));
        log.hand_out(&key(), t2, (1001, 1001), || peer(1001));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines()
                .filter(|l| l.contains("\"event\":\"token\""))
                .count(),
            3
        );
        assert!(text.contains("\"expires_at\":\"2096-"), "{text}");
    }

    #[test]
    fn off_means_no_file_and_no_work() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new();
        log.record(admin("put_credential"));
        log.hand_out(&key(), SystemTime::now(), (1, 1), || {
            panic!("the peer is not even looked at")
        });
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
        // Turning it off again closes it.
        let path = dir.path().join("a.log");
        log.configure(Some(&path), "start").unwrap();
        log.configure(None, "reopen").unwrap();
        log.record(admin("login"));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[test]
    fn an_existing_loose_file_is_made_private_and_a_symlink_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        AuditLog::new().configure(Some(&path), "start").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(AuditLog::new().configure(Some(&link), "start").is_err());
    }
}
