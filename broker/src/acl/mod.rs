//! Kafka-style authorization: ACL bindings decide which principal may do what to which topic,
//! group or the cluster, the way Kafka's `StandardAuthorizer` does.
//!
//! Rules (each has a unit test in `tests.rs`):
//! - a binding applies to a request when its principal is the requester's or `User:*`, its
//!   host is the client's IP address or `*`, and its resource pattern matches: LITERAL by exact
//!   name or the name `*`, PREFIXED by any name that starts with it — of the same resource type;
//! - a DENY binding for the operation (or ALL) wins over every ALLOW;
//! - an ALLOW binding for the operation (or ALL) grants it; ALLOW of READ, WRITE, DELETE or
//!   ALTER also grants DESCRIBE, ALLOW of ALTER_CONFIGS also grants DESCRIBE_CONFIGS;
//! - when no binding at all matches the resource (whoever it names), the request is allowed
//!   only if `allow.everyone.if.no.acl.found` is in effect;
//! - `super.users` bypass all of it.
//!
//! Invariants: the in-memory bindings are exactly the durable ones — a change is applied here
//! only after the store made it durable, and changes are serialised, so readers never see a
//! binding that a crash could lose. While `allow.everyone.if.no.acl.found` holds and no binding
//! exists, every check is one atomic load (the zero-config broker pays nothing on the
//! produce/fetch paths).
//!
//! Trusted components inside the broker — the embedded MQTT bridges ([`crate::bridge`]) and the
//! uplinks ([`crate::uplink`]) — write and read the log through internal paths, not through the
//! request handlers, and are not subject to ACLs: they are configured by whoever owns the
//! broker's config file.

pub mod binding;
pub mod codes;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

pub use binding::{AclFilter, CLUSTER_NAME, WILDCARD, WILDCARD_PRINCIPAL};
pub use codes::{Operation, PatternType, Permission, ResourceType};

use crate::handlers::Session;
use crate::log::{AclBinding, SecurityStore, StoreError, wait};

