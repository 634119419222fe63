//! Building, entering and removing a testbed.

use std::ffi::{CString, OsStr};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::guard::Guard;
use super::{support, Mode, NetnsError};

/// Every namespace a testbed makes starts with this, then `<creator pid>-<8 hex digits>-`.
pub const PREFIX: &str = "mpc-";

/// `.` for open(2).
const DOT: &std::ffi::CStr = c".";

/// The interface of every host, inside its own namespace.
const HOST_IFACE: &str = "eth0";

/// N hosts (network namespaces) on one bridge. Removed by [`Testbed::teardown`] or `Drop`; if
/// the creating process dies, its guard process removes it (see the module doc).
pub struct Testbed {
    prefix: String,
    mode: Mode,
    hosts: usize,
    /// `10.net[0].net[1].0/24`, random per run.
    net: [u8; 2],
    ip: PathBuf,
    guard: Option<Guard>,
}

impl std::fmt::Debug for Testbed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Testbed")
            .field("prefix", &self.prefix)
            .field("mode", &self.mode)
            .field("hosts", &self.hosts)
            .field(
                "net",
                &format_args!("10.{}.{}.0/24", self.net[0], self.net[1]),
            )
            .finish()
    }
}

impl Testbed {
    /// A testbed of `hosts` hosts in the mode [`support`] picks.
    pub fn create(hosts: usize) -> Result<Testbed, NetnsError> {
        let mode = support().map_err(NetnsError::Unsupported)?;
        Testbed::create_with(hosts, mode)
    }

