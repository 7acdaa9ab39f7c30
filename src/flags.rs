//! Distribution capability flags (`DFLAG_*`), exchanged in the handshake.
//!
//! Values from OTP's `dist.hrl` and `dist.h`; see `erl_dist_protocol` §
//! "Distribution Flags".
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign, Not};

/// A set of distribution flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DistFlags(pub u64);

macro_rules! flags {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        impl DistFlags {
            $($(#[$doc])* pub const $name: DistFlags = DistFlags($value);)*

            /// Every named flag with its name, in bit order.
            pub const NAMED: &'static [(DistFlags, &'static str)] = &[$((DistFlags($value), stringify!($name)),)*];
        }
    };
}

flags! {
    /// The node is visible (not hidden).
    PUBLISHED = 0x1;
    /// Obsolete atom cache.
    ATOM_CACHE = 0x2;
    /// Extended references (mandatory since OTP 25).
    EXTENDED_REFERENCES = 0x4;
    /// Remote process monitors.
    DIST_MONITOR = 0x8;
    /// `FUN_EXT` tags (mandatory since OTP 25).
    FUN_TAGS = 0x10;
    /// Monitors by registered name.
    DIST_MONITOR_NAME = 0x20;
    /// Obsolete hidden atom cache.
    HIDDEN_ATOM_CACHE = 0x40;
    /// `NEW_FUN_EXT` (mandatory since OTP 25).
    NEW_FUN_TAGS = 0x80;
    /// Extended pids and ports (mandatory since OTP 25).
    EXTENDED_PIDS_PORTS = 0x100;
    /// `EXPORT_EXT` (mandatory since OTP 25).
    EXPORT_PTR_TAG = 0x200;
    /// `BIT_BINARY_EXT` (mandatory since OTP 25).
    BIT_BINARIES = 0x400;
    /// `NEW_FLOAT_EXT` (mandatory since OTP 25).
    NEW_FLOATS = 0x800;
    /// The I/O protocol with encodings.
    UNICODE_IO = 0x1000;
    /// The distribution header with its atom cache.
    DIST_HDR_ATOM_CACHE = 0x2000;
    /// `SMALL_ATOM_EXT`.
    SMALL_ATOM_TAGS = 0x4000;
    /// UTF-8 atoms (mandatory since OTP 25).
    UTF8_ATOMS = 0x10000;
    /// `MAP_EXT` (mandatory since OTP 25).
    MAP_TAG = 0x20000;
    /// 32-bit creations (mandatory since OTP 25).
    BIG_CREATION = 0x40000;
    /// `SEND_SENDER` instead of `SEND`.
    SEND_SENDER = 0x80000;
    /// Any term as a sequential trace label.
    BIG_SEQTRACE_LABELS = 0x100000;
    /// `PAYLOAD_*` exit and monitor-exit forms.
    EXIT_PAYLOAD = 0x400000;
    /// Fragmented messages.
    FRAGMENTS = 0x800000;
    /// The OTP 23 (version 6) handshake (mandatory since OTP 25).
    HANDSHAKE_23 = 0x1000000;
    /// The new link protocol (`UNLINK_ID`, mandatory since OTP 26).
    UNLINK_ID = 0x2000000;
    /// "All flags mandatory in OTP 25".
    MANDATORY_25_DIGEST = 0x4000000;
    /// `SPAWN_REQUEST` / `SPAWN_REPLY`.
    SPAWN = 1 << 32;
    /// Dynamic node names (handshake only).
    NAME_ME = 1 << 33;
    /// 64-bit ports, 32-bit pid numbers, five-word references (mandatory since OTP 26).
    V4_NC = 1 << 34;
    /// Process aliases (`ALIAS_SEND`).
    ALIAS = 1 << 35;
}

impl DistFlags {
    /// No flags.
    pub const EMPTY: DistFlags = DistFlags(0);

    /// What OTP 25 requires of a peer (`MANDATORY_DFLAGS_25`).
    pub const MANDATORY_25: DistFlags = DistFlags(0x107_0F94);

    /// What OTP 26 and later require of a peer.
    pub const MANDATORY_26: DistFlags = DistFlags(0x4_0307_0F94);

    /// Whether every flag of `other` is set here.
    pub const fn contains(self, other: DistFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags of `self` that `other` lacks.
    pub const fn missing_from(self, other: DistFlags) -> DistFlags {
        DistFlags(self.0 & !other.0)
    }

    /// The flags with `MANDATORY_25_DIGEST` expanded into the flags it
    /// stands for, as OTP reads a peer's flags.
    pub const fn expanded(self) -> DistFlags {
        if self.0 & Self::MANDATORY_25_DIGEST.0 != 0 {
            DistFlags(self.0 | Self::MANDATORY_25.0)
        } else {
            self
        }
    }

    /// The names of the flags set, for messages and logs.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMED
            .iter()
            .filter(|(f, _)| self.contains(*f))
            .map(|(_, n)| *n)
            .collect()
    }
}

impl BitOr for DistFlags {
    type Output = DistFlags;
    fn bitor(self, o: DistFlags) -> DistFlags {
        DistFlags(self.0 | o.0)
    }
}

impl BitOrAssign for DistFlags {
    fn bitor_assign(&mut self, o: DistFlags) {
        self.0 |= o.0;
    }
}

impl BitAnd for DistFlags {
    type Output = DistFlags;
    fn bitand(self, o: DistFlags) -> DistFlags {
        DistFlags(self.0 & o.0)
    }
}

impl Not for DistFlags {
    type Output = DistFlags;
    fn not(self) -> DistFlags {
        DistFlags(!self.0)
    }
}

impl fmt::Debug for DistFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DistFlags({:#x}: {})", self.0, self.names().join("|"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_expands_to_the_otp_25_set() {
        let f = DistFlags::MANDATORY_25_DIGEST | DistFlags::PUBLISHED;
        assert!(f.expanded().contains(DistFlags::MANDATORY_25));
        assert!(!f.contains(DistFlags::UTF8_ATOMS));
        assert_eq!(
            DistFlags::MANDATORY_25
                .missing_from(DistFlags::UTF8_ATOMS)
                .names()
                .len(),
            10
        );
    }
}
