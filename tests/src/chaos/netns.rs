//! A watchdog's own network namespace, joined to the host by a veth pair, for real partitions:
//! [`NetnsLink::cut`] takes the host end of the pair down (packets from the namespace are dropped
//! silently, as in a real partition), [`NetnsLink::restore`] brings it up again.
//!
//! ZooKeeper's client ports are offered on the host end's address by a small TCP forwarder
//! ([`NetnsLink::forward`]) to the ensemble on 127.0.0.1 (scripts/zk.sh and ZooKeeper 3.8 listen on
//! one client address, loopback; docs/chaos.md). Only that address and loopback are used.
//!
//! Every `ip` command is bounded (`timeout 10`); the namespace and the link are deleted on drop,
//! and their names are appended to a state file first so that `scripts/chaos.sh` can delete them
//! if the runner itself dies.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::zk::random_u64;

/// A namespace with a veth pair to the host.
#[derive(Debug)]
pub struct NetnsLink {
    /// The namespace's name (`zkchaos-<pid>-<n>`).
    pub ns: String,
    /// The host end of the pair.
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
    forwarders: Vec<JoinHandle<()>>,
}

/// Runs `ip ARGS…`, bounded by 10 s.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("timeout")
        .arg("10")
        .arg("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn addresses_in_use() -> String {
    Command::new("timeout")
        .args(["10", "ip", "-4", "-o", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl NetnsLink {
    /// Creates namespace `zkchaos-<pid>-<n>` with loopback up and a veth pair whose host end has
    /// `10.231.X.Y+1/30` and namespace end `+2`, on a /30 no interface uses yet. Records the names
    /// in `state_file` before creating anything.
    pub fn create(n: usize, state_file: &Path) -> Result<Self, String> {
        let pid = std::process::id() % 10_000_000;
        let ns = format!("zkchaos-{pid}-{n}");
        let host_if = format!("zkc{pid}h{n}");
        let ns_if = format!("zkc{pid}n{n}");
        let used = addresses_in_use();
        let (host_ip, ns_ip) = (0..200)
            .map(|_| {
                let r = random_u64();
                let a = (r % 256) as u8;
                let b = (((r >> 8) % 64) * 4) as u8;
                (
                    Ipv4Addr::new(10, 231, a, b + 1),
                    Ipv4Addr::new(10, 231, a, b + 2),
                )
            })
            .find(|(h, s)| !used.contains(&format!("{h}/")) && !used.contains(&format!("{s}/")))
            .ok_or("no free 10.231.0.0/16 subnet for a veth pair")?;
        let mut state = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state_file)
            .map_err(|e| format!("cannot open {}: {e}", state_file.display()))?;
        writeln!(state, "netns {ns}\nlink {host_if}")
            .map_err(|e| format!("cannot write {}: {e}", state_file.display()))?;
        let link = NetnsLink {
            ns: ns.clone(),
            host_if: host_if.clone(),
            host_ip,
            ns_ip,
            forwarders: Vec::new(),
        };
        let host_cidr = format!("{host_ip}/30");
        let ns_cidr = format!("{ns_ip}/30");
        ip(&["netns", "add", &ns])?;
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &ns,
        ])?;
        ip(&["addr", "add", &host_cidr, "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&["-n", &ns, "addr", "add", &ns_cidr, "dev", &ns_if])?;
        ip(&["-n", &ns, "link", "set", &ns_if, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(link)
    }

    /// Offers each of `ports` (ZooKeeper's client ports on 127.0.0.1) on the host end's address.
    pub async fn forward(&mut self, ports: &[u16]) -> Result<(), String> {
        for &port in ports {
            let listener = TcpListener::bind((self.host_ip, port))
                .await
                .map_err(|e| format!("cannot listen on {}:{port}: {e}", self.host_ip))?;
            self.forwarders.push(tokio::spawn(async move {
                loop {
                    let Ok((mut down, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    tokio::spawn(async move {
                        let connect = TcpStream::connect((Ipv4Addr::LOCALHOST, port));
                        if let Ok(Ok(mut up)) =
                            tokio::time::timeout(Duration::from_secs(2), connect).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                        }
                    });
                }
            }));
        }
        Ok(())
    }

    /// The connect string a watchdog in the namespace uses for `ports`.
    pub fn connect_string(&self, ports: &[u16]) -> String {
        ports
            .iter()
            .map(|p| format!("{}:{p}", self.host_ip))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Cuts the namespace off: the host end goes down.
    pub fn cut(&self) -> Result<(), String> {
        ip(&["link", "set", &self.host_if, "down"])
    }

    /// Reconnects the namespace.
    pub fn restore(&self) -> Result<(), String> {
        ip(&["link", "set", &self.host_if, "up"])
    }
}

impl Drop for NetnsLink {
    fn drop(&mut self) {
        for f in &self.forwarders {
            f.abort();
        }
        if let Err(e) = ip(&["link", "del", &self.host_if]) {
            eprintln!("chaos: {e}");
        }
        if let Err(e) = ip(&["netns", "del", &self.ns]) {
            eprintln!("chaos: {e}");
        }
    }
}