/// The settings of `[authorization]`, resolved.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Principals that bypass ACLs (`super.users`).
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found`.
    pub allow_everyone_if_no_acl_found: bool,
}

/// Who is asking: a principal and, for clients, their IP address.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a str,
    /// `None` for requests made inside the broker: only bindings for host `*` apply.
    pub host: Option<IpAddr>,
}

impl<'a> From<&'a Session> for Requester<'a> {
    fn from(s: &'a Session) -> Self {
        Requester {
            principal: &s.principal,
            host: s.peer.map(|p| p.ip().to_canonical()),
        }
    }
}

/// Decides requests against the ACL bindings; owns their in-memory copy. See the module docs.
pub struct Authorizer {
    store: Arc<dyn SecurityStore>,
    super_users: HashSet<String>,
    allow_if_no_acl: bool,
    /// `allow_if_no_acl` and no binding: every check passes.
    open: AtomicBool,
    current: RwLock<Index>,
    /// Serialises changes so the in-memory copy follows the store's order.
    writes: tokio::sync::Mutex<()>,
}

impl Authorizer {
    /// Loads the stored bindings. Blocking (one LMDB read).
    pub fn load(store: Arc<dyn SecurityStore>, settings: Settings) -> Result<Self, StoreError> {
        let bindings: BTreeSet<AclBinding> = store.acls()?.into_iter().collect();
        tracing::info!(
            acl_bindings = bindings.len(),
            super_users = settings.super_users.len(),
            allow_everyone_if_no_acl_found = settings.allow_everyone_if_no_acl_found,
            "authorization loaded"
        );
        let authorizer = Authorizer {
            store,
            super_users: settings.super_users.into_iter().collect(),
            allow_if_no_acl: settings.allow_everyone_if_no_acl_found,
            open: AtomicBool::new(false),
            current: RwLock::new(Index::default()),
            writes: tokio::sync::Mutex::new(()),
        };
        authorizer.install(bindings);
        Ok(authorizer)
    }

    /// Whether every check passes right now (no binding, and allow-everyone in effect).
    #[inline]
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Whether `session` may perform `op` on the resource; denials are logged at debug.
    #[inline]
    pub fn allows(&self, session: &Session, op: Operation, rt: ResourceType, name: &str) -> bool {
        if self.is_open() {
            return true;
        }
        let who = Requester::from(session);
        let allowed = self.decide(who, op, rt, name);
        if !allowed {
            tracing::debug!(
                principal = who.principal,
                host = ?who.host,
                operation = ?op,
                resource_type = ?rt,
                resource_name = name,
                "denied by ACLs"
            );
        }
        allowed
    }

    /// [`Self::allows`] without logging a denial: for filtering lists (every topic in
    /// Metadata, every group in ListGroups), where being left out is not an error.
    #[inline]
    pub fn allows_quiet(
        &self,
        session: &Session,
        op: Operation,
        rt: ResourceType,
        name: &str,
    ) -> bool {
        self.is_open() || self.decide(Requester::from(session), op, rt, name)
    }

    /// [`Self::allows`] on the CLUSTER resource.
    #[inline]
    pub fn allows_cluster(&self, session: &Session, op: Operation) -> bool {
        self.allows(session, op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Whether `session` may perform `op` on at least one resource of type `rt` (Kafka's
    /// `authorizeByResourceType`, KIP-679), e.g. WRITE on some topic for InitProducerId.
    pub fn allows_some(&self, session: &Session, op: Operation, rt: ResourceType) -> bool {
        if self.is_open() {
            return true;
        }
        let who = Requester::from(session);
        // A name that no real resource has: only the `*` wildcard or allow-everyone apply.
        if self.decide(who, op, rt, "") {
            return true;
        }
        let index = self.read();
        index
            .by_type
            .get(&rt.code())
            .is_some_and(|t| t.allows_some(who, op))
    }

    /// Kafka's `authorized_operations` bit set (bit n set: operation code n allowed) of the
    /// operations that apply to `rt`.
    pub fn authorized_operations(&self, session: &Session, rt: ResourceType, name: &str) -> i32 {
        let who = Requester::from(session);
        rt.operations()
            .iter()
            .filter(|op| self.is_open() || self.decide(who, **op, rt, name))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }

    /// The decision, without the fast path or logging.
    pub fn decide(&self, who: Requester<'_>, op: Operation, rt: ResourceType, name: &str) -> bool {
        if self.super_users.contains(who.principal) {
            return true;
        }
        let index = self.read();
        match index.by_type.get(&rt.code()) {
            None => self.allow_if_no_acl,
            Some(t) => t.decide(who, op, name).unwrap_or(self.allow_if_no_acl),
        }
    }

    /// The stored bindings `filter` matches, in a stable order.
    pub fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        let index = self.read();
        index
            .bindings
            .iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect()
    }

    /// Stores `bindings` (already validated; existing ones are kept as they are). Resolves once
    /// durable and in effect.
    pub async fn create(&self, bindings: Vec<AclBinding>) -> Result<(), StoreError> {
        let _serial = self.writes.lock().await;
        let mut all = self.read().bindings.clone();
        let new: Vec<AclBinding> = bindings
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|b| !all.contains(b))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        wait(self.store.alter_acls(new.clone(), Vec::new())).await??;
        tracing::info!(count = new.len(), "ACL bindings created");
        all.extend(new);
        self.install(all);
        Ok(())
    }

    /// Removes every binding a filter matches; answers the matches of each filter (a binding
    /// matched by two filters shows under both). Resolves once durable and in effect.
    pub async fn delete(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, StoreError> {
        let _serial = self.writes.lock().await;
        let mut all = self.read().bindings.clone();
        let matched: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|f| all.iter().filter(|b| f.matches(b)).cloned().collect())
            .collect();
        let doomed: BTreeSet<AclBinding> = matched.iter().flatten().cloned().collect();
        if doomed.is_empty() {
            return Ok(matched);
        }
        let delete: Vec<AclBinding> = doomed.iter().cloned().collect();
        wait(self.store.alter_acls(Vec::new(), delete)).await??;
        tracing::info!(count = doomed.len(), "ACL bindings deleted");
        all.retain(|b| !doomed.contains(b));
        self.install(all);
        Ok(matched)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn install(&self, bindings: BTreeSet<AclBinding>) {
        let open = self.allow_if_no_acl && bindings.is_empty();
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        *current = Index::build(bindings);
        self.open.store(open, Ordering::Release);
    }
}

/// The bindings, and the same indexed for decisions.
#[derive(Default)]
struct Index {
    bindings: BTreeSet<AclBinding>,
    by_type: HashMap<i8, TypeIndex>,
}

impl Index {
    fn build(bindings: BTreeSet<AclBinding>) -> Index {
        let mut by_type: HashMap<i8, TypeIndex> = HashMap::new();
        for b in &bindings {
            let (Some(pattern), Some(entry)) =
                (PatternType::from_code(b.pattern_type), Entry::of(b))
            else {
                // Not creatable through CreateAcls; never matches.
                continue;
            };
            let t = by_type.entry(b.resource_type).or_default();
            match pattern {
                PatternType::Literal => t
                    .literal
                    .entry(b.resource_name.clone())
                    .or_default()
                    .push(entry),
                PatternType::Prefixed => {
                    let len = b.resource_name.len();
                    if let Err(at) = t.prefix_lens.binary_search(&len) {
                        t.prefix_lens.insert(at, len);
                    }
                    t.prefixed
                        .entry(b.resource_name.clone())
                        .or_default()
                        .push(entry)
                }
            }
        }
        Index { bindings, by_type }
    }
}

/// The bindings of one resource type, by pattern.
#[derive(Default)]
struct TypeIndex {
    /// Name (or `*`) → entries.
    literal: HashMap<String, Vec<Entry>>,
    /// Prefix → entries.
    prefixed: HashMap<String, Vec<Entry>>,
    /// The distinct lengths of the prefixes, ascending: a name's matching prefixes are found
    /// with one lookup per length instead of a scan of every prefix.
    prefix_lens: Vec<usize>,
}

impl TypeIndex {
    /// `None` when no binding matches the resource at all (whoever it names).
    fn decide(&self, who: Requester<'_>, op: Operation, name: &str) -> Option<bool> {
        let literal = self.literal.get(name).into_iter();
        let wildcard = (name != WILDCARD)
            .then(|| self.literal.get(WILDCARD))
            .flatten()
            .into_iter();
        let prefixed = self
            .prefix_lens
            .iter()
            .take_while(|&&len| len <= name.len())
            .filter_map(|&len| self.prefixed.get(name.get(..len)?));
        let mut matched = false;
        let mut allowed = false;
        for e in literal.chain(wildcard).chain(prefixed).flatten() {
            matched = true;
            if !e.applies_to(who) {
                continue;
            }
            match e.permission {
                Permission::Deny if e.operation == op || e.operation == Operation::All => {
                    return Some(false);
                }
                Permission::Allow
                    if e.operation == Operation::All || op.granted_by().contains(&e.operation) =>
                {
                    allowed = true;
                }
                _ => {}
            }
        }
        matched.then_some(allowed)
    }

    /// Kafka's `authorizeByResourceType` analysis: some ALLOW for `op` that no DENY dominates
    /// (the same literal name, or a prefix of the allowed name or prefix).
    fn allows_some(&self, who: Requester<'_>, op: Operation) -> bool {
        let applies =
            |e: &&Entry| e.applies_to(who) && (e.operation == op || e.operation == Operation::All);
        let has = |entries: &Vec<Entry>, p: Permission| {
            entries.iter().filter(applies).any(|e| e.permission == p)
        };
        if self
            .literal
            .get(WILDCARD)
            .is_some_and(|w| has(w, Permission::Deny))
        {
            return false;
        }
        let denied_prefixes: Vec<&str> = self
            .prefixed
            .iter()
            .filter(|(_, es)| has(es, Permission::Deny))
            .map(|(p, _)| p.as_str())
            .collect();
        let dominated = |name: &str| denied_prefixes.iter().any(|p| name.starts_with(p));
        let literal_ok = self.literal.iter().any(|(name, es)| {
            has(es, Permission::Allow)
                && (name == WILDCARD || (!has(es, Permission::Deny) && !dominated(name)))
        });
        literal_ok
            || self
                .prefixed
                .iter()
                .any(|(prefix, es)| has(es, Permission::Allow) && !dominated(prefix))
    }
}

/// One binding's "who, from where, what, allow or deny".
struct Entry {
    principal: String,
    host: Host,
    operation: Operation,
    permission: Permission,
}

impl Entry {
    fn of(b: &AclBinding) -> Option<Entry> {
        Some(Entry {
            principal: b.principal.clone(),
            host: Host::of(&b.host),
            operation: Operation::from_code(b.operation)?,
            permission: Permission::from_code(b.permission_type)?,
        })
    }

    fn applies_to(&self, who: Requester<'_>) -> bool {
        (self.principal == who.principal || self.principal == WILDCARD_PRINCIPAL)
            && self.host.matches(who.host)
    }
}

/// A binding's host: `*`, an IP address (compared as an address, so `::1` and
/// `0:0:0:0:0:0:0:1` are the same), or anything else (which no client has).
enum Host {
    Any,
    Ip(IpAddr),
    Never,
}

impl Host {
    fn of(host: &str) -> Host {
        if host == WILDCARD {
            return Host::Any;
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip.to_canonical()),
            Err(_) => Host::Never,
        }
    }

    fn matches(&self, client: Option<IpAddr>) -> bool {
        match self {
            Host::Any => true,
            Host::Ip(ip) => client == Some(*ip),
            Host::Never => false,
        }
    }
}
