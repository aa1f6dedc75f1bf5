//! Settings of the in-workspace service.

use serde::{Deserialize, Serialize};

/// `iws.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct IwsConfig {
    /// Host ids that WriteIDMapping may map user ids of a workspace to.
    pub uid_map: IdRanges,
    /// Host ids that WriteIDMapping may map group ids of a workspace to.
    pub gid_map: IdRanges,
    /// Where the workspace cgroups are made (PrepareForUserNS, EvacuateCGroup).
    pub cgroup: CgroupConfig,
    /// The veth pair of SetupPairVeths.
    pub network: NetworkConfig,
}

/// `iws.cgroup.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CgroupConfig {
    /// The mount point of the cgroup v2 hierarchy; unset: the one in `/proc/self/mountinfo`
    /// (none there: a cgroup v1 node, where the workspace cgroup steps do nothing).
    pub v2_mount: Option<std::path::PathBuf>,
}

/// `iws.network`: the pair of SetupPairVeths between a workspace container's network namespace
/// and an inner one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// An IPv4 network with room for two hosts (prefix 30 or shorter): its first host address is
    /// the container's end of the pair, its second the inner end (and the target of forwarded
    /// TCP).
    pub cidr: String,
    /// The container's interface to the outside: inner traffic leaves through it masqueraded,
    /// and TCP arriving on it is forwarded in. Empty: every interface of the container but
    /// loopback and the pair itself (no detection, so an interface added later counts too).
    pub outer_interface: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            cidr: "10.0.5.0/30".into(),
            outer_interface: String::new(),
        }
    }
}

/// An IPv4 network of `iws.network.cidr`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Network {
    pub network: std::net::Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Network {
    /// The `n`th address of the network (0 is the network address itself).
    pub fn host(&self, n: u32) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(u32::from(self.network) + n)
    }
}

impl std::fmt::Display for Ipv4Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl NetworkConfig {
    /// The network of `cidr`: IPv4, a prefix of at most 30 (two host addresses), no host bits set.
    pub fn network(&self) -> Result<Ipv4Network, String> {
        let name = "iws.network.cidr";
        let (address, prefix) = self.cidr.split_once('/').ok_or_else(|| {
            format!(
                "{name}: {:?} is not a network such as 10.0.5.0/30",
                self.cidr
            )
        })?;
        let network: std::net::Ipv4Addr = address.parse().map_err(|_| {
            format!("{name}: {address:?} is not an IPv4 address (IPv6 is not supported)")
        })?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{name}: {prefix:?} is not a prefix length of 0 to 32"))?;
        if prefix > 30 {
            return Err(format!(
                "{name}: /{prefix} has no room for two host addresses: use /30 or shorter"
            ));
        }
        let mask = u32::MAX.checked_shl(u32::from(32 - prefix)).unwrap_or(0);
        if u32::from(network) & !mask != 0 {
            let base = std::net::Ipv4Addr::from(u32::from(network) & mask);
            return Err(format!(
                "{name}: {} has host bits set: did you mean {base}/{prefix}?",
                self.cidr
            ));
        }
        Ok(Ipv4Network { network, prefix })
    }

    /// The outer interface, if one is set; checked as a Linux interface name.
    pub fn outer_interface(&self) -> Result<Option<&str>, String> {
        let name = &self.outer_interface;
        if name.is_empty() {
            return Ok(None);
        }
        let fine = name.len() <= 15
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !fine {
            return Err(format!(
                "iws.network.outer_interface: {name:?} is not an interface name \
                 (1-15 characters of A-Z a-z 0-9 - _ .)"
            ));
        }
        Ok(Some(name))
    }
}

/// Where the ids of a workspace may land on the host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct IdRanges {
    /// Container id 0 (the workspace's root) maps into this range.
    pub root_range: IdRange,
    /// Every other container id maps into one of these ranges.
    pub user_ranges: Vec<IdRange>,
}

/// Host ids `start .. start + size` (a missing size is 0, which the configuration check refuses).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct IdRange {
    pub start: u32,
    pub size: u32,
}

impl IdRange {
    /// Whether host ids `start .. start + size` lie inside this range (no overflow possible).
    pub fn contains(&self, start: u32, size: u32) -> bool {
        let (start, size) = (u64::from(start), u64::from(size));
        let (mine, my_size) = (u64::from(self.start), u64::from(self.size));
        start >= mine && start + size <= mine + my_size
    }

    fn check(&self, name: &str) -> Result<(), String> {
        if self.size == 0 {
            return Err(format!("{name}: size must be at least 1"));
        }
        if u64::from(self.start) + u64::from(self.size) > u64::from(u32::MAX) + 1 {
            return Err(format!("{name}: start + size goes past 4294967295"));
        }
        Ok(())
    }
}

impl Default for IdRanges {
    fn default() -> Self {
        IdRanges {
            root_range: IdRange {
                start: 33333,
                size: 1,
            },
            user_ranges: vec![IdRange {
                start: 100000,
                size: 70000,
            }],
        }
    }
}

impl IwsConfig {
    /// Checks the ranges (the message names the setting).
    pub fn check(&self) -> Result<(), String> {
        for (which, ranges) in [("uid_map", &self.uid_map), ("gid_map", &self.gid_map)] {
            ranges
                .root_range
                .check(&format!("iws.{which}.root_range"))?;
            for range in &ranges.user_ranges {
                range.check(&format!("iws.{which}.user_ranges"))?;
            }
        }
        if let Some(mount) = &self.cgroup.v2_mount {
            if !mount.is_absolute() {
                return Err("iws.cgroup.v2_mount: must be an absolute path".to_string());
            }
        }
        self.network.network()?;
        self.network.outer_interface()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(c: &str) -> Result<Ipv4Network, String> {
        NetworkConfig {
            cidr: c.into(),
            ..NetworkConfig::default()
        }
        .network()
    }

    #[test]
    fn the_network_needs_ipv4_room_for_two_hosts_and_no_host_bits() {
        let n = cidr("10.0.5.0/30").expect("default");
        assert_eq!(
            (n.host(1).to_string(), n.host(2).to_string()),
            ("10.0.5.1".into(), "10.0.5.2".into())
        );
        assert_eq!(n.to_string(), "10.0.5.0/30");
        assert!(cidr("172.16.0.0/12").is_ok());
        assert!(cidr("10.0.5.0/31")
            .expect_err("/31")
            .contains("two host addresses"));
        assert!(cidr("10.0.5.4/32").is_err());
        assert!(cidr("10.0.5.1/30")
            .expect_err("host bits")
            .contains("10.0.5.0/30"));
        assert!(cidr("fd00::/64").expect_err("v6").contains("IPv6"));
        assert!(cidr("10.0.5.0").is_err());
        assert!(cidr("10.0.5.0/33").is_err());
        assert!(cidr("10.0.5.0/x").is_err());
        assert!(IwsConfig::default().check().is_ok());
    }

    #[test]
    fn the_outer_interface_is_a_plain_interface_name() {
        let with = |n: &str| NetworkConfig {
            outer_interface: n.into(),
            ..NetworkConfig::default()
        };
        assert_eq!(with("").outer_interface(), Ok(None));
        assert_eq!(with("eth0").outer_interface(), Ok(Some("eth0")));
        for bad in ["a\"b", "eth 0", "0123456789abcdef", "..", "x/y", "a;b"] {
            assert!(with(bad).outer_interface().is_err(), "{bad}");
        }
    }
}
