//! Which ACL every znode this program creates gets, how an ACL found in ZooKeeper is judged, and
//! how a refusal (`NoAuth`, `InvalidAcl`, `AuthFailed`) is explained to people.
//!
//! Without `[zk-auth]` every node is `world:anyone` ALL, as ZooKeeper's default. With it:
//! nodes and directories are ALL for their creator (this program's digest identity, named
//! explicitly) and the configured admin, READ for everyone else; the registry root and missing
//! ancestors of it additionally let anyone CREATE, so that the other program, under its own
//! identity, can make its directory there. ZooKeeper checks DELETE on the parent and WRITE on
//! the node itself, so nothing that exists can be changed or removed without the credentials.

use std::time::{Duration, Instant};

use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use zookeeper_client::{Acl, Acls, AuthId, Error as ZkError, Permission};

use super::access::{ZkAccess, ZkAuth};

/// The ACLs of the nodes this program creates, derived from its `[zk-auth]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAcls {
    /// The digest user and identity (`user:hash`) of this program's sessions.
    me: Option<(String, String)>,
    /// The admin identity (`user:hash`), if configured.
    admin: Option<String>,
    node: Vec<Acl>,
    root: Vec<Acl>,
}

/// Which kind of node an ACL is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// The registry root and its missing ancestors: others may create their directory there.
    Root,
    /// A role directory (`agents`, `live`, `incidents`, …) or a record node.
    Node,
}

impl NodeAcls {
    /// `world:anyone` ALL everywhere: the behaviour without credentials.
    pub fn open() -> Self {
        let all = vec![Acl::new(Permission::ALL, AuthId::anyone())];
        NodeAcls {
            me: None,
            admin: None,
            node: all.clone(),
            root: all,
        }
    }

    /// The ACLs for a program with these ZooKeeper settings.
    pub fn new(access: &ZkAccess) -> Self {
        Self::for_auth(access.auth.as_ref())
    }

    /// The ACLs for a program with these credentials (none: [`open`](Self::open)).
    pub fn for_auth(auth: Option<&ZkAuth>) -> Self {
        let Some(auth) = auth else {
            return Self::open();
        };
        // This program's digest identity, named explicitly rather than through the `auth`
        // scheme: `auth` grants every identity the session holds, and with TLS client
        // certificates that includes `x509:<the certificate's subject>`, which other programs
        // (the watchers, say) may share.
        let me = digest_id(&auth.user, auth.password.expose());
        let mut node = vec![Acl::new(Permission::ALL, AuthId::new("digest", &me))];
        if let Some(admin) = &auth.admin {
            node.push(Acl::new(Permission::ALL, AuthId::new("digest", admin)));
        }
        let mut root = node.clone();
        node.push(Acl::new(Permission::READ, AuthId::anyone()));
        root.push(Acl::new(
            Permission::READ | Permission::CREATE,
            AuthId::anyone(),
        ));
        NodeAcls {
            me: Some((auth.user.clone(), me)),
            admin: auth.admin.clone(),
            node,
            root,
        }
    }

    /// True when credentials are configured (nodes are not open to everyone).
    pub fn secured(&self) -> bool {
        self.me.is_some()
    }