    /// A testbed in a given mode (tests run both where both work).
    pub fn create_with(hosts: usize, mode: Mode) -> Result<Testbed, NetnsError> {
        if !(1..=250).contains(&hosts) {
            return Err(NetnsError::Hosts(hosts));
        }
        let ip = super::find_tool("ip")
            .ok_or_else(|| NetnsError::Unsupported("`ip` not found: install iproute2".into()))?;
        if mode == Mode::Root {
            if let Err(e) = cleanup_stale() {
                say!("mpcomm netns: could not remove stale namespaces: {e}");
            }
        }
        let prefix = format!(
            "{PREFIX}{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        // The guard first, so a death at any later point is cleaned up.
        let guard = Guard::spawn(&prefix, &ip, mode)?;
        let net = [rand::random::<u8>() % 190 + 64, rand::random::<u8>()];
        let tb = Testbed {
            prefix,
            mode,
            hosts,
            net,
            ip,
            guard: Some(guard),
        };
        tb.build()?; // on error, Drop removes what was made
        Ok(tb)
    }

    fn build(&self) -> Result<(), NetnsError> {
        let sw = self.switch_ns();
        let mut adds = format!("netns add {sw}\n");
        for i in 0..self.hosts {
            adds += &format!("netns add {}\n", self.ns_name(i));
        }
        self.ip_batch(None, &adds)?;

        // The bridge floods multicast (snooping off): every host hears every group it joined,
        // with no querier and no race between an IGMP report and the first datagram.
        // br0's one address is for sockets of the caller (see service.rs); no route beyond /24.
        // Every neighbour (ARP) entry is static, see `static_neighbours`.
        let service = self.service_addr();
        let mut switch = format!(
            "link add br0 address {} type bridge mcast_snooping 0 stp_state 0\n\
             addr add {service}/24 dev br0\nlink set br0 up\n",
            mac_of(service)
        );
        for i in 0..self.hosts {
            switch += &format!(
                "link add h{i} type veth peer name {HOST_IFACE} netns {}\n\
                 link set h{i} master br0\nlink set h{i} up\n",
                self.ns_name(i)
            );
        }
        switch += &self.static_neighbours("br0", (0..self.hosts).map(|j| self.host_addr(j)));
        self.ip_batch(Some(&sw), &switch)?;

        for i in 0..self.hosts {
            let addr = self.host_addr(i);
            // No IPv6 address (no link-local, DAD, router solicitation or MLD report): the
            // testbed is IPv4 only, and IPv6 neighbour entries share a global table too.
            let mut host = format!(
                "link set lo up\nlink set {HOST_IFACE} address {} addrgenmode none\n\
                 addr add {addr}/24 dev {HOST_IFACE}\nlink set {HOST_IFACE} up\n\
                 route add 224.0.0.0/4 dev {HOST_IFACE}\n",
                mac_of(addr)
            );
            let others = (0..self.hosts)
                .filter(|&j| j != i)
                .map(|j| self.host_addr(j))
                .chain([service, IGMPV3_REPORTS]);
            host += &self.static_neighbours(HOST_IFACE, others);
            self.ip_batch(Some(&self.ns_name(i)), &host)?;
        }
        Ok(())
    }

    /// `ip` lines making a permanent neighbour entry on `dev` for each address: a host's MAC
    /// is derived from its address ([`mac_of`]), a multicast group's from the group.
    ///
    /// Why static: the kernel's ARP table is one table for all network namespaces of the
    /// machine, and `net.ipv4.neigh.default.gc_thresh3` (1024 by default, settable only for the
    /// whole machine) bounds its dynamic entries. Fan-out among N hosts needs N·(N−1) of them
    /// (N = 32: 992, plus the bridge's and the rest of the machine's): past the bound the
    /// kernel logs "neighbour: arp_cache: neighbor table overflow!" and drops datagrams to
    /// destinations without an entry, multicast ones included (a group's entry counts too).
    /// Permanent entries are exempt from that bound (and from garbage collection), so the
    /// testbed needs no ARP at all and does not depend on what else the machine is doing.
    fn static_neighbours(&self, dev: &str, addrs: impl Iterator<Item = Ipv4Addr>) -> String {
        addrs
            .map(|a| {
                format!(
                    "neigh replace {a} lladdr {} dev {dev} nud permanent\n",
                    mac_of(a)
                )
            })
            .collect()
    }

    /// Give every host IPv6 (off by default, see `build`): host i gets [`Self::host_addr_v6`]
    /// on its interface (no duplicate-address detection: usable at once, and no link-local
    /// address or router solicitation either), and — as for IPv4, see
    /// [`Self::static_neighbours`], the IPv6 neighbour table being one for the whole machine
    /// too — permanent neighbour entries for every other host, for each of `groups` and for
    /// ff02::16, where MLDv2 reports go (group MACs 33:33 + the low 32 bits, RFC 2464). The
    /// bridge gets [`Self::service_addr_v6`], for [`Self::tcp_listener_v6`].
    pub fn enable_ipv6(&self, groups: &[Ipv6Addr]) -> Result<(), NetnsError> {
        if let Some(g) = groups.iter().find(|g| !g.is_multicast()) {
            return Err(NetnsError::Command {
                what: format!("enable_ipv6({g})"),
                detail: "not an IPv6 multicast address".into(),
            });
        }
        for i in 0..self.hosts {
            let mut host = format!(
                "addr add {}/64 dev {HOST_IFACE} nodad\n",
                self.host_addr_v6(i)
            );
            for j in (0..self.hosts).filter(|&j| j != i) {
                host += &format!(
                    "neigh replace {} lladdr {} dev {HOST_IFACE} nud permanent\n",
                    self.host_addr_v6(j),
                    mac_of(self.host_addr(j))
                );
            }
            for g in groups.iter().chain([&MLDV2_REPORTS]) {
                host += &format!(
                    "neigh replace {g} lladdr {} dev {HOST_IFACE} nud permanent\n",
                    mac_of_v6_group(*g)
                );
            }
            // The bridge's IPv6 address (the lab's comparator listens there), like its IPv4 one.
            host += &format!(
                "neigh replace {} lladdr {} dev {HOST_IFACE} nud permanent\n",
                self.service_addr_v6(),
                mac_of(self.service_addr())
            );
            self.ip_batch(Some(&self.ns_name(i)), &host)?;
        }
        let mut switch = format!("addr add {}/64 dev br0 nodad\n", self.service_addr_v6());
        for j in 0..self.hosts {
            switch += &format!(
                "neigh replace {} lladdr {} dev br0 nud permanent\n",
                self.host_addr_v6(j),
                mac_of(self.host_addr(j))
            );
        }
        self.ip_batch(Some(&self.switch_ns()), &switch)
    }

    /// Make host i's loopback carry IPv6 multicast: a local route for ff00::/8 on its lo, as
    /// `netns::enter_private_loopback` makes (see `private.rs` for why local, and why only in
    /// a namespace of our own), so processes of that host can multicast to each other on ::1.
    pub fn carry_ipv6_multicast_on_loopback(&self, i: usize) -> Result<(), NetnsError> {
        let ns = self.ns_name(i);
        let route = super::private::LOOPBACK_MULTICAST_ROUTE.join(" ");
        self.ip_batch(Some(&ns), &format!("{route}\n"))
    }

    /// `fd6d:7063:XXYY::(i+1)`, XXYY the IPv4 net's two random bytes: a unique-local address.
    pub fn host_addr_v6(&self, i: usize) -> Ipv6Addr {
        assert!(i < self.hosts, "host {i} of {}", self.hosts);
        let net = u16::from_be_bytes(self.net);
        Ipv6Addr::new(0xfd6d, 0x7063, net, 0, 0, 0, 0, i as u16 + 1)
    }

    /// Give every host a permanent neighbour entry for multicast `group` (see
    /// [`Self::static_neighbours`]), so its datagrams to the group never need a dynamic one.
    pub fn pin_multicast(&self, group: Ipv4Addr) -> Result<(), NetnsError> {
        if !group.is_multicast() {
            return Err(NetnsError::Command {
                what: format!("pin_multicast({group})"),
                detail: "not an IPv4 multicast address".into(),
            });
        }
        for i in 0..self.hosts {
            let line = self.static_neighbours(HOST_IFACE, [group].into_iter());
            self.ip_batch(Some(&self.ns_name(i)), &line)?;
        }
        Ok(())
    }

    pub(super) fn net(&self) -> [u8; 2] {
        self.net
    }

    /// Make `cmd` run in the switch namespace (where br0 and its address live).
    pub(super) fn enter_switch(&self, cmd: &mut Command) {
        self.enter(cmd, Some(&self.switch_ns()));
    }

    pub fn hosts(&self) -> usize {
        self.hosts
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `mpc-<pid>-<rand>`: every namespace of this testbed starts with it plus `-`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Name of host i's namespace (as root: `ip netns exec NAME …` works too).
    pub fn ns_name(&self, i: usize) -> String {
        assert!(i < self.hosts, "host {i} of {}", self.hosts);
        format!("{}-h{i}", self.prefix)
    }

    fn switch_ns(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    /// The pid of the guard process that removes the testbed (see the module doc); `None` after
    /// teardown. In user-namespace mode it is also the helper whose namespaces everything joins.
    pub fn guard_pid(&self) -> Option<u32> {
        self.guard.as_ref().map(|g| g.pid())
    }

    /// In user-namespace mode, the pid of the helper whose namespaces everything joins.
    fn helper_pid(&self) -> Option<u32> {
        match self.mode {
            Mode::Root => None,
            Mode::UserNamespace => self.guard.as_ref().map(|g| g.pid()),
        }
    }

    /// `10.X.Y.(i+1)`.
    pub fn host_addr(&self, i: usize) -> Ipv4Addr {
        assert!(i < self.hosts, "host {i} of {}", self.hosts);
        Ipv4Addr::new(10, self.net[0], self.net[1], i as u8 + 1)
    }

    /// The interface name inside host i's namespace.
    pub fn iface(&self, i: usize) -> String {
        assert!(i < self.hosts, "host {i} of {}", self.hosts);
        HOST_IFACE.to_string()
    }

    /// A command that runs `program` inside host i (its network namespace; in user-namespace
    /// mode also the helper's user and mount namespaces, where it is uid 0 mapped to the
    /// caller's uid and `/run` is a private tmpfs). The working directory and the rest of the
    /// file system are the caller's.
    pub fn command(&self, i: usize, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        self.enter(&mut cmd, Some(&self.ns_name(i)));
        cmd
    }

    /// `ip` with `-n NS` (or none), run inside our namespaces, fed `script` as a batch.
    fn ip_batch(&self, ns: Option<&str>, script: &str) -> Result<(), NetnsError> {
        let mut cmd = Command::new(&self.ip);
        if let Some(ns) = ns {
            cmd.args(["-n", ns]);
        }
        cmd.args(["-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.enter(&mut cmd, None);
        let what = format!(
            "ip {}-batch",
            ns.map(|n| format!("-n {n} ")).unwrap_or_default()
        );
        let mut child = cmd.spawn().map_err(|e| NetnsError::io(&what, e))?;
        let mut stdin = child.stdin.take().expect("piped");
        let written = stdin.write_all(script.as_bytes());
        drop(stdin);
        let out = child
            .wait_with_output()
            .map_err(|e| NetnsError::io(&what, e))?;
        if !out.status.success() || written.is_err() {
            return Err(NetnsError::Command {
                what,
                detail: format!(
                    "{}; {}; script:\n{script}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }

    /// Make `cmd` enter the helper's user + mount namespaces (user-namespace mode) and then the
    /// network namespace `netns`, if any, between fork and exec.
    fn enter(&self, cmd: &mut Command, netns: Option<&str>) {
        let cpath = |p: &str| CString::new(p).expect("no NUL in our paths");
        let helper = self.helper_pid();
        // The helper's own network namespace too: `ip netns add` returns to the namespace it
        // started in, which must be one the user namespace owns (not the caller's).
        let user_mnt = helper.map(|pid| {
            (
                cpath(&format!("/proc/{pid}/ns/user")),
                cpath(&format!("/proc/{pid}/ns/mnt")),
                cpath(&format!("/proc/{pid}/ns/net")),
            )
        });
        let net = netns.map(|n| cpath(&format!("/run/netns/{n}")));
        if user_mnt.is_none() && net.is_none() {
            return;
        }
        // SAFETY: the closure only calls async-signal-safe functions (open, setns, fchdir,
        // close) on data prepared before the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if let Some((user, mnt, helper_net)) = &user_mnt {
                    // setns(CLONE_NEWNS) moves us to the new root: keep the working directory.
                    let cwd = sys_open(DOT, libc::O_RDONLY | libc::O_DIRECTORY)?;
                    join(user, libc::CLONE_NEWUSER)?;
                    join(mnt, libc::CLONE_NEWNS)?;
                    join(helper_net, libc::CLONE_NEWNET)?;
                    let r = libc::fchdir(cwd);
                    libc::close(cwd);
                    if r != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(net) = &net {
                    join(net, libc::CLONE_NEWNET)?;
                }
                Ok(())
            });
        }
    }

    /// Remove every namespace (and with them every link and the bridge) and every process
    /// inside them; also done by `Drop`. Safe to call when the creator's guard is gone.
    pub fn teardown(mut self) -> Result<(), NetnsError> {
        self.teardown_inner()
    }

    fn teardown_inner(&mut self) -> Result<(), NetnsError> {
        let Some(mut guard) = self.guard.take() else {
            return Ok(());
        };
        let result = guard.finish();
        drop(guard);
        if self.mode == Mode::Root {
            let left = list_netns()
                .into_iter()
                .filter(|n| n.starts_with(&format!("{}-", self.prefix)))
                .collect::<Vec<_>>();
            if !left.is_empty() {
                return Err(NetnsError::Leftover(left));
            }
        }
        result
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if let Err(e) = self.teardown_inner() {
            say!("mpcomm netns: teardown of {}: {e}", self.prefix);
        }
    }
}

fn sys_open(path: &std::ffi::CStr, flags: i32) -> std::io::Result<i32> {
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

fn join(path: &std::ffi::CStr, nstype: i32) -> std::io::Result<()> {
    let fd = sys_open(path, libc::O_RDONLY)?;
    // SAFETY: fd was just opened and is closed below.
    let r = unsafe { libc::setns(fd, nstype) };
    let err = std::io::Error::last_os_error();
    unsafe { libc::close(fd) };
    if r != 0 {
        Err(err)
    } else {
        Ok(())
    }
}

/// Names in this mount namespace's `/run/netns`.
fn list_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// IGMPv3 membership reports go to this group; its neighbour entry is pinned like the rest.
const IGMPV3_REPORTS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 22);
/// MLDv2 reports go to this group (all MLDv2-capable routers).
const MLDV2_REPORTS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);

/// The Ethernet address of IPv6 multicast group `g`: 33:33 and its low 32 bits (RFC 2464).
fn mac_of_v6_group(g: Ipv6Addr) -> String {
    let o = g.octets();
    format!(
        "33:33:{:02x}:{:02x}:{:02x}:{:02x}",
        o[12], o[13], o[14], o[15]
    )
}

/// The MAC for an address of the testbed: a host (or the bridge) at `a.b.c.d` has the
/// locally administered unicast `02:00:a:b:c:d`; a multicast group its IEEE mapping
/// `01:00:5e` + the low 23 bits.
fn mac_of(addr: Ipv4Addr) -> String {
    let [a, b, c, d] = addr.octets();
    if addr.is_multicast() {
        format!("01:00:5e:{:02x}:{c:02x}:{d:02x}", b & 0x7f)
    } else {
        format!("02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
    }
}
mod stale;
#[cfg(test)]
mod tests;

pub use stale::cleanup_stale;
