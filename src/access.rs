//! Who may do what (issue 17): pure decisions over a peer's ids (uid, gid,
//! supplementary groups), an [`Operation`] and a credential. No I/O, no locks:
//! the routing layer (`api::routes`) asks, the broker never does.
//!
//! Three gates, in this order:
//! 1. **The socket** (`server.allowed_uids`/`allowed_gids`): empty lists mean
//!    whoever can open the socket file; the agent's own uid always passes.
//! 2. **Admin operations** (store, delete, revoke, clear a cache, log in,
//!    register an app, manage service accounts) need an admin: the agent's own
//!    uid always (it can read the store anyway), plus `server.admin_uids` and
//!    `server.admin_gids`; while both lists are empty, root is an admin too.
//! 3. **Token reads** (and the list of credentials): with no `[[access]]`
//!    table every peer on the socket may read every credential (the behaviour
//!    before issue 17); with one or more, a read needs an admin or a table whose
//!    `credentials` match (`ORG/CLIENT` or `ORG/*`) and whose `uids`/`gids`
//!    include the peer (primary gid or a supplementary group).

use crate::credential::CredKey;
use crate::ids::OrgId;
use crate::wire::ErrorCode;
use std::fmt;

/// The kernel's account of a peer (`SO_PEERCRED`, `SO_PEERGROUPS`).
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub uid: u32,
    pub gid: u32,
    pub groups: &'a [u32],
}

impl Who<'_> {
    /// The primary gid or any supplementary group is in `gids`.
    fn in_any(&self, gids: &[u32]) -> bool {
        gids.contains(&self.gid) || self.groups.iter().any(|g| gids.contains(g))
    }
}

/// One `[[access]]` credential pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `ORG_ID/CLIENT_ID`
    One(CredKey),
    /// `ORG_ID/*`: every credential of the organisation.
    Org(OrgId),
}

impl Pattern {
    /// Parses `ORG_ID/CLIENT_ID` or `ORG_ID/*`; ids follow docs/api.md.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        let Some((org, client)) = s.split_once('/') else {
            return Err(format!("{s:?} is not \"ORG_ID/CLIENT_ID\" or \"ORG_ID/*\""));
        };
        let org = OrgId::parse(org).map_err(|e| format!("{s:?}: {e}"))?;
        if client == "*" {
            return Ok(Pattern::Org(org));
        }
        let key = CredKey::parse(org.as_str(), client).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(Pattern::One(key))
    }

    pub fn matches(&self, key: &CredKey) -> bool {
        match self {
            Pattern::One(k) => k == key,
            Pattern::Org(org) => &key.org == org,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::One(k) => write!(f, "{k}"),
            Pattern::Org(o) => write!(f, "{o}/*"),
        }
    }
}

/// One `[[access]]` table: these uids and groups may read these credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub credentials: Vec<Pattern>,
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl Grant {
    fn grants(&self, who: Who<'_>, key: &CredKey) -> bool {
        (self.uids.contains(&who.uid) || who.in_any(&self.gids))
            && self.credentials.iter().any(|p| p.matches(key))
    }
}

/// What an admin may do and others may not. `as_str` is the audit log's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOp {
    PutCredential,
    DeleteCredential,
    /// `DELETE ...?revoke=true`: also revokes at Snyk.
    Revoke,
    ClearCache,
    Login,
    LoginStatus,
    RegisterApp,
    ServiceAccounts,
    /// `GET /v1/ready?write=true` (`snykey doctor`): writes and removes a
    /// scratch record in the secret store.
    WriteCheck,
    /// `POST /v1/reload` (`snykey reload`): re-read the config file.
    Reload,
}