    /// The ACL list for `kind`, as given to `create`.
    pub fn acls(&self, kind: NodeKind) -> Acls<'_> {
        match kind {
            NodeKind::Root => Acls::new(&self.root),
            NodeKind::Node => Acls::new(&self.node),
        }
    }

    /// The ACL of records and role directories.
    pub fn node(&self) -> Acls<'_> {
        self.acls(NodeKind::Node)
    }

    /// What `world:anyone` may do on a node of `kind` beyond what this program grants, when
    /// credentials are configured (`None`: nothing more, or no credentials).
    pub fn too_open(&self, found: &[Acl], kind: NodeKind) -> Option<Permission> {
        if !self.secured() {
            return None;
        }
        let allowed = match kind {
            NodeKind::Root => Permission::READ | Permission::CREATE,
            NodeKind::Node => Permission::READ,
        };
        let world = found
            .iter()
            .filter(|a| a.auth_id() == &AuthId::anyone())
            .fold(Permission::NONE, |p, a| p | a.permission());
        let extra = [
            Permission::READ,
            Permission::WRITE,
            Permission::CREATE,
            Permission::DELETE,
            Permission::ADMIN,
        ]
        .into_iter()
        .filter(|p| world.has(*p) && !allowed.has(*p))
        .fold(Permission::NONE, |acc, p| acc | p);
        (extra != Permission::NONE).then_some(extra)
    }

    /// The `zkCli.sh` command that gives `path` the ACL this program would have created it with:
    /// for a directory recursively (`-R`), so that the records in it get it too; the root alone.
    pub fn set_acl_command(&self, path: &str, kind: NodeKind) -> String {
        let mut entries = Vec::new();
        if let Some((_, me)) = &self.me {
            entries.push(format!("digest:{me}:cdrwa"));
        }
        if let Some(admin) = &self.admin {
            entries.push(format!("digest:{admin}:cdrwa"));
        }
        entries.push(match (self.secured(), kind) {
            (false, _) => "world:anyone:cdrwa".to_string(),
            (true, NodeKind::Root) => "world:anyone:rc".to_string(),
            (true, NodeKind::Node) => "world:anyone:r".to_string(),
        });
        let recursive = match kind {
            NodeKind::Root => "",
            NodeKind::Node => "-R ",
        };
        format!("setAcl {recursive}{path} {}", entries.join(","))
    }

    /// A one-line explanation when `error` is ZooKeeper refusing this program's credentials on
    /// `path`; `None` for every other error.
    pub fn denied(&self, path: &str, error: &ZkError) -> Option<String> {
        let parent = parent(path);
        let who = match &self.me {
            Some((user, id)) => format!(
                "this session is authenticated as digest:{id} (zk-auth.user {user:?} and its password)"
            ),
            None => "this session has no credentials ([zk-auth] is not configured)".to_string(),
        };
        match error {
            ZkError::NoAuth => {
                let hint = if self.secured() {
                    "check zk-auth's user and password (every instance of this program must share \
                     one identity)"
                } else {
                    "configure [zk-auth] with the identity that created it"
                };
                Some(format!(
                    "zookeeper refused access to {path} (NoAuth): {who}, but {path} or its parent \
                     {parent} belongs to another identity; compare with `getAcl {parent}` and \
                     `getAcl {path}` in zkCli.sh, and {hint}"
                ))
            }
            ZkError::InvalidAcl => Some(format!(
                "zookeeper rejected the ACL for {path} (InvalidAcl): {who}, but the server holds \
                 no digest credentials for it; check [zk-auth]"
            )),
            ZkError::AuthFailed => Some(format!(
                "zookeeper rejected the credentials while working on {path} (AuthFailed): {who}; \
                 check [zk-auth] and the server's authentication providers"
            )),
            _ => None,
        }
    }
}

/// Rate limit for logging refusals: a program that keeps retrying against an ACL it may not pass
/// says so loudly when it first happens and then at most once per interval.
#[derive(Debug, Clone)]
pub struct DeniedLog {
    every: Duration,
    last: Option<Instant>,
}

impl DeniedLog {
    /// Logs at most once per `every`.
    pub fn new(every: Duration) -> Self {
        DeniedLog { every, last: None }
    }

