//! Node names: `alive@host`, short and long, validated as OTP validates
//! them.
//!
//! OTP runs a node in one of two naming modes:
//!
//! - **short names** (`erl -sname`): the host part has no dots
//!   (`alex@localhost`, `alex@myhost`);
//! - **long names** (`erl -name`): the host part is fully qualified or an
//!   IP address (`alex@host.example`, `alex@127.0.0.1`).
//!
//! A node of one mode refuses to dial a node of the other
//! (`inet_tcp_dist:splitnode/3`: "System NOT running to use fully qualified
//! hostnames" / "System running to use fully qualified hostnames");
//! [`NodeName::check_mode`] is that check.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fmt;
use std::net::IpAddr;

/// How a node's host part is written: the `-sname` / `-name` modes of `erl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameMode {
    /// Short names (`erl -sname`): hosts without dots.
    Short,
    /// Long names (`erl -name`): fully qualified hosts or IP addresses.
    Long,
}

impl fmt::Display for NameMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameMode::Short => "short names (-sname)",
            NameMode::Long => "long names (-name)",
        })
    }
}

/// Why a node name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is not `alive@host` with both parts non-empty.
    #[error("invalid node name {name:?}: {reason}")]
    Invalid {
        /// The name as given.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The host does not fit the naming mode (OTP's `splitnode` check).
    #[error("node name {name:?} cannot be used with {mode}: {reason}")]
    WrongMode {
        /// The name.
        name: String,
        /// The mode the local node runs in.
        mode: NameMode,
        /// What is wrong.
        reason: &'static str,
    },
    /// `alive` alone was given but the local host name is unknown.
    #[error("cannot complete node name {name:?}: the local host name is unknown")]
    NoHostName {
        /// The name as given.
        name: String,
    },
}

/// Most bytes in a node name: it is an atom, and atoms have at most 255
/// characters (OTP's `list_to_atom/1` limit).
pub const MAX_NAME_LEN: usize = 255;

/// A full node name, `alive@host`.
///
/// Names of the local node are parsed strictly with [`NodeName::parse`]
/// (the rules of `net_kernel` for `-sname`/`-name`); names peers send in the
/// handshake go through [`NodeName::from_peer`], which accepts what OTP's
/// `dist_util:is_name_ok/2` accepts.
///
/// ```
/// use erldist::handshake::{NameMode, NodeName};
/// let n: NodeName = "alex@localhost".parse().unwrap();
/// assert_eq!((n.alive(), n.host(), n.mode()), ("alex", "localhost", NameMode::Short));
/// let n = NodeName::parse("alex@127.0.0.1").unwrap();
/// assert_eq!(n.mode(), NameMode::Long);
/// assert!(NodeName::parse("al ex@localhost").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName {
    full: String,
    at: usize,
}