impl AdminOp {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminOp::PutCredential => "put_credential",
            AdminOp::DeleteCredential => "delete_credential",
            AdminOp::Revoke => "revoke_credential",
            AdminOp::ClearCache => "delete_cache",
            AdminOp::Login => "login",
            AdminOp::LoginStatus => "login_status",
            AdminOp::RegisterApp => "register_app",
            AdminOp::ServiceAccounts => "service_accounts",
            AdminOp::WriteCheck => "write_check",
            AdminOp::Reload => "reload",
        }
    }

    /// "may not {describe}" in a refusal.
    fn describe(self) -> &'static str {
        match self {
            AdminOp::PutCredential => "store credentials",
            AdminOp::DeleteCredential => "delete credentials",
            AdminOp::Revoke => "revoke credentials",
            AdminOp::ClearCache => "clear cached tokens",
            AdminOp::Login => "start logins",
            AdminOp::LoginStatus => "follow logins",
            AdminOp::RegisterApp => "register apps",
            AdminOp::ServiceAccounts => "manage service accounts",
            AdminOp::WriteCheck => "write to the secret store (the doctor's write check)",
            AdminOp::Reload => "reload the agent's configuration",
        }
    }
}

/// What a request asks for, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    /// Health, readiness, metrics: anyone on the socket.
    Open,
    /// `GET /v1/credentials`: anyone on the socket; the answer is filtered
    /// with [`Policy::may_read`].
    List,
    /// A credential's token (or a forced refresh of it).
    Read(&'a CredKey),
    /// `credential` is named in refusals when the path carries it.
    Admin(AdminOp, Option<&'a CredKey>),
}

/// Why a request was refused; `Display` is the sentence the peer gets,
/// naming the credential and the config key to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotOnSocket {
        uid: u32,
        gid: u32,
    },
    NotAdmin {
        uid: u32,
        gid: u32,
        op: AdminOp,
        credential: Option<CredKey>,
    },
    NoGrant {
        uid: u32,
        gid: u32,
        credential: CredKey,
    },
}

impl Refusal {
    /// The API's `code`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::NotOnSocket { .. } => ErrorCode::PeerNotAllowed,
            Refusal::NotAdmin { .. } | Refusal::NoGrant { .. } => ErrorCode::Forbidden,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotOnSocket { uid, gid } => write!(
                f,
                "uid {uid} (gid {gid}) is not allowed on this socket: add it to server.allowed_uids or allowed_gids"
            ),
            Refusal::NotAdmin {
                uid,
                gid,
                op,
                credential,
            } => {
                write!(f, "uid {uid} (gid {gid}) may not {}", op.describe())?;
                if let Some(k) = credential {
                    write!(f, " (credential {k})")?;
                }
                write!(
                    f,
                    ": that is an admin operation; add the uid to server.admin_uids or one of its groups to server.admin_gids"
                )
            }
            Refusal::NoGrant {
                uid,
                gid,
                credential,
            } => write!(
                f,
                "uid {uid} (gid {gid}) may not read credential {credential}: add an [[access]] table with credentials = [\"{credential}\"] (or \"{}/*\") and this uid in uids or one of its groups in gids",
                credential.org
            ),
        }
    }
}

/// The rules in force; replaced whole on SIGHUP.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allowed_uids: Vec<u32>,
    pub allowed_gids: Vec<u32>,
    pub admin_uids: Vec<u32>,
    pub admin_gids: Vec<u32>,
    /// The `[[access]]` tables; empty means every peer may read everything.
    pub grants: Vec<Grant>,
    /// The agent's own (effective) uid.
    pub own_uid: u32,
}

impl Policy {
    /// Gate 1: may this peer talk to the agent at all?
    pub fn on_socket(&self, who: Who<'_>) -> bool {
        (self.allowed_uids.is_empty() && self.allowed_gids.is_empty())
            || who.uid == self.own_uid
            || self.allowed_uids.contains(&who.uid)
            || who.in_any(&self.allowed_gids)
    }

    /// Gate 2: the agent's own uid; root while no admin is configured; the lists.
    pub fn is_admin(&self, who: Who<'_>) -> bool {
        who.uid == self.own_uid
            || (self.admin_uids.is_empty() && self.admin_gids.is_empty() && who.uid == 0)
            || self.admin_uids.contains(&who.uid)
            || who.in_any(&self.admin_gids)
    }