    /// True when a refusal seen at `now` should be logged at error level (else at debug).
    pub fn loud(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|at| now.saturating_duration_since(at) < self.every)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// ZooKeeper's digest identity for `user` and `password`: `user:BASE64(SHA1("user:password"))`.
pub fn digest_id(user: &str, password: &str) -> String {
    let hash = Sha1::digest(format!("{user}:{password}").as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// The parent of an absolute znode path (`/` for top-level nodes).
fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Secret;

    /// `printf %s admin:secret | openssl dgst -binary -sha1 | base64`
    const ADMIN: &str = "admin:fvr2cB/fjGeAiX8g1aGhUm3ZICk=";

    fn auth(admin: Option<&str>) -> ZkAuth {
        ZkAuth {
            user: "watchdog".into(),
            password: Secret("secret".into()),
            admin: admin.map(str::to_string),
        }
    }

    fn acl(perm: Permission, scheme: &str, id: &str) -> Acl {
        Acl::new(perm, AuthId::new(scheme, id))
    }

    #[test]
    fn digest_matches_openssl() {
        // printf %s watchdog:secret | openssl dgst -binary -sha1 | base64
        assert_eq!(
            digest_id("watchdog", "secret"),
            "watchdog:ExEP5EKufDH/vYJUBo4oOlbPG5o="
        );
        assert_eq!(digest_id("admin", "secret"), ADMIN);
    }

    /// `digest_id("watchdog", "secret")`, the identity of [`auth`]'s credentials.
    const ME: &str = "watchdog:ExEP5EKufDH/vYJUBo4oOlbPG5o=";

    #[test]
    fn without_credentials_everything_is_open() {
        let acls = NodeAcls::new(&ZkAccess::default());
        assert!(!acls.secured());
        for kind in [NodeKind::Root, NodeKind::Node] {
            assert_eq!(&*acls.acls(kind), [acl(Permission::ALL, "world", "anyone")]);
            assert_eq!(acls.too_open(&acls.acls(kind), kind), None);
        }
    }

    #[test]
    fn nodes_are_creator_and_admin_all_world_read() {
        let acls = NodeAcls::for_auth(Some(&auth(Some(ADMIN))));
        assert_eq!(
            &*acls.node(),
            [
                acl(Permission::ALL, "digest", ME),
                acl(Permission::ALL, "digest", ADMIN),
                acl(Permission::READ, "world", "anyone"),
            ]
        );
        assert_eq!(
            &*acls.acls(NodeKind::Root),
            [
                acl(Permission::ALL, "digest", ME),
                acl(Permission::ALL, "digest", ADMIN),
                acl(Permission::READ | Permission::CREATE, "world", "anyone"),
            ]
        );
    }

    #[test]
    fn without_admin_only_the_creator_has_rights() {
        let acls = NodeAcls::for_auth(Some(&auth(None)));
        assert_eq!(
            &*acls.node(),
            [
                acl(Permission::ALL, "digest", ME),
                acl(Permission::READ, "world", "anyone"),
            ]
        );
        assert_eq!(
            acls.set_acl_command("/zkwatchdog/agents", NodeKind::Node),
            "setAcl -R /zkwatchdog/agents digest:watchdog:ExEP5EKufDH/vYJUBo4oOlbPG5o=:cdrwa,world:anyone:r"
        );
    }

    #[test]
    fn world_writable_directories_are_found() {
        let acls = NodeAcls::for_auth(Some(&auth(Some(ADMIN))));
        let open = [acl(Permission::ALL, "world", "anyone")];
        assert_eq!(
            acls.too_open(&open, NodeKind::Node),
            Some(Permission::WRITE | Permission::CREATE | Permission::DELETE | Permission::ADMIN)
        );
        assert_eq!(
            acls.too_open(&open, NodeKind::Root),
            Some(Permission::WRITE | Permission::DELETE | Permission::ADMIN)
        );
        // What another program with other credentials created is fine.
        let theirs = [
            acl(
                Permission::ALL,
                "digest",
                "watcher:x1nq8J5GOJVPY6zgBh+o9nGwGqU=",
            ),
            acl(Permission::READ | Permission::CREATE, "world", "anyone"),
        ];
        assert_eq!(acls.too_open(&theirs, NodeKind::Root), None);
        assert_eq!(
            acls.too_open(&theirs, NodeKind::Node),
            Some(Permission::CREATE)
        );
        let root = acls.set_acl_command("/zkwatchdog", NodeKind::Root);
        assert!(
            root.starts_with("setAcl /zkwatchdog digest:watchdog:"),
            "{root}"
        );
        assert!(root.ends_with(&format!(":cdrwa,digest:{ADMIN}:cdrwa,world:anyone:rc")));
    }

    #[test]
    fn refusals_are_logged_loudly_once_per_interval() {
        let mut log = DeniedLog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(log.loud(t0));
        assert!(!log.loud(t0 + Duration::from_secs(59)));
        assert!(log.loud(t0 + Duration::from_secs(60)));
        assert!(!log.loud(t0 + Duration::from_secs(61)));
    }

    #[test]
    fn refusals_name_the_znode_and_the_identity() {
        let acls = NodeAcls::for_auth(Some(&auth(None)));
        let msg = acls
            .denied("/zkwatchdog/agents/a@h", &ZkError::NoAuth)
            .expect("explained");
        assert!(msg.contains("/zkwatchdog/agents/a@h"), "{msg}");
        assert!(msg.contains("getAcl /zkwatchdog/agents"), "{msg}");
        assert!(
            msg.contains("digest:watchdog:ExEP5EKufDH/vYJUBo4oOlbPG5o="),
            "{msg}"
        );
        let open = NodeAcls::open()
            .denied("/x", &ZkError::NoAuth)
            .expect("explained");
        assert!(open.contains("[zk-auth] is not configured"), "{open}");
        assert!(open.contains("configure [zk-auth]"), "{open}");
        assert!(acls.denied("/x", &ZkError::NoNode).is_none());
        assert_eq!(parent("/x"), "/");
    }
}