impl NodeName {
    /// Parses a name for the local node, as `erl -sname`/`-name` accept it:
    /// the alive part is `[0-9A-Za-z_-]+`, the host part printable
    /// characters (`net_kernel:valid_name_head/1`, `validate_hostname/1`).
    /// `alive` alone means `alive@<local short host name>`, as with
    /// `erl -sname alive`.
    ///
    /// # Errors
    /// [`NameError::Invalid`], or [`NameError::NoHostName`] for a bare
    /// alive part when the host name cannot be found.
    pub fn parse(name: &str) -> Result<NodeName, NameError> {
        let invalid = |reason| NameError::Invalid {
            name: name.to_owned(),
            reason,
        };
        let (alive, host) = match name.split_once('@') {
            Some((a, h)) => (a, h.to_owned()),
            None => (
                name,
                local_short_host_name().ok_or_else(|| NameError::NoHostName {
                    name: name.to_owned(),
                })?,
            ),
        };
        if alive.is_empty() {
            return Err(invalid("the part before '@' is empty"));
        }
        if !alive
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                "the part before '@' may only hold letters, digits, '_' and '-'",
            ));
        }
        if host.is_empty() {
            return Err(invalid("the host part is empty"));
        }
        if host.contains('@') {
            return Err(invalid("more than one '@'"));
        }
        // net_kernel: ^[!-ÿ]*$ (printable latin-1, no space).
        if !host
            .chars()
            .all(|c| ('!'..='\u{ff}').contains(&c) && c != '\u{7f}')
        {
            return Err(invalid("the host part holds spaces or control characters"));
        }
        let full = format!("{alive}@{host}");
        if full.chars().count() > MAX_NAME_LEN {
            return Err(invalid("longer than 255 characters"));
        }
        Ok(NodeName {
            at: alive.len(),
            full,
        })
    }

    /// Checks a name a peer sent in the handshake, as OTP's acceptor does
    /// (`dist_util:is_name_ok/2`): exactly one `@`, both parts non-empty;
    /// plus the atom length limit.
    ///
    /// # Errors
    /// [`NameError::Invalid`].
    pub fn from_peer(name: &str) -> Result<NodeName, NameError> {
        let invalid = |reason| NameError::Invalid {
            name: name.to_owned(),
            reason,
        };
        let (alive, host) = name
            .split_once('@')
            .ok_or_else(|| invalid("no '@' in the name"))?;
        if alive.is_empty() || host.is_empty() {
            return Err(invalid("a part of alive@host is empty"));
        }
        if host.contains('@') {
            return Err(invalid("more than one '@'"));
        }
        if name.chars().count() > MAX_NAME_LEN {
            return Err(invalid("longer than 255 characters"));
        }
        Ok(NodeName {
            full: name.to_owned(),
            at: alive.len(),
        })
    }

    /// The whole name, `alive@host`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The part before `@`, the name EPMD knows.
    pub fn alive(&self) -> &str {
        &self.full[..self.at]
    }

    /// The part after `@`.
    pub fn host(&self) -> &str {
        &self.full[self.at + 1..]
    }

    /// The mode this name belongs to: long if the host has a dot, else short.
    /// (An IPv6 literal without dots fits both; it reports `Short`, and
    /// [`check_mode`](Self::check_mode) accepts it for both.)
    pub fn mode(&self) -> NameMode {
        if self.host().contains('.') {
            NameMode::Long
        } else {
            NameMode::Short
        }
    }

    /// Whether a node running with `mode` may dial this name, as OTP's
    /// `inet_tcp_dist:splitnode/3` decides: with short names the host must
    /// have no dots; with long names it must have dots or be an IP address.
    ///
    /// # Errors
    /// [`NameError::WrongMode`] naming the mode and the rule.
    pub fn check_mode(&self, mode: NameMode) -> Result<(), NameError> {
        let dotted = self.host().contains('.');
        let wrong = |reason| NameError::WrongMode {
            name: self.full.clone(),
            mode,
            reason,
        };
        match mode {
            NameMode::Short if dotted => Err(wrong(
                "a short-name node cannot talk to a fully qualified host (OTP: \
                 \"System NOT running to use fully qualified hostnames\")",
            )),
            NameMode::Long if !dotted && self.host().parse::<IpAddr>().is_err() => Err(wrong(
                "a long-name node needs a fully qualified host or an IP address (OTP: \
                 \"System running to use fully qualified hostnames\")",
            )),
            _ => Ok(()),
        }
    }
}

impl std::str::FromStr for NodeName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<NodeName, NameError> {
        NodeName::parse(s)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.full)
    }
}

/// The local host name up to its first dot, as `inet_db:gethostname/0`
/// gives it to `erl -sname`: `$HOSTNAME`'s kernel value
/// (`/proc/sys/kernel/hostname`, then `/etc/hostname`).
pub fn local_short_host_name() -> Option<String> {
    let full = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())?;
    full.split('.').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_follow_the_host() {
        let s = NodeName::parse("alex@localhost").unwrap();
        assert_eq!(s.mode(), NameMode::Short);
        assert!(s.check_mode(NameMode::Short).is_ok());
        assert!(matches!(
            s.check_mode(NameMode::Long),
            Err(NameError::WrongMode { .. })
        ));
        let l = NodeName::parse("alex@host.example").unwrap();
        assert_eq!(l.mode(), NameMode::Long);
        assert!(l.check_mode(NameMode::Long).is_ok());
        assert!(l.check_mode(NameMode::Short).is_err());
        let ip = NodeName::parse("alex@127.0.0.1").unwrap();
        assert!(ip.check_mode(NameMode::Long).is_ok());
        let v6 = NodeName::from_peer("alex@::1").unwrap();
        assert!(v6.check_mode(NameMode::Long).is_ok());
        assert!(v6.check_mode(NameMode::Short).is_ok());
    }

    #[test]
    fn bare_alive_means_the_local_short_host() {
        if let Some(host) = local_short_host_name() {
            let n = NodeName::parse("alex").unwrap();
            assert_eq!(n.host(), host);
            assert!(!n.host().contains('.'));
        }
    }

    #[test]
    fn rejects_bad_local_names() {
        for bad in ["@h", "a@", "a b@h", "a@b@c", "a@h h", "ä@h"] {
            assert!(NodeName::parse(bad).is_err(), "{bad}");
        }
        assert!(NodeName::parse(&format!("{}@h", "a".repeat(254))).is_err());
    }

    #[test]
    fn peer_names_are_checked_like_is_name_ok() {
        assert!(NodeName::from_peer("a b@h").is_ok());
        for bad in ["ab", "@h", "a@", "a@b@c", ""] {
            assert!(NodeName::from_peer(bad).is_err(), "{bad}");
        }
    }
}
