//! The interface scanner: what links this host has, and when that changes.
//!
//! ```text
//!  NETLINK_ROUTE socket (RTMGRP_LINK | IPV4_IFADDR)  ─ any message ─┐
//!  timer (scan_interval_ms)                          ───────────────┼─> scan() ─ changed? ─> Vec<Interface>
//! ```
//!
//! A scan reads `/sys/class/net/*` (MAC, MTU, flags, carrier, kind) and the
//! addresses from `getifaddrs`. Netlink is used only as a doorbell: any
//! link or address message triggers an immediate rescan, so a veth that
//! appears is seen within milliseconds, and the periodic scan covers a
//! missed or overflowed notification. Parsing netlink messages ourselves
//! would give the same data with more code and more ways to be subtly wrong;
//! sysfs is the kernel's own rendering of it. Everything here reads the
//! network namespace the process runs in (the agent is started inside the
//! host's namespace).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

/// One interface as the scanner saw it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
    pub has_link: bool,
    /// `Physical`, `Virtual`, `Tunnel` (MidoNet's types).
    pub kind: String,
    /// Addresses with prefix length, e.g. `10.0.0.1/24`.
    pub addresses: Vec<String>,
}

impl Interface {
    pub fn to_pb(&self) -> midonet_proto::pb::Interface {
        midonet_proto::pb::Interface {
            name: self.name.clone(),
            mac: self.mac.clone(),
            mtu: self.mtu,
            up: self.up,
            has_link: self.has_link,
            addresses: self.addresses.clone(),
            r#type: self.kind.clone(),
            endpoint: String::new(),
        }
    }
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// Reads every interface of the current network namespace, sorted by name.
pub fn scan() -> Vec<Interface> {
    let mut by_name: BTreeMap<String, Interface> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else { return Vec::new() };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let base = format!("/sys/class/net/{name}");
        let flags = read_trim(&format!("{base}/flags"))
            .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        let kind = if std::path::Path::new(&format!("{base}/device")).exists() {
            "Physical"
        } else if name.starts_with("vxlan") || name.starts_with("gre") || name.starts_with("tun") {
            "Tunnel"
        } else {
            "Virtual"
        };
        by_name.insert(
            name.clone(),
            Interface {
                ifindex: read_trim(&format!("{base}/ifindex"))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                mac: read_trim(&format!("{base}/address")).unwrap_or_default(),
                mtu: read_trim(&format!("{base}/mtu")).and_then(|s| s.parse().ok()).unwrap_or(0),
                // IFF_UP
                up: flags & 0x1 != 0,
                has_link: read_trim(&format!("{base}/carrier")).as_deref() == Some("1"),
                kind: kind.into(),
                addresses: Vec::new(),
                name,
            },
        );
    }
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let (Some(addr), Some(mask)) = (a.address, a.netmask) else { continue };
            let (Some(sin), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) else {
                continue;
            };
            if let Some(i) = by_name.get_mut(&a.interface_name) {
                let len = u32::from(m.ip()).count_ones();
                i.addresses.push(format!("{}/{len}", sin.ip()));
            }
        }
    }
    by_name.into_values().collect()
}

/// Opens a netlink socket subscribed to link and IPv4 address changes and
/// rings `bell` on every message, from a dedicated thread (the socket is
/// blocking; it lives as long as the process). Returns false if netlink is
/// unavailable, in which case the periodic scan alone is used.
fn start_doorbell(bell: std::sync::Arc<Notify>) -> bool {
    use nix::sys::socket::{
        bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
    };
    const RTMGRP_LINK: u32 = 0x1;
    const RTMGRP_IPV4_IFADDR: u32 = 0x10;
    let fd = match socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    ) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "netlink socket unavailable: periodic interface scan only");
            return false;
        }
    };
    if let Err(e) = bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &NetlinkAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR),
    ) {
        tracing::warn!(error = %e, "netlink bind failed: periodic interface scan only");
        return false;
    }
    let spawned = std::thread::Builder::new().name("midonet-netlink".into()).spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match recv(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf, MsgFlags::empty()) {
                Ok(_) => bell.notify_one(),
                // ENOBUFS: we missed messages; a rescan catches up anyway.
                Err(nix::errno::Errno::ENOBUFS) | Err(nix::errno::Errno::EINTR) => bell.notify_one(),
                Err(e) => {
                    tracing::warn!(error = %e, "netlink receive failed: periodic interface scan only");
                    return;
                }
            }
        }
    });
    spawned.is_ok()
}

/// Scans now, then whenever netlink rings or `interval` passes, and sends
/// the list on `tx` each time it differs from the last one sent. Ends when
/// the receiver is gone.
pub async fn run(interval: Duration, tx: mpsc::Sender<Vec<Interface>>) {
    let bell = std::sync::Arc::new(Notify::new());
    let netlink = start_doorbell(bell.clone());
    tracing::debug!(netlink, ?interval, "interface scanner started");
    let mut last: Option<Vec<Interface>> = None;
    loop {
        let now = tokio::task::spawn_blocking(scan).await.unwrap_or_default();
        if last.as_ref() != Some(&now) {
            if tx.send(now.clone()).await.is_err() {
                return;
            }
            last = Some(now);
        }
        tokio::select! {
            _ = bell.notified() => {
                // Let a burst of messages (veth pair creation sends several)
                // settle into one rescan.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_seen_with_its_address() {
        let all = scan();
        let lo = all.iter().find(|i| i.name == "lo").expect("every namespace has lo");
        assert!(lo.mtu > 0);
        if lo.up {
            assert!(lo.addresses.iter().any(|a| a.starts_with("127.")), "{lo:?}");
        }
        let pb = lo.to_pb();
        assert_eq!(pb.name, "lo");
    }
}
