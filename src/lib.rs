//! # erldist
//!
//! A Rust node for Erlang and Elixir clusters. erldist speaks the Erlang
//! distribution protocol natively; this crate is built in layers, each usable
//! on its own:
//!
//! - [`mod@term`]: Erlang terms in Rust ([`Term`], [`Atom`], [`Pid`], ...) and
//!   the External Term Format, the bytes `term_to_binary/1` writes;
//! - [`epmd`]: the port mapper, client and server (embeddable);
//! - [`handshake`]: names, cookies and the handshake's states;
//! - [`connection`]: frames, ticks, control messages, the distribution
//!   header's atom cache and fragments, and the tokio driver;
//! - [`node`]: the [`Node`] and its [`Process`]es: messages, names, links,
//!   monitors, remote spawn, group leaders, RPC, GenServer, Task.Supervisor,
//!   `:pg` groups, Phoenix.PubSub and `:global` names;
//! - [`testing`]: real `epmd`, `erl` and Elixir nodes for tests.
//!
//! The protocol logic is sans-IO: codecs and state machines over bytes,
//! testable without sockets; tokio appears only at the edges (the EPMD
//! server, the connection driver, the node's tasks).
//!
//! ```
//! use erldist::{term, Term};
//! let t = term!({ok, [1, 2], #{name => <<"kate">>}});
//! let bytes = t.encode().unwrap();
//! assert_eq!(Term::decode(&bytes).unwrap(), t);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod connection;
pub mod epmd;
pub mod flags;
pub mod handshake;
pub mod node;
#[cfg(feature = "serde")]
pub mod serde;
pub mod term;
pub mod testing;

pub use bytes;

// The README's examples run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

// So are those of the ecosystem guide.
#[doc = include_str!("../docs/ecosystem.md")]
#[cfg(doctest)]
pub struct EcosystemDoctests;

#[cfg(feature = "serde")]
pub use self::serde::{from_bytes, from_term, to_bytes, to_term, to_term_struct, ElixirStruct};
pub use node::{Dest, Exited, MonitorTarget, Node, NodeBuilder, NodeError, NodeEvent, Process};
pub use term::Encoded;
pub use term::{
    Atom, Binary, BitBinary, ConvertError, DecodeError, DecodeErrorKind, DecodeOptions, Decoder,
    EncodeError, Encoder, FromTerm, Fun, ImproperList, LocalFun, Map, ParseError, Pid, Port,
    Reference, Term,
};
