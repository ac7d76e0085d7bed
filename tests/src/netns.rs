//! A network link a drill can cut: a network namespace joined to the host by a veth pair, with
//! an address on each side. A process started in the namespace is reached at `inside`; taking the
//! host's end down partitions it from everything on the host, and bringing it up heals it.
//! Needs root (`ip netns`, from iproute2).

use std::process::Command;

/// A namespace and its veth pair, removed on drop.
pub struct Link {
    pub namespace: String,
    /// The namespace side's address.
    pub inside: String,
    host_end: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip (iproute2) runs");
    assert!(status.success(), "ip {args:?}");
}

impl Link {
    pub fn new() -> Self {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let subnet = u8::from_str_radix(&id[..2], 16).expect("hex");
        let (namespace, host_end, ns_end) = (format!("vt-{id}"), format!("vth{id}"), format!("vtn{id}"));
        let (host_ip, ns_ip) = (format!("10.213.{subnet}.1"), format!("10.213.{subnet}.2"));
        ip(&["netns", "add", &namespace]);
        ip(&["link", "add", &host_end, "type", "veth", "peer", "name", &ns_end]);
        ip(&["link", "set", &ns_end, "netns", &namespace]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_end]);
        ip(&["link", "set", &host_end, "up"]);
        let in_namespace = |args: &[&str]| {
            let mut all = vec!["netns", "exec", namespace.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        let cidr = format!("{ns_ip}/30");
        in_namespace(&["addr", "add", &cidr, "dev", &ns_end]);
        in_namespace(&["link", "set", &ns_end, "up"]);
        in_namespace(&["link", "set", "lo", "up"]);
        Self {
            namespace,
            inside: ns_ip,
            host_end,
        }
    }

    /// Cuts the link: nothing crosses until [`Link::heal`].
    pub fn partition(&self) {
        ip(&["link", "set", &self.host_end, "down"]);
    }

    pub fn heal(&self) {
        ip(&["link", "set", &self.host_end, "up"]);
    }
}

impl Default for Link {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting the namespace destroys its end of the pair, and with it the host's.
        let _ = Command::new("ip").args(["netns", "delete", &self.namespace]).status();
        let _ = Command::new("ip").args(["link", "delete", &self.host_end]).status();
    }
}