    /// Gate 3: may this peer (already on the socket) read `key`'s token?
    pub fn may_read(&self, who: Who<'_>, key: &CredKey) -> bool {
        // Grants before admins: the common case (a consumer) decides first.
        self.grants.is_empty()
            || self.grants.iter().any(|g| g.grants(who, key))
            || self.is_admin(who)
    }

    /// The whole decision for one request.
    pub fn decide(&self, who: Who<'_>, op: Operation<'_>) -> Result<(), Refusal> {
        let (uid, gid) = (who.uid, who.gid);
        if !self.on_socket(who) {
            return Err(Refusal::NotOnSocket { uid, gid });
        }
        match op {
            Operation::Open | Operation::List => Ok(()),
            Operation::Read(key) if self.may_read(who, key) => Ok(()),
            Operation::Read(key) => Err(Refusal::NoGrant {
                uid,
                gid,
                credential: key.clone(),
            }),
            Operation::Admin(_, _) if self.is_admin(who) => Ok(()),
            Operation::Admin(op, credential) => Err(Refusal::NotAdmin {
                uid,
                gid,
                op,
                credential: credential.cloned(),
            }),
        }
    }

    /// One line for the start-up log and `check-config`: who may read what.
    pub fn summary(&self) -> String {
        let admins = if self.admin_uids.is_empty() && self.admin_gids.is_empty() {
            format!("the agent's uid {} and root", self.own_uid)
        } else {
            format!(
                "the agent's uid {}, uids {:?}, gids {:?}",
                self.own_uid, self.admin_uids, self.admin_gids
            )
        };
        if self.grants.is_empty() {
            format!(
                "no [[access]] table: every peer allowed on the socket may read every credential's token; admins: {admins}"
            )
        } else {
            let patterns: usize = self.grants.iter().map(|g| g.credentials.len()).sum();
            format!(
                "{} [[access]] table(s) with {patterns} credential pattern(s): a token read needs a matching entry or an admin; admins: {admins}",
                self.grants.len()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: u32 = 990;

    fn key(s: &str) -> CredKey {
        let (o, c) = s.split_once('/').unwrap();
        CredKey::parse(o, c).unwrap()
    }

    fn who(uid: u32, gid: u32, groups: &[u32]) -> Who<'_> {
        Who { uid, gid, groups }
    }

    fn grant(creds: &[&str], uids: &[u32], gids: &[u32]) -> Grant {
        Grant {
            credentials: creds.iter().map(|c| Pattern::parse(c).unwrap()).collect(),
            uids: uids.to_vec(),
            gids: gids.to_vec(),
        }
    }

    fn policy() -> Policy {
        Policy {
            own_uid: OWN,
            ..Policy::default()
        }
    }

    fn all_admin_ops() -> [AdminOp; 8] {
        [
            AdminOp::PutCredential,
            AdminOp::DeleteCredential,
            AdminOp::Revoke,
            AdminOp::ClearCache,
            AdminOp::Login,
            AdminOp::LoginStatus,
            AdminOp::RegisterApp,
            AdminOp::ServiceAccounts,
        ]
    }

    #[test]
    fn patterns_are_an_exact_pair_or_a_whole_org() {
        assert_eq!(Pattern::parse("o1/c1").unwrap(), Pattern::One(key("o1/c1")));
        assert!(Pattern::parse("o1/*").unwrap().matches(&key("o1/anything")));
        assert!(!Pattern::parse("o1/*").unwrap().matches(&key("o2/c")));
        assert!(!Pattern::parse("o1/c1").unwrap().matches(&key("o1/c2")));
        for bad in [
            "o1", "*/*", "*/c", "o1/c*", "../x/c", "o1/", "/c", "o1/c/d", "",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(Pattern::parse("o1/*").unwrap().to_string(), "o1/*");
    }

    #[test]
    fn without_access_tables_every_peer_on_the_socket_reads_everything() {
        let p = policy();
        for w in [who(1001, 1001, &[]), who(0, 0, &[]), who(OWN, 5, &[])] {
            assert!(p.decide(w, Operation::Read(&key("o/c"))).is_ok());
            assert!(p.decide(w, Operation::List).is_ok());
        }
    }

    #[test]
    fn with_access_tables_a_read_needs_a_matching_uid_or_group() {
        let mut p = policy();
        p.grants = vec![
            grant(&["team-a/app"], &[1001], &[]),
            grant(&["team-b/*"], &[], &[2002]),
        ];
        let a = key("team-a/app");
        let a2 = key("team-a/other");
        let b = key("team-b/anything");
        // By uid, only the named credential.
        assert!(p.may_read(who(1001, 1001, &[]), &a));
        assert!(!p.may_read(who(1001, 1001, &[]), &a2));
        assert!(!p.may_read(who(1001, 1001, &[]), &b));
        // By primary gid or a supplementary group, the whole org.
        assert!(p.may_read(who(1500, 2002, &[]), &b));
        assert!(p.may_read(who(1500, 1500, &[7, 2002]), &b));
        assert!(!p.may_read(who(1500, 1500, &[7, 2002]), &a));
        // A uid that matches a group's number is not that group.
        assert!(!p.may_read(who(2002, 1, &[]), &b));
        // Nobody else.
        assert!(!p.may_read(who(1002, 1002, &[1003]), &a));
        // Admins (own uid, root by default) read everything.
        assert!(p.may_read(who(OWN, 1, &[]), &a2));
        assert!(p.may_read(who(0, 0, &[]), &a2));
        let e = p.decide(who(1001, 1001, &[]), Operation::Read(&a2));
        assert_eq!(
            e,
            Err(Refusal::NoGrant {
                uid: 1001,
                gid: 1001,
                credential: a2.clone()
            })
        );
    }

    #[test]
    fn a_grant_needs_both_the_peer_and_the_credential_in_the_same_table() {
        let mut p = policy();
        p.grants = vec![grant(&["o/a"], &[1001], &[]), grant(&["o/b"], &[1002], &[])];
        assert!(!p.may_read(who(1001, 0, &[]), &key("o/b")));
        assert!(!p.may_read(who(1002, 0, &[]), &key("o/a")));
        assert!(p.may_read(who(1002, 0, &[]), &key("o/b")));
    }

    #[test]
    fn admin_operations_need_an_admin_whatever_the_access_tables_say() {
        let mut p = policy();
        p.grants = vec![grant(&["o/*"], &[1001], &[4000])];
        let k = key("o/c");
        for op in all_admin_ops() {
            for consumer in [who(1001, 1001, &[]), who(5, 4000, &[4000])] {
                let e = p
                    .decide(consumer, Operation::Admin(op, Some(&k)))
                    .unwrap_err();
                assert_eq!(e.code(), ErrorCode::Forbidden);
            }
            // Default admins: the agent's uid and root.
            assert!(
                p.decide(who(OWN, 1, &[]), Operation::Admin(op, None))
                    .is_ok()
            );
            assert!(p.decide(who(0, 0, &[]), Operation::Admin(op, None)).is_ok());
        }
        // Without tables too: reading everything is not administering.
        let p = policy();
        assert!(
            p.decide(
                who(1001, 1001, &[]),
                Operation::Admin(AdminOp::PutCredential, None)
            )
            .is_err()
        );
    }

    #[test]
    fn configured_admins_by_uid_or_group_replace_root_but_never_the_agent_itself() {
        let mut p = policy();
        p.admin_uids = vec![1500];
        p.admin_gids = vec![3000];
        let put = Operation::Admin(AdminOp::PutCredential, None);
        assert!(p.decide(who(1500, 1500, &[]), put).is_ok());
        assert!(p.decide(who(1600, 3000, &[]), put).is_ok());
        assert!(p.decide(who(1600, 1600, &[9, 3000]), put).is_ok());
        assert!(p.decide(who(OWN, OWN, &[]), put).is_ok());
        assert!(
            p.decide(who(0, 0, &[]), put).is_err(),
            "root is no longer a default admin"
        );
        assert!(p.decide(who(1600, 1600, &[]), put).is_err());
        // An admin lists everything and reads everything.
        p.grants = vec![grant(&["x/y"], &[1], &[])];
        assert!(p.may_read(who(1600, 1600, &[3000]), &key("q/r")));
    }

    #[test]
    fn the_socket_allow_list_comes_first() {
        let mut p = policy();
        p.allowed_uids = vec![1001];
        p.allowed_gids = vec![4242];
        let k = key("o/c");
        assert!(p.decide(who(1001, 1, &[]), Operation::Read(&k)).is_ok());
        assert!(p.decide(who(7, 4242, &[]), Operation::Open).is_ok());
        assert!(p.decide(who(7, 7, &[4242]), Operation::Open).is_ok());
        assert!(p.decide(who(OWN, 7, &[]), Operation::Open).is_ok());
        let e = p.decide(who(7, 7, &[]), Operation::Open).unwrap_err();
        assert_eq!(e, Refusal::NotOnSocket { uid: 7, gid: 7 });
        assert_eq!(e.code(), ErrorCode::PeerNotAllowed);
        // Being an admin does not open the socket.
        let e = p
            .decide(who(0, 0, &[]), Operation::Admin(AdminOp::Login, None))
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::PeerNotAllowed);
    }

    #[test]
    fn every_operation_for_every_kind_of_peer() {
        // The whole table: (peer, operation) -> allowed, with and without tables.
        let k = key("o/c");
        let other = key("p/d");
        let peers = [
            ("own", who(OWN, OWN, &[])),
            ("root", who(0, 0, &[])),
            ("granted uid", who(1001, 1001, &[])),
            ("granted group", who(1002, 1002, &[2002])),
            ("stranger", who(1003, 1003, &[])),
        ];
        let ops = [
            ("open", Operation::Open),
            ("list", Operation::List),
            ("read", Operation::Read(&k)),
            ("read other", Operation::Read(&other)),
            ("admin", Operation::Admin(AdminOp::ClearCache, Some(&k))),
        ];
        let mut p = policy();
        for with_tables in [false, true] {
            p.grants = if with_tables {
                vec![grant(&["o/c"], &[1001], &[2002])]
            } else {
                Vec::new()
            };
            for (pname, w) in peers {
                for (oname, op) in ops {
                    let admin = matches!(pname, "own" | "root");
                    let expected = match oname {
                        "open" | "list" => true,
                        "admin" => admin,
                        "read" => !with_tables || admin || pname.starts_with("granted"),
                        _ => !with_tables || admin,
                    };
                    assert_eq!(
                        p.decide(w, op).is_ok(),
                        expected,
                        "{pname} / {oname} / tables: {with_tables}"
                    );
                }
            }
        }
    }

    #[test]
    fn refusals_name_the_credential_and_the_key_to_change() {
        let e = Refusal::NoGrant {
            uid: 1001,
            gid: 1001,
            credential: key("org1/cli1"),
        }
        .to_string();
        assert!(
            e.contains("org1/cli1") && e.contains("[[access]]") && e.contains("org1/*"),
            "{e}"
        );
        let e = Refusal::NotAdmin {
            uid: 1001,
            gid: 1001,
            op: AdminOp::Revoke,
            credential: Some(key("org1/cli1")),
        }
        .to_string();
        assert!(
            e.contains("org1/cli1") && e.contains("server.admin_uids") && e.contains("revoke"),
            "{e}"
        );
    }

    #[test]
    fn the_summary_says_whether_reads_are_open() {
        let mut p = policy();
        assert!(
            p.summary()
                .contains("every peer allowed on the socket may read every credential")
        );
        assert!(p.summary().contains("root"));
        p.grants = vec![grant(&["o/c", "p/*"], &[1], &[])];
        p.admin_uids = vec![5];
        let s = p.summary();
        assert!(
            s.contains("1 [[access]] table(s) with 2 credential pattern(s)"),
            "{s}"
        );
        assert!(!s.contains("root"), "{s}");
    }
}
