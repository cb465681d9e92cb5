//! Network namespaces, veths, the bridge and blackhole routes of one cluster: creating and
//! removing them (stale ones of dead test processes too), and the faults a test injects
//! ([`Cluster::cut_off`], [`Cluster::isolate_from_peers`] and their undoing).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail, ensure};

use super::Cluster;

/// Kafka listener port of every node in a namespace (each node has its own address).
pub(super) const NETNS_KAFKA_PORT: u16 = 9092;
/// Raft listener port of every node in a namespace.
pub(super) const NETNS_RAFT_PORT: u16 = 9093;

/// Network namespaces, veths and the bridge of one cluster. Dropped after the nodes.
#[derive(Debug)]
pub(super) struct Net {
    tag: String,
    bridge: String,
    subnet: (u8, u8),
    namespaces: Vec<String>,
}

impl Cluster {
    /// Takes node `i` off the network: its root-side veth goes down.
    pub fn cut_off(&mut self, i: usize) -> Result<()> {
        let veth = self.veth(i)?;
        ip(&["link", "set", &veth, "down"])?;
        self.nodes[i].cut = true;
        Ok(())
    }

    /// Undoes [`Cluster::cut_off`].
    pub fn reconnect(&mut self, i: usize) -> Result<()> {
        let veth = self.veth(i)?;
        ip(&["link", "set", &veth, "up"])?;
        self.nodes[i].cut = false;
        Ok(())
    }

    /// Blackhole routes between node `i` and every other node (both directions); clients in
    /// the root namespace still reach it.
    pub fn isolate_from_peers(&mut self, i: usize) -> Result<()> {
        self.peer_routes(i, "add")?;
        self.nodes[i].isolated = true;
        Ok(())
    }

    /// Undoes [`Cluster::isolate_from_peers`].
    pub fn heal(&mut self, i: usize) -> Result<()> {
        self.peer_routes(i, "del")?;
        self.nodes[i].isolated = false;
        Ok(())
    }

    fn peer_routes(&self, i: usize, op: &str) -> Result<()> {
        self.veth(i)?;
        let me = &self.nodes[i];
        let (my_ns, _) = me.ns.as_ref().context("not namespaced")?;
        for other in self.nodes.iter().filter(|n| n.id != me.id) {
            let (other_ns, _) = other.ns.as_ref().context("not namespaced")?;
            let other_ip = format!("{}/32", other.kafka.ip());
            let my_ip = format!("{}/32", me.kafka.ip());
            ip(&["-n", my_ns, "route", op, "blackhole", &other_ip])?;
            ip(&["-n", other_ns, "route", op, "blackhole", &my_ip])?;
        }
        Ok(())
    }

    fn veth(&self, i: usize) -> Result<String> {
        if let Some(reason) = &self.netns_unavailable {
            bail!("nodes are not in network namespaces: {reason}");
        }
        let node = self.nodes.get(i).with_context(|| format!("no node {i}"))?;
        Ok(node
            .ns
            .as_ref()
            .context("node without namespace")?
            .1
            .clone())
    }
}

impl Net {
    /// A bridge with `10.x.y.254/24` for this cluster; namespaces come with [`Net::add_node`].
    pub(super) fn create(counter: u32) -> Result<Net> {
        if std::env::var("RUNNEL_CLUSTER_NETNS").is_ok_and(|v| v == "0") {
            bail!("RUNNEL_CLUSTER_NETNS=0");
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        ensure!(euid == 0, "not root (euid {euid})");
        remove_stale();
        let pid = std::process::id();
        let tag = format!("{pid:x}x{counter:x}");
        let bridge = format!("rb{tag}");
        ensure!(bridge.len() <= 11, "tag {tag} too long");
        let subnet = pick_subnet(pid, counter)?;
        // Probe: can this process create namespaces at all?
        let mut net = Net {
            tag,
            bridge,
            subnet,
            namespaces: Vec::new(),
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        let address = format!("10.{}.{}.254/24", subnet.0, subnet.1);
        ip(&["addr", "add", &address, "dev", &net.bridge])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        // A namespace now, so a failure shows before any node is planned.
        let probe = format!("runnel-{}-probe", net.tag);
        ip(&["netns", "add", &probe])?;
        net.namespaces.push(probe);
        Ok(net)
    }

    /// Namespace, root-side veth and address of node `index`.
    pub(super) fn add_node(&self, index: usize) -> Result<(String, String, Ipv4Addr)> {
        ensure!(index < 200, "too many nodes");
        let ns = format!("runnel-{}-n{index}", self.tag);
        let veth = format!("rv{}n{index}", self.tag);
        ensure!(veth.len() <= 15, "interface name {veth} too long");
        let ip_addr = Ipv4Addr::new(10, self.subnet.0, self.subnet.1, u8::try_from(index + 1)?);
        ip(&["netns", "add", &ns])?;
        // Record it at once so Drop removes it even if the rest fails.
        NET_NAMESPACES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ns.clone());
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["link", "set", &veth, "master", &self.bridge])?;
        ip(&["link", "set", &veth, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip_addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        Ok((ns, veth, ip_addr))
    }
}

/// Namespaces created by [`Net::add_node`] (the `Net` itself is shared immutably while nodes
/// start in parallel); `Net::drop` removes those with its tag.
static NET_NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl Drop for Net {
    fn drop(&mut self) {
        let prefix = format!("runnel-{}-", self.tag);
        let mut ours: Vec<String> = std::mem::take(&mut self.namespaces);
        {
            let mut all = NET_NAMESPACES.lock().unwrap_or_else(|p| p.into_inner());
            ours.extend(all.iter().filter(|n| n.starts_with(&prefix)).cloned());
            all.retain(|n| !n.starts_with(&prefix));
        }
        for ns in ours {
            remove_namespace(&ns);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Kills whatever still runs in `ns` and deletes it (with the veth end inside, which takes
/// its peer along).
fn remove_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<libc::pid_t>() {
                // SAFETY: kill(2) with integer arguments; the pid runs in our own namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = ip(&["netns", "del", ns]);
}

/// Removes namespaces and bridges of test processes that no longer exist.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    let mut dead_tags = BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("runnel-") else {
            continue;
        };
        let Some((tag, _)) = rest.split_once('-') else {
            continue;
        };
        let Some((pid_hex, _)) = tag.split_once('x') else {
            continue;
        };
        let Ok(pid) = u32::from_str_radix(pid_hex, 16) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            remove_namespace(&name);
            dead_tags.insert(tag.to_owned());
        }
    }
    for tag in dead_tags {
        let _ = ip(&["link", "del", &format!("rb{tag}")]);
    }
}

/// A `10.x.y.0/24` no interface of the root namespace uses yet, derived from pid and counter.
fn pick_subnet(pid: u32, counter: u32) -> Result<(u8, u8)> {
    let used = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .context("running ip addr show")?;
    let used = String::from_utf8_lossy(&used.stdout).into_owned();
    let mut h = u64::from(pid)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(counter).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    for _ in 0..64 {
        h ^= h >> 29;
        h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
        let x = 64 + u8::try_from((h >> 8) % 180)?;
        let y = u8::try_from((h >> 24) % 256)?;
        if !used.contains(&format!("inet 10.{x}.{y}.")) {
            return Ok((x, y));
        }
    }
    bail!("no free 10.x.y.0/24 found")
}

/// Runs `ip ARGS…`, failing with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
