//! The distribution header (131, 68), its atom cache, and fragmented
//! messages (131, 69 / 70): how control messages and their payloads are
//! framed once the handshake is over.
//!
//! This module is sans-IO: it turns the payload of one packet (the bytes
//! after the 4-byte length) into a [`DistMessage`] and back. The connection
//! cuts packets and handles ticks.
//!
//! # Framing
//!
//! Which form frames take depends on the flags both nodes agreed on
//! ([`Framing::from_flags`]):
//!
//! - neither `DIST_HDR_ATOM_CACHE` nor `FRAGMENTS`: *pass-through*,
//!   `112, 131 ControlTerm [131 Payload]`; OTP skips the first byte without
//!   looking at it, and so does this decoder;
//! - otherwise, every frame starts with `131, 68` (a whole message),
//!   `131, 69` (the first fragment of a long one) or `131, 70` (the next
//!   fragments, `FRAGMENTS` only), and the terms after the header have *no*
//!   131 of their own. A term that starts with 131, and a compressed term,
//!   are refused, as OTP refuses them.
//!
//! # The header and the atom cache
//!
//! `131, 68, N, Flags, Refs`: `N` (0..=255) atom cache references, a
//! nibble of flags per reference (bit 3: new entry, bits 0–2: segment)
//! plus one for the whole header (bit 0: long atoms, 2-byte lengths), then
//! per reference its index in the segment and, for a new entry, the atom's
//! UTF-8 text. Each direction of each connection has a cache of 2048 slots
//! (`segment * 256 + index`); a new entry overwrites its slot, a cached
//! reference reads it. Inside the terms, `ATOM_CACHE_REF k` is the atom of
//! the *k*-th reference of this header. [`AtomCacheIn`] is the receiver's
//! cache, [`AtomCacheOut`] the sender's.
//!
//! # Fragments
//!
//! `131, 69, SequenceId:64, FragmentId:64, N, Flags, Refs, ControlTerm,
//! start of Payload`, then `131, 70, SequenceId:64, FragmentId:64, more
//! Payload` frames. FragmentId counts down from the number of fragments to
//! one. Sequences from different senders may interleave, so
//! [`Reassembler`] keys them by SequenceId. As in OTP's `dist.c`:
//!
//! - the atom cache references of a first fragment update the cache when
//!   that fragment arrives, since the cache follows frame order and the
//!   frames after it (of any sequence) may refer to those slots;
//! - the whole control term must be in the first fragment, and is checked
//!   there;
//! - a first fragment whose SequenceId is 0 is a whole message (OTP
//!   treats it as "not fragmented", whatever its FragmentId);
//! - a first fragment for a sequence already pending, a continuation of
//!   an unknown sequence, and a FragmentId out of order are errors (OTP
//!   drops the connection). FragmentId 0 is an error too.
//!
//! Reassembly copies each fragment into one buffer for its message as it
//! arrives, and uses such buffers again once their messages are dropped;
//! [`ReassemblyLimits`] bounds what a peer can make it hold.
//!
//! # Sending
//!
//! [`DistEncoder`] writes the header with [`AtomCacheOut`]: atoms of the
//! control term and payload become `ATOM_CACHE_REF`s (up to 255 per frame;
//! the rest are written inline). The sender's cache is updated as each
//! frame is encoded, so frames must be sent in the order they were
//! encoded. Without `DIST_HDR_ATOM_CACHE` (only `FRAGMENTS`), it writes
//! `131, 68, 0` headers, as OTP does.
//!
//! ```
//! use erldist::connection::control::{ControlMessage, DistMessage};
//! use erldist::connection::dist_header::{DistDecoder, DistEncoder};
//! use erldist::flags::DistFlags;
//! use erldist::{Atom, Pid, Term};
//!
//! let flags = DistFlags::DIST_HDR_ATOM_CACHE | DistFlags::FRAGMENTS;
//! let (mut tx, mut rx) = (DistEncoder::new(flags), DistDecoder::new(flags));
//! let from = Pid { node: Atom::from("a@h"), id: 85, serial: 0, creation: 1 };
//! let msg = DistMessage::with_payload(
//!     ControlMessage::RegSend { from, to_name: Atom::from("rex") },
//!     Term::atom("hello"),
//! ).unwrap();
//! for frame in tx.encode(&msg).unwrap() {
//!     assert_eq!(&frame[..2], [131, 68]);
//!     assert_eq!(rx.decode_frame(frame).unwrap(), Some(msg.clone()));
//! }
//! ```
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroU64;

use bytes::{BufMut, Bytes, BytesMut};

use super::control::{
    op_arity, ControlError, ControlMessage, ControlOp, DistMessage, MAX_CONTROL_ELEMENTS,
};
use super::framing::OutFrame;
use crate::flags::DistFlags;
use crate::term::{AtomBudget, AtomError, DecodeError, DecodeOptions, EncodeError, MAX_ATOM_CHARS};
use crate::{Atom, Decoder, Encoder, Pid, Term};

/// The version byte that starts external terms and distribution headers.
pub const VERSION_MAGIC: u8 = 131;

/// The first byte of a pass-through frame (`'p'`).
pub const PASS_THROUGH: u8 = 112;

/// The number of slots in each direction's atom cache (8 segments of 256).
pub const ATOM_CACHE_SIZE: usize = 2048;

/// The most atom cache references one header holds.
pub const MAX_ATOM_CACHE_REFS: usize = 255;

/// OTP's fragment size (`ERTS_DIST_FRAGMENT_SIZE`): payload bytes per
/// fragment.
pub const DEFAULT_FRAGMENT_SIZE: usize = 64 * 1024;

/// The bytes of a continuation header: `131, 70, SequenceId, FragmentId`.
pub const FRAGMENT_CONT_HEADER_SIZE: usize = 18;

/// Flag nibble bit: the reference is a new cache entry.
const NEW_CACHE_ENTRY: u8 = 0b1000;
/// Flag nibble bits: the segment.
const SEGMENT_MASK: u8 = 0b0111;
/// The header's last nibble, bit 0: atom lengths take two bytes.
const LONG_ATOMS: u8 = 0b0001;

/// The second byte of a header frame.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameTag(pub u8);

impl FrameTag {
    /// `DIST_HEADER`: a whole message.
    pub const DIST_HEADER: FrameTag = FrameTag(68);
    /// `DIST_FRAG_HEADER`: the first fragment of a message.
    pub const DIST_FRAG_HEADER: FrameTag = FrameTag(69);
    /// `DIST_FRAG_CONT`: a later fragment.
    pub const DIST_FRAG_CONT: FrameTag = FrameTag(70);
}

impl fmt::Debug for FrameTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            FrameTag::DIST_HEADER => "DIST_HEADER",
            FrameTag::DIST_FRAG_HEADER => "DIST_FRAG_HEADER",
            FrameTag::DIST_FRAG_CONT => "DIST_FRAG_CONT",
            _ => return write!(f, "FrameTag({})", self.0),
        };
        write!(f, "{name}({})", self.0)
    }
}

impl fmt::Display for FrameTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The form frames take on a connection, from the negotiated flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Framing {
    /// `112, 131 Control [131 Payload]`: no header flag negotiated.
    PassThrough,
    /// `131, 68` headers only (`DIST_HDR_ATOM_CACHE` without `FRAGMENTS`).
    Header,
    /// `131, 68 / 69 / 70` (`FRAGMENTS`, with or without the atom cache).
    HeaderWithFragments,
}

impl Framing {
    /// The framing OTP uses for these (effective, negotiated) flags.
    pub fn from_flags(flags: DistFlags) -> Framing {
        if flags.contains(DistFlags::FRAGMENTS) {
            Framing::HeaderWithFragments
        } else if flags.contains(DistFlags::DIST_HDR_ATOM_CACHE) {
            Framing::Header
        } else {
            Framing::PassThrough
        }
    }

    /// Whether frames carry a distribution header.
    pub fn has_header(self) -> bool {
        self != Framing::PassThrough
    }

    /// Whether fragments (69, 70) may be sent and received.
    pub fn has_fragments(self) -> bool {
        self == Framing::HeaderWithFragments
    }
}

// ---------------------------------------------------------------------------
// Errors

/// A malformed distribution header.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind} at byte {offset} of the frame")]
pub struct HeaderError {
    /// Where in the frame the problem was found.
    pub offset: usize,
    /// What was wrong.
    pub kind: HeaderErrorKind,
}

/// What was wrong with a distribution header.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderErrorKind {
    /// The frame ended inside the header.
    #[error("frame ends inside the header ({needed} more bytes needed)")]
    UnexpectedEnd {
        /// How many more bytes were needed at least.
        needed: usize,
    },
    /// The frame does not start with 131 (OTP: "Got message from
    /// incompatible erlang").
    #[error("frame starts with {0}, not 131")]
    BadVersion(u8),
    /// The byte after 131 is not a header tag.
    #[error("unknown header tag {0}")]
    UnknownTag(u8),
    /// A fragment header on a connection without `FRAGMENTS`.
    #[error("{0} without the FRAGMENTS flag")]
    FragmentsNotNegotiated(FrameTag),
    /// A cached reference to a slot no frame has filled.
    #[error("atom cache slot {slot} is empty")]
    EmptySlot {
        /// The slot (`segment * 256 + index`).
        slot: u16,
    },
    /// A new entry's text is not UTF-8.
    #[error("atom for cache slot {slot} is not UTF-8")]
    InvalidUtf8 {
        /// The slot.
        slot: u16,
    },
    /// A new entry's atom could not be created.
    #[error("atom for cache slot {slot}: {source}")]
    Atom {
        /// The slot.
        slot: u16,
        /// Why.
        source: AtomError,
    },
}

/// A fragment that does not fit its sequence, or a limit exceeded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FragmentError {
    /// FragmentId 0 (fragments count down to 1).
    #[error("sequence {sequence_id}: fragment id 0")]
    ZeroFragmentId {
        /// The sequence.
        sequence_id: u64,
    },
    /// A first fragment for a sequence that is still being reassembled.
    #[error("sequence {sequence_id}: first fragment while the sequence is pending")]
    DuplicateSequence {
        /// The sequence.
        sequence_id: u64,
    },
    /// A continuation for a sequence that has no first fragment.
    #[error("sequence {sequence_id}: fragment {fragment_id} of an unknown sequence")]
    UnknownSequence {
        /// The sequence.
        sequence_id: u64,
        /// The fragment's id.
        fragment_id: u64,
    },
    /// A continuation whose FragmentId is not the next one down.
    #[error("sequence {sequence_id}: fragment {found} where {expected} was due")]
    OutOfOrder {
        /// The sequence.
        sequence_id: u64,
        /// The FragmentId expected.
        expected: u64,
        /// The FragmentId received.
        found: u64,
    },
    /// Too many sequences pending at once.
    #[error("sequence {sequence_id}: more than {limit} sequences pending")]
    TooManyPending {
        /// The sequence that would exceed the limit.
        sequence_id: u64,
        /// The limit.
        limit: usize,
    },
    /// A message larger than the limit.
    #[error("sequence {sequence_id}: message of {size} bytes or more, limit {limit}")]
    TooLarge {
        /// The sequence.
        sequence_id: u64,
        /// The size reached.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// More bytes pending over all sequences than the limit.
    #[error("sequence {sequence_id}: {size} bytes pending over all sequences, limit {limit}")]
    TooMuchPending {
        /// The sequence whose fragment went over.
        sequence_id: u64,
        /// The bytes that would be pending.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// Which term of a message a term error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermRole {
    /// The control term.
    Control,
    /// The payload term.
    Payload,
}

impl fmt::Display for TermRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TermRole::Control => "control term",
            TermRole::Payload => "payload term",
        })
    }
}

/// Why a frame could not be received. Each is a reason for OTP to drop the
/// connection.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The header is malformed.
    #[error("distribution header: {0}")]
    Header(#[from] HeaderError),
    /// A fragment does not fit, or a limit was exceeded.
    #[error("fragmented message: {0}")]
    Fragment(#[from] FragmentError),
    /// A term after a header starts with 131 (or, in pass-through frames,
    /// does not).
    #[error("{role} at byte {offset}: {}", if *.header_mode { "starts with 131 after a distribution header" } else { "does not start with 131" })]
    VersionMagic {
        /// Which term.
        role: TermRole,
        /// Where it starts, in the frame (control) or in the payload bytes.
        offset: usize,
        /// Whether the frame had a header (then 131 is wrong).
        header_mode: bool,
    },
    /// A term could not be decoded. Offsets are in the frame for the
    /// control term and in the (reassembled) payload bytes for the payload.
    #[error("{role}: {source}")]
    Term {
        /// Which term.
        role: TermRole,
        /// The decoder's error.
        source: DecodeError,
    },
    /// The control term is not a valid control message, or the payload is
    /// missing.
    #[error("{0}")]
    Control(#[from] ControlError),
    /// Bytes after the last term of the message.
    #[error("{op}: {count} bytes after the end of the message")]
    TrailingBytes {
        /// The operation.
        op: ControlOp,
        /// How many bytes.
        count: usize,
    },
}

fn header_err(offset: usize, kind: HeaderErrorKind) -> HeaderError {
    HeaderError { offset, kind }
}

// ---------------------------------------------------------------------------
// Receiving: the atom cache and the header

/// The receiving atom cache of one connection: 2048 slots, filled by the
/// new entries of the headers that arrive.
#[derive(Clone)]
pub struct AtomCacheIn {
    slots: Vec<Option<Atom>>,
}

impl Default for AtomCacheIn {
    fn default() -> Self {
        AtomCacheIn::new()
    }
}

impl fmt::Debug for AtomCacheIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomCacheIn")
            .field("filled", &self.slots.iter().filter(|s| s.is_some()).count())
            .finish()
    }
}

impl AtomCacheIn {
    /// An empty cache.
    pub fn new() -> AtomCacheIn {
        AtomCacheIn {
            slots: vec![None; ATOM_CACHE_SIZE],
        }
    }

    /// The atom in `slot` (0..2048), if a header has filled it.
    pub fn get(&self, slot: usize) -> Option<Atom> {
        self.slots.get(slot).copied().flatten()
    }

    /// Empties every slot (a new connection starts empty).
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
    }

    /// Reads the atom cache section of a header — `N`, the flags and the
    /// references — starting at `pos` of `frame` (just after `131, 68`, or
    /// after the ids of a `131, 69`). New entries update the cache; the
    /// result is the frame's atoms in reference order (what
    /// [`Decoder::atom_cache`] takes) and the offset just past the section.
    ///
    /// # Errors
    /// A [`HeaderError`] for a short frame, a reference to an empty slot,
    /// or an atom that is not UTF-8 or cannot be created. New entries read
    /// before the error stay in the cache (the connection is lost anyway).
    pub fn read_refs(
        &mut self,
        frame: &[u8],
        pos: usize,
    ) -> Result<(Vec<Atom>, usize), HeaderError> {
        self.read_refs_within(frame, pos, &AtomBudget::unlimited())
    }

    /// [`read_refs`](Self::read_refs), charging the atoms it creates (new
    /// to the atom table) to `budget`.
    ///
    /// # Errors
    /// As [`read_refs`](Self::read_refs); [`AtomError::BudgetSpent`] (in
    /// [`HeaderErrorKind::Atom`]) when the budget is spent.
    pub fn read_refs_within(
        &mut self,
        frame: &[u8],
        pos: usize,
        budget: &AtomBudget,
    ) -> Result<(Vec<Atom>, usize), HeaderError> {
        let mut atoms = Vec::new();
        let end = self.read_refs_into(frame, pos, budget, &mut atoms)?;
        Ok((atoms, end))
    }

    /// [`read_refs_within`](Self::read_refs_within) into `atoms` (emptied
    /// first), so that a connection reuses one vector for every frame;
    /// returns the offset just past the section.
    fn read_refs_into(
        &mut self,
        frame: &[u8],
        pos: usize,
        budget: &AtomBudget,
        atoms: &mut Vec<Atom>,
    ) -> Result<usize, HeaderError> {
        atoms.clear();
        let mut r = HeaderReader { frame, pos };
        let n = usize::from(r.u8()?);
        if n == 0 {
            return Ok(r.pos);
        }
        let flags = r.take(n / 2 + 1)?;
        let nibble = |i: usize| -> u8 {
            let byte = flags.get(i / 2).copied().unwrap_or(0);
            if i % 2 == 0 {
                byte & 0x0f
            } else {
                byte >> 4
            }
        };
        let long_atoms = nibble(n) & LONG_ATOMS != 0;
        atoms.reserve(n);
        for i in 0..n {
            let flag = nibble(i);
            let at = r.pos;
            let slot = u16::from(flag & SEGMENT_MASK) * 256 + u16::from(r.u8()?);
            let atom = if flag & NEW_CACHE_ENTRY != 0 {
                let len = if long_atoms {
                    usize::from(r.u16()?)
                } else {
                    usize::from(r.u8()?)
                };
                let text = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| header_err(at, HeaderErrorKind::InvalidUtf8 { slot }))?;
                let atom = Atom::try_new_within(text, budget)
                    .map_err(|source| header_err(at, HeaderErrorKind::Atom { slot, source }))?;
                if let Some(s) = self.slots.get_mut(usize::from(slot)) {
                    *s = Some(atom);
                }
                atom
            } else {
                self.get(usize::from(slot))
                    .ok_or_else(|| header_err(at, HeaderErrorKind::EmptySlot { slot }))?
            };
            atoms.push(atom);
        }
        Ok(r.pos)
    }
}

struct HeaderReader<'a> {
    frame: &'a [u8],
    pos: usize,
}

impl<'a> HeaderReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HeaderError> {
        let end = self.pos.saturating_add(n);
        match self.frame.get(self.pos..end) {
            Some(s) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(header_err(
                self.frame.len(),
                HeaderErrorKind::UnexpectedEnd {
                    needed: end - self.frame.len().max(self.pos),
                },
            )),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], HeaderError> {
        let at = self.pos;
        self.take(N)?
            .try_into()
            .map_err(|_| header_err(at, HeaderErrorKind::UnexpectedEnd { needed: N }))
    }

    fn u8(&mut self) -> Result<u8, HeaderError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, HeaderError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, HeaderError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// What the header of a frame says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameHeader {
    /// A whole message (`131, 68`, or a pass-through frame), with the
    /// atoms its terms refer to.
    Whole {
        /// The header's atoms, in reference order.
        atoms: Vec<Atom>,
    },
    /// The first fragment of a message (`131, 69`).
    First {
        /// The sequence.
        sequence_id: u64,
        /// The number of fragments in the message.
        fragment_id: u64,
        /// The header's atoms, for the whole message.
        atoms: Vec<Atom>,
    },
    /// A later fragment (`131, 70`).
    Continuation {
        /// The sequence.
        sequence_id: u64,
        /// The number of fragments still to come, this one included.
        fragment_id: u64,
    },
}

/// Reads the header of `frame` (a packet's payload, not empty) under
/// `framing`, updating `cache`; returns it and the offset of the first
/// term (the control term, or payload bytes for a continuation).
///
/// # Errors
/// A [`HeaderError`] for a short or malformed header.
pub fn read_frame_header(
    frame: &[u8],
    framing: Framing,
    cache: &mut AtomCacheIn,
) -> Result<(FrameHeader, usize), HeaderError> {
    read_frame_header_within(frame, framing, cache, &AtomBudget::unlimited())
}

/// [`read_frame_header`], charging the atoms the header creates (new to
/// the atom table) to `budget`.
///
/// # Errors
/// As [`read_frame_header`]; [`AtomError::BudgetSpent`] (in
/// [`HeaderErrorKind::Atom`]) when the budget is spent.
pub fn read_frame_header_within(
    frame: &[u8],
    framing: Framing,
    cache: &mut AtomCacheIn,
    budget: &AtomBudget,
) -> Result<(FrameHeader, usize), HeaderError> {
    let mut atoms = Vec::new();
    let (kind, pos) = read_header_into(frame, framing, cache, budget, &mut atoms)?;
    let header = match kind {
        HeaderKind::Whole => FrameHeader::Whole { atoms },
        HeaderKind::First {
            sequence_id,
            fragment_id,
        } => FrameHeader::First {
            sequence_id,
            fragment_id,
            atoms,
        },
        HeaderKind::Continuation {
            sequence_id,
            fragment_id,
        } => FrameHeader::Continuation {
            sequence_id,
            fragment_id,
        },
    };
    Ok((header, pos))
}

/// A [`FrameHeader`] without its atoms.
enum HeaderKind {
    Whole,
    First { sequence_id: u64, fragment_id: u64 },
    Continuation { sequence_id: u64, fragment_id: u64 },
}

/// [`read_frame_header_within`], the atoms into `atoms` (emptied first).
fn read_header_into(
    frame: &[u8],
    framing: Framing,
    cache: &mut AtomCacheIn,
    budget: &AtomBudget,
    atoms: &mut Vec<Atom>,
) -> Result<(HeaderKind, usize), HeaderError> {
    atoms.clear();
    let mut r = HeaderReader { frame, pos: 0 };
    if !framing.has_header() {
        // OTP skips the pass-through byte without looking at it.
        r.u8()?;
        return Ok((HeaderKind::Whole, r.pos));
    }
    match r.u8()? {
        VERSION_MAGIC => {}
        other => return Err(header_err(0, HeaderErrorKind::BadVersion(other))),
    }
    let tag = FrameTag(r.u8()?);
    match tag {
        FrameTag::DIST_HEADER => {
            let pos = cache.read_refs_into(frame, r.pos, budget, atoms)?;
            Ok((HeaderKind::Whole, pos))
        }
        FrameTag::DIST_FRAG_HEADER | FrameTag::DIST_FRAG_CONT => {
            if !framing.has_fragments() {
                return Err(header_err(1, HeaderErrorKind::FragmentsNotNegotiated(tag)));
            }
            let sequence_id = r.u64()?;
            let fragment_id = r.u64()?;
            if tag == FrameTag::DIST_FRAG_CONT {
                return Ok((
                    HeaderKind::Continuation {
                        sequence_id,
                        fragment_id,
                    },
                    r.pos,
                ));
            }
            let pos = cache.read_refs_into(frame, r.pos, budget, atoms)?;
            Ok((
                HeaderKind::First {
                    sequence_id,
                    fragment_id,
                },
                pos,
            ))
        }
        FrameTag(other) => Err(header_err(1, HeaderErrorKind::UnknownTag(other))),
    }
}

// ---------------------------------------------------------------------------
// Reassembly

/// Bounds on what a peer can make the [`Reassembler`] hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// The most sequences pending at once.
    pub max_pending: usize,
    /// The largest reassembled message, in bytes (after the control term).
    pub max_message_size: usize,
    /// The most bytes pending over all sequences.
    pub max_buffered: usize,
}

impl Default for ReassemblyLimits {
    /// 1024 sequences, 128 MiB per message, 512 MiB in all.
    fn default() -> Self {
        ReassemblyLimits {
            max_pending: 1024,
            max_message_size: 128 << 20,
            max_buffered: 512 << 20,
        }
    }
}

/// How many buffers a [`Reassembler`] keeps for joining messages: the one
/// a message was last joined into and the one before, which its receiver
/// has more likely dropped by the time the next message begins.
const SPARE_BUFFERS: usize = 2;

/// Collects fragmented messages, keyed by SequenceId.
///
/// `T` is what the first fragment says about the whole message (for
/// [`DistDecoder`], its control message and header atoms); it comes back
/// with the joined bytes when the last fragment arrives. Each fragment is
/// copied into the message's buffer as it arrives (a message in one
/// fragment is not copied), so the memory it was read into is free again
/// at once. The buffer is sized from the first fragment: the number of
/// fragments times its size (OTP's fragments and erldist's are all one
/// size but the last), within the limits.
///
/// The buffers the last two messages were joined into are kept, and one
/// is used again for a later message once every part of its own has been
/// dropped, if it is the right size (at most twice the message). A fresh
/// buffer of many megabytes costs more than the copy itself: the
/// allocator maps it anew and the kernel clears each page as it is first
/// written. Kept buffers are given back by
/// [`release_idle`](Self::release_idle).
#[derive(Debug)]
pub struct Reassembler<T> {
    pending: HashMap<u64, Pending<T>>,
    buffered: usize,
    /// The room the pending sequences were given at first, in all.
    reserved: usize,
    limits: ReassemblyLimits,
    /// The last messages joined (shared with whoever took them), whose
    /// buffers may be used again, with the room of each buffer
    /// ([`SPARE_BUFFERS`] at most).
    spare: Vec<(Bytes, usize)>,
    /// Whether a message was joined since the last `release_idle`.
    joined: bool,
}

#[derive(Debug)]
struct Pending<T> {
    state: T,
    /// The fragments so far, joined.
    joined: BytesMut,
    /// The room `joined` was given at first.
    reserved: usize,
    next: u64,
}

impl<T> Default for Reassembler<T> {
    fn default() -> Self {
        Reassembler::new(ReassemblyLimits::default())
    }
}

impl<T> Reassembler<T> {
    /// An empty reassembler with these limits.
    pub fn new(limits: ReassemblyLimits) -> Reassembler<T> {
        Reassembler {
            pending: HashMap::new(),
            buffered: 0,
            reserved: 0,
            limits,
            spare: Vec::new(),
            joined: false,
        }
    }

    /// The limits.
    pub fn limits(&self) -> ReassemblyLimits {
        self.limits
    }

    /// How many sequences are pending.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How many bytes the pending sequences hold.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Drops every pending sequence, and the buffers kept for joining.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.buffered = 0;
        self.reserved = 0;
        self.spare.clear();
    }

    /// Gives back the buffers kept for joining messages unless a message
    /// was joined since the last call; returns whether it gave any back.
    /// A connection calls it at intervals (the node at every tick), so
    /// that the buffers outlive the last fragmented message by at most
    /// two intervals.
    pub fn release_idle(&mut self) -> bool {
        if std::mem::take(&mut self.joined) || self.spare.is_empty() {
            return false;
        }
        self.spare.clear();
        true
    }

    /// How many buffers are kept for joining messages (at most 2).
    pub fn kept_buffers(&self) -> usize {
        self.spare.len()
    }

    /// Takes the first fragment of a sequence (`fragment_id` = the number
    /// of fragments). Returns the message if it is complete (FragmentId 1).
    ///
    /// # Errors
    /// FragmentId 0, a sequence already pending, or a limit exceeded.
    pub fn first(
        &mut self,
        sequence_id: u64,
        fragment_id: u64,
        state: T,
        chunk: Bytes,
    ) -> Result<Option<(T, Bytes)>, FragmentError> {
        if fragment_id == 0 {
            return Err(FragmentError::ZeroFragmentId { sequence_id });
        }
        if self.pending.contains_key(&sequence_id) {
            return Err(FragmentError::DuplicateSequence { sequence_id });
        }
        if fragment_id == 1 {
            // Complete at once: nothing is buffered, only the size counts.
            if chunk.len() > self.limits.max_message_size {
                return Err(FragmentError::TooLarge {
                    sequence_id,
                    size: chunk.len(),
                    limit: self.limits.max_message_size,
                });
            }
            return Ok(Some((state, chunk)));
        }
        self.check_size(sequence_id, 0, chunk.len())?;
        if self.pending.len() >= self.limits.max_pending {
            return Err(FragmentError::TooManyPending {
                sequence_id,
                limit: self.limits.max_pending,
            });
        }
        self.buffered += chunk.len();
        // Room for the whole message if every fragment is this size, but
        // no more than the limits leave: the room given to all pending
        // sequences stays within the bound on the bytes they may hold.
        let room = self
            .limits
            .max_message_size
            .min(self.limits.max_buffered.saturating_sub(self.reserved));
        let size = usize::try_from(fragment_id)
            .unwrap_or(usize::MAX)
            .saturating_mul(chunk.len())
            .min(room)
            .max(chunk.len());
        let mut joined = self.buffer(size);
        joined.extend_from_slice(&chunk);
        let reserved = joined.capacity();
        self.reserved = self.reserved.saturating_add(reserved);
        self.pending.insert(
            sequence_id,
            Pending {
                state,
                joined,
                reserved,
                next: fragment_id - 1,
            },
        );
        Ok(None)
    }

    /// Takes a later fragment. Returns the message, its fragments joined,
    /// when this was the last one (FragmentId 1).
    ///
    /// # Errors
    /// An unknown sequence, a FragmentId out of order, or a limit
    /// exceeded; the sequence is dropped.
    pub fn continuation(
        &mut self,
        sequence_id: u64,
        fragment_id: u64,
        chunk: Bytes,
    ) -> Result<Option<(T, Bytes)>, FragmentError> {
        let Some(p) = self.pending.get(&sequence_id) else {
            return Err(FragmentError::UnknownSequence {
                sequence_id,
                fragment_id,
            });
        };
        let (expected, size) = (p.next, p.joined.len());
        let checked = if fragment_id != expected {
            Err(FragmentError::OutOfOrder {
                sequence_id,
                expected,
                found: fragment_id,
            })
        } else {
            self.check_size(sequence_id, size, chunk.len())
        };
        if let Err(e) = checked {
            self.remove(sequence_id);
            return Err(e);
        }
        self.buffered += chunk.len();
        if let Some(p) = self.pending.get_mut(&sequence_id) {
            p.next -= 1;
            p.joined.extend_from_slice(&chunk);
        }
        if fragment_id > 1 {
            return Ok(None);
        }
        let Some(p) = self.remove(sequence_id) else {
            return Ok(None);
        };
        let room = p.joined.capacity();
        let joined = p.joined.freeze();
        if self.spare.len() < SPARE_BUFFERS && room <= self.limits.max_message_size {
            self.spare.push((joined.clone(), room));
        }
        self.joined = true;
        Ok(Some((p.state, joined)))
    }

    /// An empty buffer for a message of about `size` bytes: a kept one
    /// whose message has been dropped and that is the right size, else a
    /// new one. Kept buffers found free but of the wrong size are given
    /// back.
    fn buffer(&mut self, size: usize) -> BytesMut {
        let fits = |room: usize| room >= size && room / 2 <= size;
        self.spare.retain(|(b, room)| !b.is_unique() || fits(*room));
        let free = self.spare.iter().position(|(b, _)| b.is_unique());
        let taken = free.map(|i| self.spare.swap_remove(i).0.try_into_mut());
        match taken {
            Some(Ok(mut b)) => {
                b.clear();
                b
            }
            _ => BytesMut::with_capacity(size),
        }
    }

    fn check_size(&self, sequence_id: u64, have: usize, more: usize) -> Result<(), FragmentError> {
        let size = have.saturating_add(more);
        if size > self.limits.max_message_size {
            return Err(FragmentError::TooLarge {
                sequence_id,
                size,
                limit: self.limits.max_message_size,
            });
        }
        let all = self.buffered.saturating_add(more);
        if all > self.limits.max_buffered {
            return Err(FragmentError::TooMuchPending {
                sequence_id,
                size: all,
                limit: self.limits.max_buffered,
            });
        }
        Ok(())
    }

    fn remove(&mut self, sequence_id: u64) -> Option<Pending<T>> {
        let p = self.pending.remove(&sequence_id)?;
        self.buffered -= p.joined.len();
        self.reserved = self.reserved.saturating_sub(p.reserved);
        Some(p)
    }
}

// ---------------------------------------------------------------------------
// Receiving: whole frames

/// The default bound on new atoms one connection may create
/// ([`DecoderLimits::max_new_atoms`]): 65,536, a sixteenth of the atom
/// table ([`ATOM_TABLE_LIMIT`](crate::term::ATOM_TABLE_LIMIT)).
pub const DEFAULT_MAX_NEW_ATOMS: usize = 65_536;

/// Everything a peer's frames are held to once they are cut out of the
/// stream (the frame size itself is the driver's
/// [`max_frame_size`](crate::connection::driver::LocalNodeConfig::max_frame_size)).
/// Exceeding one is a [`FrameError`]: the connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Fragments: how many messages may be pending, how large one may grow,
    /// how many bytes all may hold.
    pub reassembly: ReassemblyLimits,
    /// Term nesting depth ([`DecodeOptions::max_depth`], default 4096).
    pub max_depth: usize,
    /// How many atoms not yet in the atom table one connection may create
    /// over its life; [`DEFAULT_MAX_NEW_ATOMS`]. Atoms are interned for
    /// the life of the process in a table shared by every connection
    /// ([`ATOM_TABLE_LIMIT`](crate::term::ATOM_TABLE_LIMIT)); OTP has no
    /// per-peer bound, only the table's.
    pub max_new_atoms: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            reassembly: ReassemblyLimits::default(),
            max_depth: DecodeOptions::default().max_depth,
            max_new_atoms: DEFAULT_MAX_NEW_ATOMS,
        }
    }
}

/// The receiving side of a connection: reads frames into messages, keeping
/// the atom cache and the pending fragments.
#[derive(Debug)]
pub struct DistDecoder {
    framing: Framing,
    cache: AtomCacheIn,
    fragments: Reassembler<(ControlMessage, Vec<Atom>)>,
    options: DecodeOptions,
    atoms: AtomBudget,
    /// The current frame's header atoms (one vector for every frame).
    frame_atoms: Vec<Atom>,
}

impl DistDecoder {
    /// A decoder for a connection with these negotiated flags.
    pub fn new(flags: DistFlags) -> DistDecoder {
        DistDecoder::with_framing(Framing::from_flags(flags))
    }

    /// A decoder for frames of this form.
    pub fn with_framing(framing: Framing) -> DistDecoder {
        DistDecoder {
            framing,
            cache: AtomCacheIn::new(),
            fragments: Reassembler::default(),
            options: DecodeOptions::default(),
            atoms: AtomBudget::new(DEFAULT_MAX_NEW_ATOMS),
            frame_atoms: Vec::new(),
        }
    }

    /// Sets every limit at once.
    pub fn with_limits(self, limits: DecoderLimits) -> DistDecoder {
        let options = DecodeOptions {
            max_depth: limits.max_depth,
            ..self.options
        };
        self.limits(limits.reassembly)
            .decode_options(options)
            .max_new_atoms(limits.max_new_atoms)
    }

    /// Sets how many atoms not yet in the atom table this connection may
    /// create ([`DEFAULT_MAX_NEW_ATOMS`]); the count starts again at 0.
    pub fn max_new_atoms(mut self, limit: usize) -> DistDecoder {
        self.atoms = AtomBudget::new(limit);
        self
    }

    /// How many new atoms this connection has created so far.
    pub fn new_atoms(&self) -> usize {
        self.atoms.used()
    }

    /// Sets the reassembly limits.
    pub fn limits(mut self, limits: ReassemblyLimits) -> DistDecoder {
        self.fragments = Reassembler::new(limits);
        self
    }

    /// Sets the term decoding limits.
    pub fn decode_options(mut self, options: DecodeOptions) -> DistDecoder {
        self.options = options;
        self
    }

    /// The framing.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The atom cache.
    pub fn atom_cache(&self) -> &AtomCacheIn {
        &self.cache
    }

    /// The fragmented messages pending.
    pub fn pending_fragments(&self) -> usize {
        self.fragments.pending()
    }

    /// Gives back the buffers kept for joining fragmented messages unless
    /// one was joined since the last call
    /// ([`Reassembler::release_idle`]); call it at intervals, as the node
    /// does at every tick. Returns whether it gave any back.
    pub fn release_idle(&mut self) -> bool {
        self.fragments.release_idle()
    }

    /// Reads one frame (a packet's payload, without its length). Returns
    /// the message it completes, or `None` for a tick (an empty frame) or
    /// a fragment that leaves its message incomplete.
    ///
    /// # Errors
    /// A [`FrameError`]; after one, the connection should be closed (as
    /// OTP does), since the atom cache may be out of step.
    pub fn decode_frame(&mut self, frame: Bytes) -> Result<Option<DistMessage>, FrameError> {
        let len = frame.len();
        self.decode_frame_in(&frame, 0, len)
    }

    /// [`decode_frame`](Self::decode_frame) for the frame at
    /// `start..end` of `buf` (a run of frames read together), without a
    /// buffer of its own: nothing outside the frame is read, and offsets
    /// in errors count from its start.
    ///
    /// # Errors
    /// As [`decode_frame`](Self::decode_frame).
    pub fn decode_frame_in(
        &mut self,
        buf: &Bytes,
        start: usize,
        end: usize,
    ) -> Result<Option<DistMessage>, FrameError> {
        self.in_frame(buf, start, end, |d, frame, atoms| {
            d.decode_with(frame, atoms)
        })
    }

    /// Runs `read` on the frame `buf[start..end]` (nothing for an empty
    /// one) with the decoder's vector for the frame's atoms.
    fn in_frame<T>(
        &mut self,
        buf: &Bytes,
        start: usize,
        end: usize,
        read: impl FnOnce(&mut Self, In<'_>, &mut Vec<Atom>) -> Result<Option<T>, FrameError>,
    ) -> Result<Option<T>, FrameError> {
        let end = end.min(buf.len());
        if start >= end {
            return Ok(None);
        }
        let mut atoms = std::mem::take(&mut self.frame_atoms);
        let result = read(self, In { buf, start, end }, &mut atoms);
        self.frame_atoms = atoms;
        result
    }

    /// [`decode_frame_in`](Self::decode_frame_in) for the node: a
    /// `SEND_SENDER` as peers with the atom cache write it (most of what
    /// processes send) comes as [`Incoming::Send`], read without making a
    /// [`ControlMessage`]; anything else as the general path reads it, and
    /// refused alike.
    pub(crate) fn decode_incoming_in(
        &mut self,
        buf: &Bytes,
        start: usize,
        end: usize,
    ) -> Result<Option<Incoming>, FrameError> {
        self.in_frame(buf, start, end, |d, frame, atoms| {
            let (header, pos) = d.header(frame, atoms)?;
            if let (HeaderKind::Whole, true) = (&header, d.framing.has_header()) {
                if let Some((from, to, at)) = send_sender_at(frame, pos, atoms) {
                    let payload = d.payload(ControlOp::SEND_SENDER, atoms, frame, at)?;
                    return Ok(Some(Incoming::Send { from, to, payload }));
                }
            }
            let m = d.after_header(frame, header, pos, atoms)?;
            Ok(m.map(|m| Incoming::Other(Box::new(m))))
        })
    }

    /// Reads the frame's header: its kind, and where the control term
    /// starts (an offset into the buffer).
    fn header(
        &mut self,
        frame: In<'_>,
        atoms: &mut Vec<Atom>,
    ) -> Result<(HeaderKind, usize), FrameError> {
        let (header, pos) = read_header_into(
            frame.bytes(),
            self.framing,
            &mut self.cache,
            &self.atoms,
            atoms,
        )?;
        Ok((header, frame.start + pos))
    }

    fn decode_with(
        &mut self,
        frame: In<'_>,
        atoms: &mut Vec<Atom>,
    ) -> Result<Option<DistMessage>, FrameError> {
        let (header, pos) = self.header(frame, atoms)?;
        self.after_header(frame, header, pos, atoms)
    }

    /// The rest of a frame whose header is read.
    fn after_header(
        &mut self,
        frame: In<'_>,
        header: HeaderKind,
        pos: usize,
        atoms: &[Atom],
    ) -> Result<Option<DistMessage>, FrameError> {
        let header_mode = self.framing.has_header();
        match header {
            HeaderKind::Whole | HeaderKind::First { sequence_id: 0, .. } => {
                let (control, end) = self.control(frame, pos, atoms)?;
                self.finish(control, atoms, frame, end).map(Some)
            }
            HeaderKind::First {
                sequence_id,
                fragment_id,
            } => {
                // OTP checks the control term when the first fragment comes.
                let (control, end) = self.control(frame, pos, atoms)?;
                let rest = frame.buf.slice(end..frame.end);
                match self.fragments.first(
                    sequence_id,
                    fragment_id,
                    (control, atoms.to_vec()),
                    rest,
                )? {
                    Some(((control, atoms), bytes)) => {
                        self.finish(control, &atoms, In::whole(&bytes), 0).map(Some)
                    }
                    None => Ok(None),
                }
            }
            HeaderKind::Continuation {
                sequence_id,
                fragment_id,
            } => {
                debug_assert!(header_mode);
                let chunk = frame.buf.slice(pos..frame.end);
                match self
                    .fragments
                    .continuation(sequence_id, fragment_id, chunk)?
                {
                    Some(((control, atoms), bytes)) => {
                        self.finish(control, &atoms, In::whole(&bytes), 0).map(Some)
                    }
                    None => Ok(None),
                }
            }
        }
    }

    /// Decodes the control term at `pos`.
    fn control(
        &self,
        frame: In<'_>,
        pos: usize,
        atoms: &[Atom],
    ) -> Result<(ControlMessage, usize), FrameError> {
        // A small tuple, as every control message is: its elements are
        // read onto the stack, not into a tuple of their own.
        if let (true, Some(&[SMALL_TUPLE_EXT, arity])) =
            (self.framing.has_header(), frame.get(pos..pos + 2))
        {
            let arity = usize::from(arity);
            if (1..=MAX_CONTROL_ELEMENTS).contains(&arity) {
                let decoder = Decoder::new()
                    .options(self.options)
                    .atom_budget(&self.atoms)
                    .atom_cache(atoms);
                let element = |at| {
                    decoder
                        .decode_body_within(frame.buf, at, frame.end)
                        .map_err(|source| frame.term_err(TermRole::Control, source))
                };
                // What processes send most, SEND_SENDER: two pids, read
                // straight into the message.
                if arity == 3
                    && frame.get(pos + 2..pos + 4)
                        == Some(&[SMALL_INTEGER_EXT, ControlOp::SEND_SENDER.0])
                {
                    if let Some((from, to, end)) = send_sender_at(frame, pos, atoms) {
                        return Ok((ControlMessage::SendSender { from, to }, end));
                    }
                    if let Ok((Term::Pid(from), at)) = element(pos + 4) {
                        if let Ok((Term::Pid(to), end)) = element(at) {
                            return Ok((ControlMessage::SendSender { from, to }, end));
                        }
                    }
                    // Anything else is read (and refused) the general way.
                }
                let mut elems: [Term; MAX_CONTROL_ELEMENTS] = std::array::from_fn(|_| Term::NIL);
                let mut at = pos + 2;
                for e in elems.iter_mut().take(arity) {
                    let (t, end) = element(at)?;
                    *e = t;
                    at = end;
                }
                let control = ControlMessage::from_elements(elems.into_iter().take(arity))?;
                return Ok((control, at));
            }
        }
        let (term, end) = self.term(frame, pos, atoms, TermRole::Control)?;
        Ok((ControlMessage::from_term(term)?, end))
    }

    /// Decodes the payload (if the operation has one) at `pos` of the
    /// frame and checks nothing follows.
    fn finish(
        &self,
        control: ControlMessage,
        atoms: &[Atom],
        frame: In<'_>,
        pos: usize,
    ) -> Result<DistMessage, FrameError> {
        let op = control.op();
        if control.has_payload() {
            let payload = self.payload(op, atoms, frame, pos)?;
            return Ok(DistMessage::new(control, Some(payload))?);
        }
        if pos < frame.end {
            return Err(FrameError::TrailingBytes {
                op,
                count: frame.end - pos,
            });
        }
        Ok(DistMessage::new(control, None)?)
    }

    /// The payload of an `op` message at `pos`, the last thing in the
    /// frame.
    fn payload(
        &self,
        op: ControlOp,
        atoms: &[Atom],
        frame: In<'_>,
        pos: usize,
    ) -> Result<Term, FrameError> {
        if pos >= frame.end {
            return Err(ControlError::MissingPayload { op }.into());
        }
        let (t, end) = self.term(frame, pos, atoms, TermRole::Payload)?;
        if end < frame.end {
            return Err(FrameError::TrailingBytes {
                op,
                count: frame.end - end,
            });
        }
        Ok(t)
    }

    fn term(
        &self,
        frame: In<'_>,
        pos: usize,
        atoms: &[Atom],
        role: TermRole,
    ) -> Result<(Term, usize), FrameError> {
        let header_mode = self.framing.has_header();
        let first = frame.get(pos..pos + 1).and_then(|b| b.first()).copied();
        let start = if header_mode {
            if first == Some(VERSION_MAGIC) {
                return Err(FrameError::VersionMagic {
                    role,
                    offset: pos - frame.start,
                    header_mode,
                });
            }
            pos
        } else {
            if first != Some(VERSION_MAGIC) {
                return Err(FrameError::VersionMagic {
                    role,
                    offset: pos - frame.start,
                    header_mode,
                });
            }
            pos + 1
        };
        Decoder::new()
            .options(self.options)
            .atom_budget(&self.atoms)
            .atom_cache(atoms)
            .decode_body_within(frame.buf, start, frame.end)
            .map_err(|source| frame.term_err(role, source))
    }
}

/// `NEW_PID_EXT`.
const NEW_PID_EXT: u8 = 88;

/// `ATOM_CACHE_REF`.
const ATOM_CACHE_REF: u8 = 82;

/// The length of a `NEW_PID_EXT` whose node is an `ATOM_CACHE_REF`.
const PID_REF_LEN: usize = 15;

/// A pid as peers with the atom cache write them, `NEW_PID_EXT` with its
/// node an `ATOM_CACHE_REF` of this frame, read without decoder state;
/// `None` for anything else (which the decoder then reads, or refuses).
#[inline]
fn cached_pid(bytes: Option<&[u8]>, atoms: &[Atom]) -> Option<Pid> {
    cached_pid_with(bytes, |ix| atoms.get(ix).copied())
}

/// [`cached_pid`], with the frame's atoms given by `atom`.
#[inline]
fn cached_pid_with(bytes: Option<&[u8]>, atom: impl Fn(usize) -> Option<Atom>) -> Option<Pid> {
    let &[NEW_PID_EXT, ATOM_CACHE_REF, ix, i0, i1, i2, i3, s0, s1, s2, s3, c0, c1, c2, c3] = bytes?
    else {
        return None;
    };
    Some(Pid {
        node: atom(usize::from(ix))?,
        id: u32::from_be_bytes([i0, i1, i2, i3]),
        serial: u32::from_be_bytes([s0, s1, s2, s3]),
        creation: u32::from_be_bytes([c0, c1, c2, c3]),
    })
}

/// Writes `msg`'s control tuple and payload (no version bytes) at the end
/// of `body`: atoms as references where `atoms` gives one (all as text
/// without), and binaries of [`crate::term`]'s sharing size left out, each
/// added to `shared` with its offset in `body`. Returns the control
/// tuple's length, shared bytes included.
fn write_message(
    encoder: Encoder,
    control: &ControlMessage,
    payload: Option<&Term>,
    mut atoms: Option<&mut FrameAtoms<'_>>,
    body: &mut BytesMut,
    shared: &mut Vec<(usize, Bytes)>,
) -> Result<usize, EncodeError> {
    let mut write = |t: &Term,
                     body: &mut BytesMut,
                     atoms: &mut Option<&mut FrameAtoms<'_>>|
     -> Result<usize, EncodeError> {
        let base = body.len();
        let mut refs = |a| atoms.as_mut().and_then(|f| f.index(a));
        let atom_ref: Option<&mut dyn FnMut(Atom) -> Option<u8>> = Some(&mut refs);
        let taken = encoder.encode_body_sharing(t, body, atom_ref)?;
        let bytes = taken.iter().map(|(_, b)| b.len()).sum();
        shared.extend(taken.into_iter().map(|(at, b)| (base + at, b)));
        Ok(bytes)
    };
    // The control tuple, written element by element: no tuple is made.
    let arity = u8::try_from(op_arity(control.op())).unwrap_or(u8::MAX);
    body.put_slice(&[SMALL_TUPLE_EXT, arity]);
    let mut control_shared = 0;
    control.each_element(|e| {
        match e {
            // What every control message has, written straight.
            Term::Int(i @ 0..=255) => body.put_slice(&[SMALL_INTEGER_EXT, i as u8]),
            Term::Pid(p) => match atoms.as_mut().and_then(|f| f.index(p.node)) {
                Some(ix) => put_cached_pid(body, &p, ix),
                None => control_shared += write(&e, body, &mut atoms)?,
            },
            _ => control_shared += write(&e, body, &mut atoms)?,
        }
        Ok(())
    })?;
    let control_len = body.len() + control_shared;
    if let Some(p) = payload {
        write(p, body, &mut atoms)?;
    }
    Ok(control_len)
}

/// A message the node reads from a frame ([`DistDecoder::decode_incoming_in`]).
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A `SEND_SENDER` whose pids are written with cache references.
    Send { from: Pid, to: Pid, payload: Term },
    /// Any other message (boxed, so that the common one stays small).
    Other(Box<DistMessage>),
}

/// A `SEND_SENDER` control tuple at `pos` with both pids written as
/// [`cached_pid`] reads them: the pids and where the payload starts.
#[inline]
fn send_sender_at(frame: In<'_>, pos: usize, atoms: &[Atom]) -> Option<(Pid, Pid, usize)> {
    if frame.get(pos..pos + 4)?
        != [
            SMALL_TUPLE_EXT,
            3,
            SMALL_INTEGER_EXT,
            ControlOp::SEND_SENDER.0,
        ]
    {
        return None;
    }
    let from = cached_pid(frame.get(pos + 4..pos + 4 + PID_REF_LEN), atoms)?;
    let at = pos + 4 + PID_REF_LEN;
    let to = cached_pid(frame.get(at..at + PID_REF_LEN), atoms)?;
    Some((from, to, at + PID_REF_LEN))
}

/// Writes `p` as `NEW_PID_EXT` with its node as `ATOM_CACHE_REF ix`
/// (what [`cached_pid`] reads).
#[inline]
fn put_cached_pid(out: &mut BytesMut, p: &Pid, ix: u8) {
    let (i, s, c) = (
        p.id.to_be_bytes(),
        p.serial.to_be_bytes(),
        p.creation.to_be_bytes(),
    );
    out.put_slice(&[
        NEW_PID_EXT,
        ATOM_CACHE_REF,
        ix,
        i[0],
        i[1],
        i[2],
        i[3],
        s[0],
        s[1],
        s[2],
        s[3],
        c[0],
        c[1],
        c[2],
        c[3],
    ]);
}

/// A frame inside a buffer: `buf[start..end]`. Offsets are into `buf`.
#[derive(Clone, Copy)]
struct In<'a> {
    buf: &'a Bytes,
    start: usize,
    end: usize,
}

impl<'a> In<'a> {
    fn whole(buf: &'a Bytes) -> In<'a> {
        In {
            buf,
            start: 0,
            end: buf.len(),
        }
    }

    /// The frame's bytes.
    fn bytes(&self) -> &'a [u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// The bytes at `range` (offsets into the buffer), if inside the frame.
    fn get(&self, range: std::ops::Range<usize>) -> Option<&'a [u8]> {
        if range.end > self.end {
            return None;
        }
        self.buf.get(range)
    }

    /// A term's decoding error, its offset counted from the frame's start.
    fn term_err(&self, role: TermRole, mut source: DecodeError) -> FrameError {
        source.offset = source.offset.saturating_sub(self.start);
        FrameError::Term { role, source }
    }
}

// ---------------------------------------------------------------------------
// Sending

/// The sending atom cache of one connection: which atom each of the 2048
/// slots holds at the receiver.
///
/// An atom always goes to the same slot ([`AtomCacheOut::slot_of`], a hash
/// of the atom; OTP hashes its atom index, and any choice works since the
/// receiver follows the header).
#[derive(Clone)]
pub struct AtomCacheOut {
    slots: Vec<Option<Atom>>,
}

impl Default for AtomCacheOut {
    fn default() -> Self {
        AtomCacheOut::new()
    }
}

impl fmt::Debug for AtomCacheOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomCacheOut")
            .field("filled", &self.slots.iter().filter(|s| s.is_some()).count())
            .finish()
    }
}

impl AtomCacheOut {
    /// An empty cache (as the receiver's is at the start).
    pub fn new() -> AtomCacheOut {
        AtomCacheOut {
            slots: vec![None; ATOM_CACHE_SIZE],
        }
    }

    /// The slot `atom` goes to: a hash of the atom's identity (not of its
    /// text, which would cost a pass over it per atom written), modulo
    /// 2048. Stable for the life of the process.
    #[inline]
    pub fn slot_of(atom: Atom) -> u16 {
        use std::hash::BuildHasher;
        let h = foldhash::fast::FixedState::with_seed(0x5107_a70b).hash_one(atom);
        (h % ATOM_CACHE_SIZE as u64) as u16
    }

    /// The atom the receiver holds in `slot`, as far as this side knows.
    pub fn get(&self, slot: usize) -> Option<Atom> {
        self.slots.get(slot).copied().flatten()
    }
}

/// Which cache slots the frame being encoded references, kept by the
/// encoder across frames so that a frame costs no allocation or clearing:
/// a mark is valid only when its generation is the current frame's.
#[derive(Debug)]
struct SlotMarks {
    generation: u32,
    /// Per slot: (generation, reference index).
    marks: Vec<(u32, u8)>,
    /// The frame's references: (atom, slot, new entry), in reference
    /// order (kept from frame to frame, so as not to allocate).
    refs: Vec<(Atom, u16, bool)>,
}

impl SlotMarks {
    fn new() -> SlotMarks {
        SlotMarks {
            generation: 0,
            marks: vec![(0, 0); ATOM_CACHE_SIZE],
            refs: Vec::new(),
        }
    }

    /// Forgets every mark: the start of a new frame.
    fn next_frame(&mut self) -> &mut SlotMarks {
        self.refs.clear();
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.fill((0, 0));
            self.generation = 1;
        }
        self
    }

    fn get(&self, slot: u16) -> Option<u8> {
        match self.marks.get(usize::from(slot)) {
            Some(&(g, ix)) if g == self.generation => Some(ix),
            _ => None,
        }
    }

    fn set(&mut self, slot: u16, ix: u8) {
        if let Some(m) = self.marks.get_mut(usize::from(slot)) {
            *m = (self.generation, ix);
        }
    }
}

/// The atom cache references of one frame being encoded (OTP's
/// `ErtsAtomCacheMap`).
struct FrameAtoms<'c> {
    cache: Option<&'c AtomCacheOut>,
    /// The marks by slot and the references, in reference order.
    by_slot: &'c mut SlotMarks,
    /// The most references the frame may have.
    max: usize,
}

impl<'c> FrameAtoms<'c> {
    fn new(cache: Option<&'c AtomCacheOut>, marks: &'c mut SlotMarks) -> FrameAtoms<'c> {
        FrameAtoms {
            cache,
            by_slot: marks.next_frame(),
            max: MAX_ATOM_CACHE_REFS,
        }
    }

    /// The reference index for `atom`, adding it if there is room; `None`
    /// when it must be written inline (its slot is taken by another atom
    /// in this frame, the frame has 255 references, or the atom is too
    /// long to encode).
    fn index(&mut self, atom: Atom) -> Option<u8> {
        let slot = AtomCacheOut::slot_of(atom);
        if let Some(ix) = self.by_slot.get(slot) {
            let (held, _, _) = self.by_slot.refs.get(usize::from(ix))?;
            return (*held == atom).then_some(ix);
        }
        if self.by_slot.refs.len() >= self.max {
            return None;
        }
        let s = atom.as_str();
        if s.len() > MAX_ATOM_CHARS && s.chars().count() > MAX_ATOM_CHARS {
            return None;
        }
        let ix = u8::try_from(self.by_slot.refs.len()).ok()?;
        let new = self.cache.and_then(|c| c.get(usize::from(slot))) != Some(atom);
        self.by_slot.refs.push((atom, slot, new));
        self.by_slot.set(slot, ix);
        Some(ix)
    }

    /// Writes `N, Flags, Refs`.
    fn write_header(&self, out: &mut BytesMut) {
        let n = self.by_slot.refs.len();
        out.put_u8(n as u8);
        if n == 0 {
            return;
        }
        let long = self
            .by_slot
            .refs
            .iter()
            .any(|(a, _, new)| *new && a.as_str().len() > 255);
        // At most 255 references: 128 bytes of flags.
        let mut flags = [0u8; MAX_ATOM_CACHE_REFS / 2 + 1];
        let mut set = |i: usize, nibble: u8| {
            if let Some(b) = flags.get_mut(i / 2) {
                *b |= if i % 2 == 0 { nibble } else { nibble << 4 };
            }
        };
        for (i, (_, slot, new)) in self.by_slot.refs.iter().enumerate() {
            let seg = (slot >> 8) as u8 & SEGMENT_MASK;
            set(i, seg | if *new { NEW_CACHE_ENTRY } else { 0 });
        }
        if long {
            set(n, LONG_ATOMS);
        }
        out.put_slice(flags.get(..n / 2 + 1).unwrap_or(&flags));
        for (atom, slot, new) in &self.by_slot.refs {
            out.put_u8((slot & 0xff) as u8);
            if *new {
                let text = atom.as_str().as_bytes();
                if long {
                    out.put_u16(text.len() as u16);
                } else {
                    out.put_u8(text.len() as u8);
                }
                out.put_slice(text);
            }
        }
    }

    /// How many references the frame has.
    fn len(&self) -> usize {
        self.by_slot.refs.len()
    }
}

/// An encoded message as pieces: the encoder's buffer cut around the large
/// binaries it left out, and those binaries, in order.
struct Rope {
    pieces: VecDeque<Bytes>,
    len: usize,
}

impl Rope {
    /// `body` with each `(offset, binary)` of `shared` put back at its
    /// offset (offsets ascending, as the encoder returns them).
    fn new(body: Bytes, shared: Vec<(usize, Bytes)>) -> Rope {
        let mut pieces = VecDeque::with_capacity(2 * shared.len() + 1);
        let mut len = body.len();
        let mut at = 0;
        for (offset, b) in shared {
            let offset = offset.clamp(at, body.len());
            pieces.push_back(body.slice(at..offset));
            len += b.len();
            pieces.push_back(b);
            at = offset;
        }
        pieces.push_back(body.slice(at..));
        pieces.retain(|p| !p.is_empty());
        Rope { pieces, len }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// A frame of `head` and the next `n` bytes (or what is left), as
    /// pieces; no copy, and no allocation for a frame in one piece.
    fn frame(&mut self, head: Bytes, n: usize) -> OutFrame {
        let mut frame = OutFrame::whole(head);
        let mut want = n.min(self.len);
        self.len -= want;
        while want > 0 {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            let piece = if front.len() <= want {
                self.pieces.pop_front().unwrap_or_default()
            } else {
                front.split_to(want)
            };
            want -= piece.len();
            if frame.body.is_empty() {
                frame.body = piece;
            } else {
                frame.more.push(piece);
            }
        }
        frame
    }
}

/// The sending side of a connection: writes messages as frames, keeping
/// the atom cache and numbering fragmented messages.
#[derive(Debug)]
pub struct DistEncoder {
    framing: Framing,
    cache: Option<AtomCacheOut>,
    fragment_size: usize,
    /// Payloads up to this many bytes go in one frame (at least
    /// `fragment_size`).
    one_frame: usize,
    next_sequence: u64,
    encoder: Encoder,
    marks: SlotMarks,
    /// Where messages are encoded: each message's bytes are split off it,
    /// so that small messages share blocks instead of allocating each.
    arena: BytesMut,
}

/// `SMALL_TUPLE_EXT`: every control message is one.
const SMALL_TUPLE_EXT: u8 = 104;

/// `SMALL_INTEGER_EXT`: every control message's operation.
const SMALL_INTEGER_EXT: u8 = 97;

/// The size of the blocks [`DistEncoder`] encodes messages into.
const ARENA_BLOCK: usize = 64 * 1024;

/// Room reserved in the arena before a message is encoded (it grows as
/// needed).
const ARENA_MIN: usize = 512;

/// Gives an arena at least [`ARENA_MIN`] bytes of room, a new block if
/// it must.
#[inline]
fn make_room(arena: &mut BytesMut) {
    if arena.capacity() - arena.len() < ARENA_MIN {
        arena.reserve(ARENA_BLOCK);
    }
}

/// Cuts an encoded message (its bytes, with large binaries left where
/// they are in `shared`, and its control's length) into frames behind a
/// header of `atoms`' references: one frame, or, with a sequence id and a
/// payload longer than `one_frame` (and `fs`), fragments of `fs` bytes
/// (the first also holding the control message). True if fragmented. `head` is the
/// buffer the headers are written into.
fn cut_frames(
    head: &mut BytesMut,
    atoms: &FrameAtoms<'_>,
    (encoded, shared, control_len): (Bytes, Vec<(usize, Bytes)>, usize),
    sequence_id: Option<NonZeroU64>,
    (one_frame, fs): (usize, usize),
    frames: &mut Vec<OutFrame>,
) -> bool {
    let payload_len =
        encoded.len() + shared.iter().map(|(_, b)| b.len()).sum::<usize>() - control_len;
    let fs = fs.max(1);
    let fragmented = payload_len > one_frame.max(fs);
    match sequence_id.filter(|_| fragmented) {
        None if shared.is_empty() => {
            // The common case: one frame, in two pieces.
            head.reserve(3 + 6 * atoms.len());
            head.put_slice(&[VERSION_MAGIC, FrameTag::DIST_HEADER.0]);
            atoms.write_header(head);
            frames.push(OutFrame {
                head: head.split().freeze(),
                body: encoded,
                more: Vec::new(),
            });
            false
        }
        None => {
            let mut rope = Rope::new(encoded, shared);
            head.reserve(3 + 6 * atoms.len());
            head.put_slice(&[VERSION_MAGIC, FrameTag::DIST_HEADER.0]);
            atoms.write_header(head);
            let len = rope.len();
            frames.push(rope.frame(head.split().freeze(), len));
            false
        }
        Some(seq) => {
            let mut rope = Rope::new(encoded, shared);
            let seq = seq.get();
            let rest_len = payload_len - fs;
            let count = 1 + rest_len.div_ceil(fs);
            frames.reserve(count);
            head.reserve(19 + 6 * atoms.len() + (count - 1) * FRAGMENT_CONT_HEADER_SIZE);
            head.put_slice(&[VERSION_MAGIC, FrameTag::DIST_FRAG_HEADER.0]);
            head.put_u64(seq);
            head.put_u64(count as u64);
            atoms.write_header(head);
            frames.push(rope.frame(head.split().freeze(), control_len + fs));
            let mut id = count as u64;
            while rope.len() > 0 {
                id -= 1;
                head.put_slice(&[VERSION_MAGIC, FrameTag::DIST_FRAG_CONT.0]);
                head.put_u64(seq);
                head.put_u64(id);
                frames.push(rope.frame(head.split().freeze(), fs));
            }
            true
        }
    }
}

impl DistEncoder {
    /// An encoder for a connection with these negotiated flags: the atom
    /// cache with `DIST_HDR_ATOM_CACHE`, fragments with `FRAGMENTS`.
    pub fn new(flags: DistFlags) -> DistEncoder {
        let mut e = DistEncoder::with_framing(Framing::from_flags(flags));
        if !flags.contains(DistFlags::DIST_HDR_ATOM_CACHE) {
            e.cache = None;
        }
        e
    }

    /// An encoder for frames of this form; with a header, it uses the
    /// atom cache.
    pub fn with_framing(framing: Framing) -> DistEncoder {
        DistEncoder {
            framing,
            cache: framing.has_header().then(AtomCacheOut::new),
            fragment_size: DEFAULT_FRAGMENT_SIZE,
            one_frame: DEFAULT_FRAGMENT_SIZE,
            next_sequence: 1,
            encoder: Encoder::new(),
            marks: SlotMarks::new(),
            arena: BytesMut::new(),
        }
    }

    /// Turns the atom cache off: headers then have no references
    /// (`131, 68, 0`), which OTP accepts.
    pub fn without_atom_cache(mut self) -> DistEncoder {
        self.cache = None;
        self
    }

    /// Sets the payload bytes per fragment (at least 1; default 64 KiB).
    /// A message whose payload is no longer goes in one frame; so does
    /// one up to [`one_frame_up_to`](Self::one_frame_up_to), if set
    /// after this.
    pub fn fragment_size(mut self, size: usize) -> DistEncoder {
        self.fragment_size = size.max(1);
        self.one_frame = self.fragment_size;
        self
    }

    /// Sends payloads of up to `bytes` in one frame, and longer ones in
    /// fragments of [`fragment_size`](Self::fragment_size) (when the peer
    /// takes fragments); at least the fragment size. A real node takes a
    /// 1 MiB binary faster in one frame than in 17 of 64 KiB, while
    /// smaller fragments of a huge message let others' small messages
    /// through sooner.
    pub fn one_frame_up_to(mut self, bytes: usize) -> DistEncoder {
        self.one_frame = bytes.max(self.fragment_size);
        self
    }

    /// The framing.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The atom cache, if used.
    pub fn atom_cache(&self) -> Option<&AtomCacheOut> {
        self.cache.as_ref()
    }

    /// Encodes `msg` as the frames to send, in order: one frame, or, when
    /// fragments are negotiated and the payload is longer than the
    /// fragment size, a `131, 69` frame and `131, 70` frames with a fresh
    /// sequence id.
    ///
    /// # Errors
    /// An [`EncodeError`] for terms that cannot be encoded; the atom cache
    /// is then unchanged.
    pub fn encode(&mut self, msg: &DistMessage) -> Result<Vec<Bytes>, EncodeError> {
        Ok(self
            .encode_split(msg)?
            .into_iter()
            .map(OutFrame::into_bytes)
            .collect())
    }

    /// Encodes `msg` as [`DistEncoder::encode`] does, each frame in two
    /// pieces that share one buffer holding the encoded message: no copy
    /// of the message is made to cut it into frames.
    ///
    /// # Errors
    /// As [`DistEncoder::encode`].
    pub fn encode_split(&mut self, msg: &DistMessage) -> Result<Vec<OutFrame>, EncodeError> {
        let mut frames = Vec::new();
        self.encode_split_into(msg, &mut frames)?;
        Ok(frames)
    }

    /// [`encode_split`](Self::encode_split), appending the frames to
    /// `frames`; true if the message was fragmented (more than one frame).
    ///
    /// # Errors
    /// As [`DistEncoder::encode`]; `frames` is then unchanged.
    pub fn encode_split_into(
        &mut self,
        msg: &DistMessage,
        frames: &mut Vec<OutFrame>,
    ) -> Result<bool, EncodeError> {
        let seq = self.sequence();
        let fragmented = self.encode_with(msg, Some(seq), frames)?;
        if fragmented {
            self.sequence_used(seq);
        }
        Ok(fragmented)
    }

    /// Encodes `msg` as one frame, however long.
    ///
    /// # Errors
    /// As [`DistEncoder::encode`].
    pub fn encode_frame(&mut self, msg: &DistMessage) -> Result<Bytes, EncodeError> {
        let mut frames = Vec::with_capacity(1);
        self.encode_with(msg, None, &mut frames)?;
        Ok(frames.pop().map(OutFrame::into_bytes).unwrap_or_default())
    }

    /// Encodes `msg` as [`DistEncoder::encode`] does, with this sequence
    /// id if it is fragmented (OTP uses the sending process's pid; the
    /// sequence must not be in use on the connection).
    ///
    /// # Errors
    /// As [`DistEncoder::encode`].
    pub fn encode_fragments(
        &mut self,
        msg: &DistMessage,
        sequence_id: NonZeroU64,
    ) -> Result<Vec<Bytes>, EncodeError> {
        let mut frames = Vec::new();
        self.encode_with(msg, Some(sequence_id), &mut frames)?;
        Ok(frames.into_iter().map(OutFrame::into_bytes).collect())
    }

    /// Encodes `msg`, appending its frames to `frames`; true if it was
    /// fragmented (with `sequence_id`).
    fn encode_with(
        &mut self,
        msg: &DistMessage,
        sequence_id: Option<NonZeroU64>,
        frames: &mut Vec<OutFrame>,
    ) -> Result<bool, EncodeError> {
        // Encoded into the arena's spare room, then split off it: no
        // allocation per message.
        let mut body = std::mem::take(&mut self.arena);
        make_room(&mut body);
        if !self.framing.has_header() {
            body.put_u8(PASS_THROUGH);
            self.encoder
                .encode_to(&msg.control().to_term(), &mut body)?;
            if let Some(p) = msg.payload() {
                self.encoder.encode_to(p, &mut body)?;
            }
            frames.push(OutFrame::whole(body.split().freeze()));
            self.arena = body;
            return Ok(false);
        }
        let mut atoms = FrameAtoms::new(self.cache.as_ref(), &mut self.marks);
        let use_cache = self.cache.is_some();
        // Large binaries are not copied: they stay where they are and the
        // frames refer to them (`shared`, by offset in `body`).
        let mut shared: Vec<(usize, Bytes)> = Vec::new();
        let control_len = write_message(
            self.encoder,
            msg.control(),
            msg.payload(),
            use_cache.then_some(&mut atoms),
            &mut body,
            &mut shared,
        )?;
        let encoded = body.split().freeze();
        let mut head = body;
        let fragmented = cut_frames(
            &mut head,
            &atoms,
            (encoded, shared, control_len),
            sequence_id.filter(|_| self.framing.has_fragments()),
            (self.one_frame, self.fragment_size),
            frames,
        );
        self.arena = head;
        self.cache_new_entries();
        Ok(fragmented)
    }

    /// The frame is made: its new entries are now in the peer's cache.
    fn cache_new_entries(&mut self) {
        if let Some(cache) = self.cache.as_mut() {
            for &(atom, slot, new) in &self.marks.refs {
                if let Some(s) = cache.slots.get_mut(usize::from(slot)).filter(|_| new) {
                    *s = Some(atom);
                }
            }
        }
    }

    /// Appends the frames of a message its sender encoded ([`Prepared`]):
    /// the header, with the atom cache's new entries, and the message's
    /// bytes as they are, in fragments if it is long and the peer takes
    /// them. `Some(fragmented)`; `None`, and nothing written, if this
    /// connection has no atom cache (its peer cannot read the message's
    /// references).
    pub(crate) fn encode_prepared(
        &mut self,
        p: Prepared,
        frames: &mut Vec<OutFrame>,
    ) -> Option<bool> {
        let seq = self.sequence();
        let cache = self.cache.as_ref().filter(|_| self.framing.has_header())?;
        let atoms = FrameAtoms::new(Some(cache), &mut self.marks);
        for atom in p.atoms.iter().map_while(|a| *a) {
            let slot = AtomCacheOut::slot_of(atom);
            let new = cache.get(usize::from(slot)) != Some(atom);
            atoms.by_slot.refs.push((atom, slot, new));
        }
        let mut head = std::mem::take(&mut self.arena);
        make_room(&mut head);
        let fragments = Some(seq).filter(|_| self.framing.has_fragments());
        let parts = match p.body {
            // Copied behind the header: one piece, nothing shared.
            PreparedBody::Inline { len, bytes } => {
                head.put_slice(&[VERSION_MAGIC, FrameTag::DIST_HEADER.0]);
                atoms.write_header(&mut head);
                head.put_slice(bytes.get(..usize::from(len)).unwrap_or(&bytes));
                frames.push(OutFrame::whole(head.split().freeze()));
                None
            }
            // Cut as the connection cuts what it encodes itself: a body of
            // up to OTP's fragment size only if this connection's fragments
            // are smaller (a node with a small frame limit).
            PreparedBody::Shared { body, control_len } => {
                Some(((body, Vec::new(), control_len), fragments))
            }
            PreparedBody::Long(l) => Some(((l.encoded, l.shared, l.control_len), fragments)),
        };
        let fragmented = parts.is_some_and(|(parts, seq)| {
            cut_frames(
                &mut head,
                &atoms,
                parts,
                seq,
                (self.one_frame, self.fragment_size),
                frames,
            )
        });
        self.arena = head;
        self.cache_new_entries();
        if fragmented {
            self.sequence_used(seq);
        }
        Some(fragmented)
    }

    /// The sequence id the next fragmented message takes.
    fn sequence(&self) -> NonZeroU64 {
        NonZeroU64::new(self.next_sequence).unwrap_or(NonZeroU64::MIN)
    }

    /// `seq` went to a fragmented message: the next one takes another.
    fn sequence_used(&mut self, seq: NonZeroU64) {
        self.next_sequence = seq.get().wrapping_add(1).max(1);
    }
}

/// The most atoms of a [`Prepared`] message written as references (the
/// others are written as text).
const PREPARED_ATOMS: usize = 5;

/// The spare room a sending thread keeps in its buffer after preparing a
/// long message; more is let go with the message.
const LONG_ARENA_KEPT: usize = 4 * ARENA_BLOCK;

/// A message encoded by the process that sends it, as BEAM's processes
/// encode theirs, for any connection with the atom cache: its control
/// tuple and payload, its first atoms written as `ATOM_CACHE_REF i` of
/// `atoms[i]`, which do not depend on the connection's cache. The
/// connection's encoder adds the header ([`DistEncoder::encode_prepared`]),
/// and cuts a long one into fragments as it would a message it encodes.
///
/// Only plain messages are prepared.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    atoms: [Option<Atom>; PREPARED_ATOMS],
    body: PreparedBody,
}

// Every queued message holds one: keep it as small as it was made.
const _: () = assert!(std::mem::size_of::<Prepared>() <= 96);

/// Bodies of up to this many bytes are kept in the message itself.
const INLINE_BODY: usize = 54;

/// A prepared message's bytes: small ones inline (no buffer shared
/// between the sending thread and the connection's, whose reference count
/// both would touch), others in a buffer of their own.
#[derive(Debug, Clone)]
enum PreparedBody {
    Inline {
        len: u8,
        bytes: [u8; INLINE_BODY],
    },
    /// Up to OTP's fragment size ([`DEFAULT_FRAGMENT_SIZE`]), in a buffer
    /// of its own, with its control tuple's length.
    Shared {
        body: Bytes,
        control_len: usize,
    },
    /// Longer than OTP's fragment size, or with large binaries left where
    /// they are. Boxed: queued messages stay as small as before.
    Long(Box<LongBody>),
}

/// A long prepared message: its bytes, the binaries it shares (each with
/// its offset in `encoded`) and its control tuple's length.
#[derive(Debug, Clone)]
struct LongBody {
    encoded: Bytes,
    shared: Vec<(usize, Bytes)>,
    control_len: usize,
}

impl PreparedBody {
    fn bytes(&self) -> &[u8] {
        match self {
            PreparedBody::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(bytes),
            PreparedBody::Shared { body, .. } => body,
            PreparedBody::Long(l) => &l.encoded,
        }
    }
}

/// A sending thread's buffers for [`Prepared::of`].
struct PrepareScratch {
    arena: BytesMut,
    marks: SlotMarks,
}

thread_local! {
    static PREPARE: std::cell::RefCell<PrepareScratch> = std::cell::RefCell::new(PrepareScratch {
        arena: BytesMut::new(),
        marks: SlotMarks::new(),
    });
}

impl Prepared {
    /// [`Prepared::of`] the parts of `msg`.
    #[cfg(test)]
    pub(crate) fn new(msg: &DistMessage) -> Option<Prepared> {
        Prepared::of(msg.control(), msg.payload())
    }

    /// The message `control` and `payload` make (which need not be a
    /// valid message: this is checked), encoded for a connection with the
    /// atom cache; `None` for what the connection's encoder must do
    /// itself: anything but a plain message (`SEND`, `SEND_SENDER`,
    /// `REG_SEND`, `ALIAS_SEND`), a message longer than a fragment or with
    /// large binaries (which the connection's encoder cuts into fragments,
    /// or shares), a term that cannot be encoded (the connection's encoder
    /// reports it).
    pub(crate) fn of(control: &ControlMessage, payload: Option<&Term>) -> Option<Prepared> {
        if payload.is_some() != control.has_payload() {
            return None;
        }
        if !matches!(
            control,
            ControlMessage::Send { .. }
                | ControlMessage::SendSender { .. }
                | ControlMessage::RegSend { .. }
                | ControlMessage::AliasSend { .. }
        ) {
            return None;
        }
        PREPARE
            .try_with(|scratch| {
                let mut scratch = scratch.try_borrow_mut().ok()?;
                let PrepareScratch { arena, marks } = &mut *scratch;
                make_room(arena);
                let mut atoms = FrameAtoms::new(None, marks);
                atoms.max = PREPARED_ATOMS;
                let mut shared = Vec::new();
                let Ok(control_len) = write_message(
                    Encoder::new(),
                    control,
                    payload,
                    Some(&mut atoms),
                    arena,
                    &mut shared,
                ) else {
                    arena.clear();
                    return None;
                };
                let mut list = [None; PREPARED_ATOMS];
                for (l, (a, _, _)) in list.iter_mut().zip(&atoms.by_slot.refs) {
                    *l = Some(*a);
                }
                let body = match u8::try_from(arena.len()) {
                    _ if !shared.is_empty() || arena.len() > DEFAULT_FRAGMENT_SIZE => {
                        let encoded = arena.split().freeze();
                        if arena.capacity() > LONG_ARENA_KEPT {
                            // Not kept for the thread's next message: it is
                            // part of this one's buffer.
                            *arena = BytesMut::new();
                        }
                        PreparedBody::Long(Box::new(LongBody {
                            encoded,
                            shared,
                            control_len,
                        }))
                    }
                    Ok(len) if usize::from(len) <= INLINE_BODY => {
                        let mut bytes = [0u8; INLINE_BODY];
                        if let Some(b) = bytes.get_mut(..arena.len()) {
                            b.copy_from_slice(arena);
                        }
                        arena.clear();
                        PreparedBody::Inline { len, bytes }
                    }
                    // At most DEFAULT_FRAGMENT_SIZE bytes here.
                    _ => PreparedBody::Shared {
                        body: arena.split().freeze(),
                        control_len,
                    },
                };
                Some(Prepared { atoms: list, body })
            })
            .ok()
            .flatten()
    }

    /// The message's encoded size: its bytes, and the binaries it shares.
    pub(crate) fn size(&self) -> usize {
        let shared = match &self.body {
            PreparedBody::Long(l) => l.shared.iter().map(|(_, b)| b.len()).sum(),
            _ => 0,
        };
        self.body.bytes().len() + shared
    }

    /// Whether the message is long (cut into frames by the connection).
    pub(crate) fn is_long(&self) -> bool {
        matches!(self.body, PreparedBody::Long(_))
    }

    /// The sending process of a `SEND_SENDER`, `REG_SEND` or `ALIAS_SEND`
    /// (its pid is the tuple's second element in all three, and written
    /// as the message's first reference); `None` for a `SEND`.
    pub(crate) fn sender(&self) -> Option<Pid> {
        let body = self.body.bytes();
        let op = *body.get(3)?;
        let plain = [
            ControlOp::SEND_SENDER.0,
            ControlOp::REG_SEND.0,
            ControlOp::ALIAS_SEND.0,
        ];
        if !plain.contains(&op) {
            return None;
        }
        cached_pid_with(body.get(4..4 + PID_REF_LEN), |ix| {
            self.atoms.get(ix).copied().flatten()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::control::tests::every_op;
    use crate::Pid;

    const BOTH: DistFlags = DistFlags(DistFlags::DIST_HDR_ATOM_CACHE.0 | DistFlags::FRAGMENTS.0);

    fn msg_of(control: ControlMessage) -> DistMessage {
        let payload = control
            .has_payload()
            .then(|| Term::tuple(vec![Term::atom("hello"), Term::atom("rex")]));
        DistMessage::new(control, payload).unwrap()
    }

    /// The frame of protocol.md §4.3, captured from OTP 25.2.3: the bytes
    /// up to `68 04 61 06 58 52 00` are the capture; the rest of the
    /// REG_SEND (pid numbers, the cookie and name refs) and the payload
    /// `{features_request, Pid}` are filled in here.
    pub(crate) fn otp_worked_example() -> Vec<u8> {
        let mut f = vec![0x83, 0x44, 0x04, 0x8f, 0xdc, 0x00, 0x40, 0x0f];
        f.extend_from_slice(b"lab_a@127.0.0.1");
        f.extend_from_slice(&[0x05, 0x00, 0x75, 0x03]);
        f.extend_from_slice(b"rex");
        f.extend_from_slice(&[0x06, 0x10]);
        f.extend_from_slice(b"features_request");
        f.extend_from_slice(&[0x68, 0x04, 0x61, 0x06, 0x58, 0x52, 0x00]);
        f.extend_from_slice(&[0, 0, 0, 0x4c, 0, 0, 0, 0, 0x63, 0x9b, 0x55, 0x10]);
        f.extend_from_slice(&[0x52, 0x01, 0x52, 0x02]);
        f.extend_from_slice(&[0x68, 0x02, 0x52, 0x03, 0x58, 0x52, 0x00]);
        f.extend_from_slice(&[0, 0, 0, 0x4c, 0, 0, 0, 0, 0x63, 0x9b, 0x55, 0x10]);
        f
    }

    #[test]
    fn decodes_the_otp_worked_example() {
        let mut rx = DistDecoder::new(BOTH);
        let msg = rx
            .decode_frame(Bytes::from(otp_worked_example()))
            .unwrap()
            .unwrap();
        let node = Atom::from("lab_a@127.0.0.1");
        let from = Pid {
            node,
            id: 0x4c,
            serial: 0,
            creation: 0x639b_5510,
        };
        assert_eq!(
            msg.control(),
            &ControlMessage::RegSend {
                from,
                to_name: Atom::from("rex")
            }
        );
        assert!(msg.payload().unwrap().exact_eq(&Term::tuple(vec![
            Term::atom("features_request"),
            Term::Pid(from)
        ])));
        let cache = rx.atom_cache();
        assert_eq!(cache.get(1856), Some(node));
        assert_eq!(cache.get(5), Some(Atom::from("")));
        assert_eq!(cache.get(4 * 256 + 0x75), Some(Atom::from("rex")));
        assert_eq!(cache.get(5 * 256 + 6), Some(Atom::from("features_request")));
        assert_eq!(cache.get(0), None);
    }

    #[test]
    fn cached_refs_read_earlier_frames() {
        let mut rx = DistDecoder::new(BOTH);
        rx.decode_frame(Bytes::from(otp_worked_example())).unwrap();
        // The same message, every atom now a cached reference.
        let mut f = vec![0x83, 0x44, 0x04, 0x07, 0x54, 0x00, 0x40, 0x05, 0x75, 0x06];
        let ex = otp_worked_example();
        let body_at = 48;
        f.extend_from_slice(&ex[body_at..]);
        let msg = rx.decode_frame(Bytes::from(f)).unwrap().unwrap();
        assert_eq!(msg.control().op(), ControlOp::REG_SEND);
    }

    #[test]
    fn a_reference_to_an_empty_slot_is_an_error() {
        let mut rx = DistDecoder::new(BOTH);
        let f = vec![0x83, 0x44, 0x01, 0x03, 0x10, 0x68, 0x01, 0x61, 0x01];
        let e = rx.decode_frame(Bytes::from(f)).unwrap_err();
        assert_eq!(
            e,
            FrameError::Header(header_err(4, HeaderErrorKind::EmptySlot { slot: 0x310 }))
        );
    }

    #[test]
    fn every_op_round_trips_in_every_framing() {
        for framing in [
            Framing::PassThrough,
            Framing::Header,
            Framing::HeaderWithFragments,
        ] {
            let mut tx = DistEncoder::with_framing(framing);
            let mut rx = DistDecoder::with_framing(framing);
            for round in 0..2 {
                for control in every_op() {
                    let msg = msg_of(control);
                    let frames = tx.encode(&msg).unwrap();
                    assert_eq!(frames.len(), 1);
                    let back = rx.decode_frame(frames[0].clone()).unwrap();
                    assert_eq!(back.as_ref(), Some(&msg), "{framing:?} round {round}");
                    if framing.has_header() {
                        assert_eq!(&frames[0][..2], [131, 68]);
                    } else {
                        assert_eq!(&frames[0][..2], [112, 131]);
                    }
                }
            }
        }
    }

    #[test]
    fn split_frames_leave_large_binaries_where_they_are() {
        let to = Pid {
            node: Atom::from("a@h"),
            id: 1,
            serial: 0,
            creation: 1,
        };
        let big = Bytes::from(vec![7u8; 200_000]);
        let (lo, hi) = (big.as_ptr() as usize, big.as_ptr() as usize + big.len());
        let payload = Term::tuple(vec![
            Term::atom("two"),
            Term::Binary(big.clone().into()),
            Term::List(vec![Term::binary(vec![9u8; 20_000]), Term::from(1)]),
        ]);
        let msg = DistMessage::new(ControlMessage::Send { to }, Some(payload)).unwrap();
        let split = DistEncoder::new(BOTH).encode_split(&msg).unwrap();
        assert_eq!(split.len(), 4);
        // The big binary's bytes are in the frames as slices of `big`.
        let in_big: usize = split
            .iter()
            .flat_map(OutFrame::iter)
            .filter(|p| (lo..hi).contains(&(p.as_ptr() as usize)))
            .map(Bytes::len)
            .sum();
        assert_eq!(in_big, big.len());
        // Joined, the frames decode to the message (and are the frames
        // `encode` gives).
        let joined: Vec<Bytes> = split.into_iter().map(OutFrame::into_bytes).collect();
        assert_eq!(joined, DistEncoder::new(BOTH).encode(&msg).unwrap());
        let mut rx = DistDecoder::new(BOTH);
        let got: Vec<_> = joined
            .into_iter()
            .filter_map(|f| rx.decode_frame(f).unwrap())
            .collect();
        assert_eq!(got, vec![msg]);
    }

    /// With `one_frame_up_to`, a message of up to that size goes whole
    /// and a longer one in fragments of the fragment size, each read back
    /// as sent.
    #[test]
    fn one_frame_up_to_keeps_mid_sized_messages_whole() {
        let to = Pid {
            node: Atom::from("a@h"),
            id: 1,
            serial: 0,
            creation: 1,
        };
        let msg = |n: usize| {
            DistMessage::new(
                ControlMessage::Send { to },
                Some(Term::binary(vec![3u8; n])),
            )
            .unwrap()
        };
        let tag = |f: &OutFrame| f.head.get(1).copied();
        let mut rx = DistDecoder::new(BOTH);
        let mut read = |frames: Vec<OutFrame>| {
            let got: Vec<_> = frames
                .into_iter()
                .filter_map(|f| rx.decode_frame(f.into_bytes()).unwrap())
                .collect();
            got
        };
        // The fragment size alone: 3,000 bytes are cut.
        let cut = DistEncoder::new(BOTH)
            .fragment_size(1000)
            .encode_split(&msg(3000))
            .unwrap();
        assert!(cut.len() > 1);
        assert_eq!(read(cut), vec![msg(3000)]);
        let mut tx = DistEncoder::new(BOTH)
            .fragment_size(1000)
            .one_frame_up_to(5000);
        let whole = tx.encode_split(&msg(3000)).unwrap();
        assert_eq!(whole.len(), 1);
        assert_eq!(tag(&whole[0]), Some(FrameTag::DIST_HEADER.0));
        assert_eq!(read(whole), vec![msg(3000)]);
        // Longer than the limit: fragments of 1,000 payload bytes.
        let frags = tx.encode_split(&msg(12_000)).unwrap();
        assert_eq!(frags.len(), 13);
        assert_eq!(tag(&frags[0]), Some(FrameTag::DIST_FRAG_HEADER.0));
        assert!(frags[1..]
            .iter()
            .all(|f| tag(f) == Some(FrameTag::DIST_FRAG_CONT.0) && f.len() <= 1000 + 18));
        assert_eq!(read(frags), vec![msg(12_000)]);
        // Never below the fragment size.
        let tx = DistEncoder::new(BOTH)
            .fragment_size(4000)
            .one_frame_up_to(10);
        assert_eq!(tx.one_frame, 4000);
    }

    #[test]
    fn shared_binaries_come_back_in_place_in_every_framing() {
        let to = Pid {
            node: Atom::from("a@h"),
            id: 1,
            serial: 0,
            creation: 1,
        };
        let bin = |n: usize, b: u8| Term::binary(vec![b; n]);
        let fun = Term::Fun(Box::new(crate::term::Fun::Local(crate::term::LocalFun {
            module: Atom::from("m"),
            arity: 0,
            uniq: [1; 16],
            index: 0,
            old_index: 0,
            old_uniq: 0,
            pid: to,
            free_vars: vec![bin(40_000, 3), Term::atom("x")],
        })));
        let payloads = [
            bin(16 * 1024, 1), // encode::SHARE_MIN
            Term::tuple(vec![bin(70_000, 1), bin(10, 2), bin(100_000, 3)]),
            Term::List(vec![bin(30_000, 4), fun, bin(1 << 20, 5)]),
            Term::BitBinary(Box::new(crate::term::BitBinary {
                bytes: Bytes::from(vec![6u8; 50_000]),
                bits: 8,
            })),
        ];
        for framing in [Framing::Header, Framing::HeaderWithFragments] {
            for size in [1024, DEFAULT_FRAGMENT_SIZE] {
                let mut tx = DistEncoder::with_framing(framing).fragment_size(size);
                let mut rx = DistDecoder::with_framing(framing);
                for p in &payloads {
                    let control = ControlMessage::Exit {
                        from: to,
                        to,
                        reason: bin(20_000, 8),
                    };
                    let msg = DistMessage::new(ControlMessage::Send { to }, Some(p.clone()));
                    for msg in [msg.unwrap(), DistMessage::control_only(control).unwrap()] {
                        let mut got = None;
                        for f in tx.encode(&msg).unwrap() {
                            got = rx.decode_frame(f).unwrap().or(got);
                        }
                        assert_eq!(got.as_ref(), Some(&msg), "{framing:?} {size}");
                    }
                }
            }
        }
    }

    #[test]
    fn bytes_mut_remaining_mut_counts_what_was_written() {
        // Encoder::encode_body_sharing finds offsets this way.
        let mut b = BytesMut::new();
        let start = b.remaining_mut();
        b.put_slice(&[1; 5]);
        b.put_slice(&vec![2; 100_000]);
        assert_eq!(start - b.remaining_mut(), 100_005);
    }

    #[test]
    fn the_second_frame_uses_cached_refs() {
        let mut tx = DistEncoder::new(BOTH);
        let msg = msg_of(every_op().swap_remove(4));
        let first = tx.encode_frame(&msg).unwrap();
        let second = tx.encode_frame(&msg).unwrap();
        assert!(second.len() < first.len());
        // No new-entry bits in the second header.
        let n = usize::from(second[2]);
        assert!(n > 0);
        assert!(second[3..3 + n / 2 + 1].iter().all(|b| b & 0x88 == 0));
    }

    #[test]
    fn without_the_cache_headers_are_empty_and_terms_plain() {
        let mut tx = DistEncoder::new(DistFlags::FRAGMENTS);
        let msg = msg_of(every_op().swap_remove(4));
        let frame = tx.encode_frame(&msg).unwrap();
        assert_eq!(&frame[..3], [131, 68, 0]);
        let mut plain = Vec::new();
        Encoder::new()
            .encode_body(&msg.control().to_term(), &mut plain)
            .unwrap();
        Encoder::new()
            .encode_body(msg.payload().unwrap(), &mut plain)
            .unwrap();
        assert_eq!(&frame[3..], plain);
    }

    /// A frame inside a larger buffer decodes as it does alone, and a term
    /// that runs past its frame's end is refused, not read on into the
    /// next frame.
    #[test]
    fn a_frame_in_a_run_reads_nothing_outside_it() {
        let mut tx = DistEncoder::new(BOTH);
        let msgs: Vec<DistMessage> = every_op().into_iter().map(msg_of).collect();
        let frames: Vec<Bytes> = msgs.iter().map(|m| tx.encode_frame(m).unwrap()).collect();
        let mut run = vec![9u8; 3];
        let mut places = Vec::new();
        for f in &frames {
            places.push((run.len(), run.len() + f.len()));
            run.extend_from_slice(f);
        }
        let run = Bytes::from(run);
        let mut alone = DistDecoder::new(BOTH);
        let mut within = DistDecoder::new(BOTH);
        for ((f, &(start, end)), m) in frames.iter().zip(&places).zip(&msgs) {
            let a = alone.decode_frame(f.clone()).unwrap();
            assert_eq!(a.as_ref(), Some(m));
            assert_eq!(within.decode_frame_in(&run, start, end).unwrap(), a);
        }
        // The first frame cut one byte short, the second right behind it:
        // its payload would end in the second's bytes.
        let (start, end) = places[0];
        let short = DistDecoder::new(BOTH)
            .decode_frame_in(&run, start, end - 1)
            .unwrap_err();
        assert!(
            matches!(short, FrameError::Term { .. } | FrameError::Control(_)),
            "{short:?}"
        );
        let alone_short = DistDecoder::new(BOTH)
            .decode_frame(frames[0].slice(..frames[0].len() - 1))
            .unwrap_err();
        assert_eq!(short.to_string(), alone_short.to_string());
    }

    /// Control tuples are read element by element in place (header mode)
    /// or as one term (pass-through): a bad one is refused alike, naming
    /// the same element.
    #[test]
    fn a_bad_control_tuple_is_refused_alike_read_in_place_or_whole() {
        let pid = Pid {
            node: Atom::from("a@h"),
            id: 1,
            serial: 0,
            creation: 1,
        };
        let bad = [
            // SEND_SENDER whose `to` is an atom.
            Term::Tuple(vec![Term::Int(22), Term::Pid(pid), Term::atom("x")]),
            // LINK with one element too many.
            Term::Tuple(vec![
                Term::Int(1),
                Term::Pid(pid),
                Term::Pid(pid),
                Term::Pid(pid),
            ]),
            // An unknown operation, and a first element that is no integer.
            Term::Tuple(vec![Term::Int(99), Term::Pid(pid)]),
            Term::Tuple(vec![Term::atom("send"), Term::Pid(pid)]),
        ];
        for (i, control) in bad.into_iter().enumerate() {
            let want = ControlMessage::from_term(control.clone()).unwrap_err();
            if i == 0 {
                assert!(
                    matches!(
                        want,
                        ControlError::Field {
                            index: 3,
                            field: "to",
                            ..
                        }
                    ),
                    "{want:?}"
                );
            }
            let mut body = Vec::new();
            Encoder::new().encode_body(&control, &mut body).unwrap();
            body.extend_from_slice(&[97, 1]);
            let in_place = [&[131u8, 68, 0][..], &body].concat();
            let whole = [&[112u8, 131][..], &body].concat();
            for (framing, frame) in [(Framing::Header, in_place), (Framing::PassThrough, whole)] {
                let got = DistDecoder::with_framing(framing)
                    .decode_frame(Bytes::from(frame))
                    .unwrap_err();
                match got {
                    FrameError::Control(e) => assert_eq!(e, want, "{framing:?} {control}"),
                    other => panic!("{framing:?} {control}: {other}"),
                }
            }
        }
    }

    #[test]
    fn send_sender_pids_by_cache_ref_are_read_or_refused_as_by_the_decoder() {
        // One new cache entry, `a@h`, in slot 0.
        let header = [131u8, 68, 1, 0x08, 0x00, 3, b'a', b'@', b'h'];
        let pid = |ix: u8, id: u8| [88u8, 82, ix, 0, 0, 0, id, 0, 0, 0, 2, 0, 0, 0, 3];
        let frame = |to_ix: u8| {
            let mut f = header.to_vec();
            f.extend_from_slice(&[104, 3, 97, 22]);
            f.extend_from_slice(&pid(0, 7));
            f.extend_from_slice(&pid(to_ix, 9));
            f.extend_from_slice(&[97, 42]);
            Bytes::from(f)
        };
        let m = DistDecoder::new(BOTH)
            .decode_frame(frame(0))
            .unwrap()
            .unwrap();
        let p = |id| Pid {
            node: Atom::from("a@h"),
            id,
            serial: 2,
            creation: 3,
        };
        assert_eq!(
            m.control(),
            &ControlMessage::SendSender {
                from: p(7),
                to: p(9)
            }
        );
        assert_eq!(m.payload(), Some(&Term::Int(42)));
        // `to` names reference 5 of a header with one: refused, at the
        // offset of the reference, as the decoder refuses it.
        let e = DistDecoder::new(BOTH).decode_frame(frame(5)).unwrap_err();
        match e {
            FrameError::Term {
                role: TermRole::Control,
                source,
            } => {
                assert_eq!(source.kind, crate::term::DecodeErrorKind::AtomCacheMiss(5));
                assert_eq!(source.offset, header.len() + 4 + 15 + 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_their_senders_encoded_read_as_the_connection_would_write_them() {
        let mut tx = DistEncoder::new(BOTH);
        let mut rx = DistDecoder::new(BOTH);
        let mut prepared = 0;
        // Twice: new cache entries, then references to them.
        for round in 0..2 {
            for control in every_op() {
                let msg = msg_of(control);
                let frames = match Prepared::new(&msg) {
                    Some(p) => {
                        prepared += 1;
                        let mut f = Vec::new();
                        assert_eq!(tx.encode_prepared(p, &mut f), Some(false));
                        f.into_iter().map(OutFrame::into_bytes).collect()
                    }
                    None => tx.encode(&msg).unwrap(),
                };
                assert_eq!(frames.len(), 1);
                let back = rx.decode_frame(frames[0].clone()).unwrap();
                assert_eq!(back.as_ref(), Some(&msg), "round {round}");
            }
        }
        // SEND, SEND_SENDER, REG_SEND, ALIAS_SEND, in both rounds.
        assert_eq!(prepared, 8);
        // More atoms than a prepared message references: the rest as text.
        // Each atom twice in a row (the encoder reuses the answer for an
        // atom asked for again), then all of them again.
        let names = (0..12).map(|i| format!("a{i}"));
        let many = Term::List(
            names
                .clone()
                .flat_map(|n| [Term::atom(&n), Term::atom(&n)])
                .chain(names.map(|n| Term::atom(&n)))
                .collect(),
        );
        let pid = |id| Pid {
            node: Atom::from("n@h"),
            id,
            serial: 0,
            creation: 5,
        };
        let msg = DistMessage::new(
            ControlMessage::SendSender {
                from: pid(1),
                to: pid(2),
            },
            Some(many),
        )
        .unwrap();
        let p = Prepared::new(&msg).unwrap();
        assert_eq!(p.sender(), Some(pid(1)));
        let mut f = Vec::new();
        assert_eq!(tx.encode_prepared(p.clone(), &mut f), Some(false));
        let back = rx.decode_frame(f.remove(0).into_bytes()).unwrap();
        assert_eq!(back.as_ref(), Some(&msg));
        // A connection without the atom cache cannot take it.
        let mut plain = DistEncoder::new(DistFlags::FRAGMENTS).without_atom_cache();
        assert_eq!(plain.encode_prepared(p, &mut f), None);
        assert!(f.is_empty());
        // A large binary stays where it is: the frames share it, in one
        // frame for a peer without fragments, in two for one with them.
        let data = Bytes::from(vec![7u8; 64 * 1024]);
        let big = DistMessage::new(
            ControlMessage::Send { to: pid(2) },
            Some(Term::Binary(data.clone().into())),
        )
        .unwrap();
        for (flags, count) in [(DistFlags::DIST_HDR_ATOM_CACHE, 1), (BOTH, 2)] {
            let (mut tx, mut rx) = (DistEncoder::new(flags), DistDecoder::new(flags));
            let p = Prepared::new(&big).unwrap();
            assert_eq!(tx.encode_prepared(p, &mut f), Some(count > 1));
            assert_eq!(f.len(), count);
            let shares = |b: &Bytes| b.as_ptr() >= data.as_ptr() && b.len() > 1024;
            assert!(f
                .iter()
                .any(|fr| fr.more.iter().any(shares) || shares(&fr.body)));
            let mut got = None;
            for fr in f.drain(..) {
                got = rx.decode_frame(fr.into_bytes()).unwrap().or(got);
            }
            assert_eq!(got.as_ref(), Some(&big));
        }
        // A body within OTP's fragment size, no binary shared, is cut too
        // by a connection whose fragments are smaller.
        let mid = DistMessage::new(
            ControlMessage::Send { to: pid(2) },
            Some(Term::binary(vec![3u8; 10_000])),
        )
        .unwrap();
        let (mut tx, mut rx) = (
            DistEncoder::new(BOTH).fragment_size(4096),
            DistDecoder::new(BOTH),
        );
        for _ in 0..2 {
            let p = Prepared::new(&mid).unwrap();
            assert!(!p.is_long());
            assert_eq!(tx.encode_prepared(p, &mut f), Some(true));
            assert_eq!(f.len(), 3);
            let mut got = None;
            for fr in f.drain(..) {
                assert!(fr.len() < 4096 + 64, "a frame of {} bytes", fr.len());
                got = rx.decode_frame(fr.into_bytes()).unwrap().or(got);
            }
            assert_eq!(got.as_ref(), Some(&mid));
        }
    }

    /// A message longer than a fragment is prepared whole by its sender
    /// (who may hold it by reference: nothing is copied), and the
    /// connection cuts it into fragments, read back as sent. The sending
    /// thread does not keep a buffer the size of the message.
    #[test]
    fn a_large_term_is_prepared_and_cut_into_fragments() {
        let item = |i: i64| {
            Term::tuple(vec![
                Term::atom("item"),
                Term::from(i + 1_000_000),
                Term::binary(&b"abcdefgh"[..]),
            ])
        };
        let message = |n: i64| {
            DistMessage::new(
                ControlMessage::Send {
                    to: Pid {
                        node: Atom::from("n@h"),
                        id: 2,
                        serial: 0,
                        creation: 5,
                    },
                },
                Some(Term::list((0..n).map(item).collect())),
            )
            .unwrap()
        };
        let mut tx = DistEncoder::new(BOTH);
        let mut rx = DistDecoder::new(BOTH);
        // About 2.2 MB (the atoms by reference), in fragments of 64 KiB;
        // twice, so that the second takes another sequence id.
        let large = message(100_000);
        let mut seqs = Vec::new();
        for _ in 0..2 {
            let p = Prepared::new(&large).unwrap();
            let arena = PREPARE.with(|s| s.borrow().arena.capacity());
            assert!(arena <= LONG_ARENA_KEPT, "arena of {arena} bytes");
            let mut f = Vec::new();
            assert_eq!(tx.encode_prepared(p, &mut f), Some(true));
            // The first fragment's header counts them all.
            let count = f.len() as u64;
            assert!(count > 30, "{count} fragments");
            let mut got = None;
            for (i, fr) in f.into_iter().enumerate() {
                let b = fr.into_bytes();
                if i == 0 {
                    assert_eq!(b.get(10..18), Some(&count.to_be_bytes()[..]));
                }
                seqs.push(b.slice(2..10));
                got = rx.decode_frame(b).unwrap().or(got);
            }
            assert_eq!(got.as_ref(), Some(&large));
        }
        assert_ne!(seqs.first(), seqs.last());
        // About 52 KB: one frame.
        let small = message(2_000);
        let p = Prepared::new(&small).unwrap();
        let mut f = Vec::new();
        assert_eq!(tx.encode_prepared(p, &mut f), Some(false));
        let back = rx.decode_frame(f.remove(0).into_bytes()).unwrap();
        assert_eq!(back.as_ref(), Some(&small));
    }

    /// What the node reads ([`DistDecoder::decode_incoming_in`]) is what
    /// the general path reads, message or error, frame after frame.
    #[test]
    fn the_nodes_reading_agrees_with_the_general_one() {
        let mut tx = DistEncoder::new(BOTH);
        let mut frames: Vec<Bytes> = Vec::new();
        for _ in 0..2 {
            for control in every_op() {
                frames.extend(tx.encode(&msg_of(control)).unwrap());
            }
        }
        // SEND_SENDER cut short, with a byte too many, and with its
        // payload missing, and a pid naming a reference the header lacks.
        let send_sender = every_op()
            .into_iter()
            .find(|c| c.op() == ControlOp::SEND_SENDER)
            .unwrap();
        let good = tx.encode(&msg_of(send_sender)).unwrap().remove(0);
        let mut long = good.to_vec();
        long.push(0);
        frames.push(Bytes::from(long));
        frames.push(good.slice(..good.len() - 1));
        let header_len = good.windows(4).position(|w| w == [104, 3, 97, 22]).unwrap();
        frames.push(good.slice(..header_len + 4 + 2 * PID_REF_LEN));
        let mut bad_ref = good.to_vec();
        if let Some(b) = bad_ref.get_mut(header_len + 4 + PID_REF_LEN + 2) {
            *b = 200;
        }
        frames.push(Bytes::from(bad_ref));
        let (mut general, mut node) = (DistDecoder::new(BOTH), DistDecoder::new(BOTH));
        let mut fast = 0;
        for (i, f) in frames.iter().enumerate() {
            let want = general.decode_frame_in(f, 0, f.len());
            let got = node.decode_incoming_in(f, 0, f.len()).map(|m| {
                m.map(|m| match m {
                    Incoming::Send { from, to, payload } => {
                        fast += 1;
                        DistMessage::new(ControlMessage::SendSender { from, to }, Some(payload))
                            .unwrap()
                    }
                    Incoming::Other(m) => *m,
                })
            });
            assert_eq!(got, want, "frame {i}");
        }
        // Both rounds' SEND_SENDER; the broken ones are refused.
        assert_eq!(fast, 2);
    }

    #[test]
    fn reassembler_joins_once_in_order() {
        let mut r: Reassembler<&str> = Reassembler::default();
        assert_eq!(r.first(7, 3, "x", Bytes::from_static(b"ab")), Ok(None));
        assert_eq!(r.continuation(7, 2, Bytes::from_static(b"cd")), Ok(None));
        assert_eq!(r.buffered(), 4);
        let done = r.continuation(7, 1, Bytes::from_static(b"e")).unwrap();
        assert_eq!(done, Some(("x", Bytes::from_static(b"abcde"))));
        assert_eq!((r.pending(), r.buffered()), (0, 0));
    }

    /// Joins `parts` as one sequence and returns the message.
    fn reassemble(r: &mut Reassembler<()>, seq: u64, parts: &[&'static [u8]]) -> Bytes {
        let n = parts.len() as u64;
        let mut done = r.first(seq, n, (), Bytes::from_static(parts[0])).unwrap();
        for (i, p) in parts.iter().enumerate().skip(1) {
            done = r
                .continuation(seq, n - i as u64, Bytes::from_static(p))
                .unwrap();
        }
        done.unwrap().1
    }

    #[test]
    fn reassembler_joins_into_buffers_its_receivers_have_dropped() {
        let mut r: Reassembler<()> = Reassembler::default();
        let parts: [&[u8]; 3] = [b"abcd", b"efgh", b"ij"];
        let first = reassemble(&mut r, 1, &parts);
        let at = first.as_ptr();
        // Still held: the next message gets a buffer of its own.
        let second = reassemble(&mut r, 2, &parts);
        assert_ne!(second.as_ptr(), at);
        assert_eq!(
            (&first[..], &second[..]),
            (&b"abcdefghij"[..], &b"abcdefghij"[..])
        );
        drop(first);
        // Nine bytes, from three of three: a new buffer would have room
        // for nine, the first message's has room for twelve.
        assert_eq!(r.first(3, 3, (), Bytes::from_static(b"abc")), Ok(None));
        let room = r.pending.get(&3).map(|p| p.joined.capacity());
        assert_eq!(room, Some(12), "the dropped message's buffer is used again");
        assert_eq!(r.continuation(3, 2, Bytes::from_static(b"def")), Ok(None));
        let third = r.continuation(3, 1, Bytes::from_static(b"gh")).unwrap();
        let third = third.map(|(_, b)| b).unwrap_or_default();
        assert_eq!((third.as_ptr(), &third[..]), (at, &b"abcdefgh"[..]));
        drop((second, third));
        // Twelve bytes are too many for a message of two: a new buffer.
        assert_eq!(r.first(4, 2, (), Bytes::from_static(b"a")), Ok(None));
        let room = r.pending.get(&4).map(|p| p.joined.capacity());
        assert_eq!(room, Some(2));
        let small = r.continuation(4, 1, Bytes::from_static(b"b")).unwrap();
        assert_eq!(small.map(|(_, b)| b), Some(Bytes::from_static(b"ab")));
        assert!(r.kept_buffers() <= SPARE_BUFFERS);
    }

    #[test]
    fn reassembler_keeps_a_free_buffer_it_did_not_take() {
        let mut r: Reassembler<()> = Reassembler::default();
        let parts: [&[u8]; 2] = [b"abcd", b"efgh"];
        let (one, two) = (reassemble(&mut r, 1, &parts), reassemble(&mut r, 2, &parts));
        let kept = [one.as_ptr(), two.as_ptr()];
        drop((one, two));
        assert_eq!(r.first(3, 2, (), Bytes::from_static(b"abcd")), Ok(None));
        assert_eq!(r.kept_buffers(), 1, "one taken, the other still kept");
        let three = r.continuation(3, 1, Bytes::from_static(b"efgh")).unwrap();
        let three = three.map(|(_, b)| b).unwrap_or_default();
        assert!(kept.contains(&three.as_ptr()));
        assert_eq!(r.kept_buffers(), 2);
        let four = reassemble(&mut r, 4, &parts);
        assert!(kept.contains(&four.as_ptr()));
        assert_ne!(three.as_ptr(), four.as_ptr());
    }

    #[test]
    fn reassembler_keeps_no_buffer_larger_than_a_message_may_be() {
        let mut r: Reassembler<()> = Reassembler::new(ReassemblyLimits {
            max_message_size: 10,
            ..ReassemblyLimits::default()
        });
        // Room for six at first; the second fragment makes it grow past ten.
        let whole = reassemble(&mut r, 1, &[b"abc", b"defghij"]);
        assert_eq!(&whole[..], b"abcdefghij");
        assert_eq!(r.kept_buffers(), 0);
        drop(reassemble(&mut r, 2, &[b"abcde", b"fghij"]));
        assert_eq!(r.kept_buffers(), 1);
    }

    #[test]
    fn reassembler_gives_kept_buffers_back_when_idle() {
        let mut r: Reassembler<()> = Reassembler::default();
        drop(reassemble(&mut r, 1, &[b"ab", b"cd"]));
        assert_eq!(r.kept_buffers(), 1);
        assert!(
            !r.release_idle(),
            "a message was joined since the last call"
        );
        assert_eq!(r.kept_buffers(), 1);
        assert!(r.release_idle());
        assert_eq!(r.kept_buffers(), 0);
        assert!(!r.release_idle());
    }

    #[test]
    fn a_claimed_fragment_count_reserves_no_more_than_the_limits() {
        let mut r: Reassembler<()> = Reassembler::new(ReassemblyLimits {
            max_pending: 8,
            max_message_size: 64,
            max_buffered: 100,
        });
        let chunk = Bytes::from_static(b"0123456789");
        for seq in 0..4 {
            assert_eq!(r.first(seq, u64::MAX, (), chunk.clone()), Ok(None));
            let cap = r
                .pending
                .get(&seq)
                .map(|p| p.joined.capacity())
                .unwrap_or(0);
            assert!((10..=64).contains(&cap), "sequence {seq}: room {cap}");
        }
        // 64 + 36, then the chunks alone.
        assert_eq!(r.reserved, 120);
        r.clear();
        assert_eq!(r.reserved, 0);
    }

    #[test]
    fn reassembler_errors() {
        let mut r: Reassembler<()> = Reassembler::new(ReassemblyLimits {
            max_pending: 1,
            max_message_size: 10,
            max_buffered: 100,
        });
        let b = |s: &'static [u8]| Bytes::from_static(s);
        assert_eq!(
            r.continuation(1, 1, b(b"")),
            Err(FragmentError::UnknownSequence {
                sequence_id: 1,
                fragment_id: 1
            })
        );
        assert_eq!(
            r.first(1, 0, (), b(b"")),
            Err(FragmentError::ZeroFragmentId { sequence_id: 1 })
        );
        assert_eq!(r.first(1, 3, (), b(b"abc")), Ok(None));
        assert_eq!(
            r.first(1, 3, (), b(b"abc")),
            Err(FragmentError::DuplicateSequence { sequence_id: 1 })
        );
        assert_eq!(
            r.first(2, 3, (), b(b"abc")),
            Err(FragmentError::TooManyPending {
                sequence_id: 2,
                limit: 1
            })
        );
        assert_eq!(
            r.continuation(1, 1, b(b"")),
            Err(FragmentError::OutOfOrder {
                sequence_id: 1,
                expected: 2,
                found: 1
            })
        );
        assert_eq!(r.pending(), 0, "a broken sequence is dropped");
        assert_eq!(r.first(1, 3, (), b(b"abcdef")), Ok(None));
        assert_eq!(
            r.continuation(1, 2, b(b"ghijk")),
            Err(FragmentError::TooLarge {
                sequence_id: 1,
                size: 11,
                limit: 10
            })
        );
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn a_connection_creates_at_most_its_budget_of_new_atoms() {
        let tag = format!("budget_{}_{}", std::process::id(), line!());
        let mut rx = DistDecoder::with_framing(Framing::PassThrough).max_new_atoms(2);
        // '' is in the table (whichever test runs first).
        let _ = Atom::from("");
        // Written by hand, so that no encoder interns the texts first:
        // {2, '', Text}, a SEND control term with a fresh atom in it.
        let frame_with = |n: usize| {
            let text = format!("{tag}_{n}");
            let mut f = vec![PASS_THROUGH, VERSION_MAGIC];
            f.extend_from_slice(&[104, 3, 97, 2, 119, 0]);
            f.extend_from_slice(&[119, text.len() as u8]);
            f.extend_from_slice(text.as_bytes());
            Bytes::from(f)
        };
        let _ = rx.decode_frame(frame_with(0));
        // Atoms already in the table cost nothing.
        let _ = rx.decode_frame(frame_with(0));
        assert_eq!(rx.new_atoms(), 1);
        let _ = rx.decode_frame(frame_with(1));
        assert_eq!(rx.new_atoms(), 2);
        let err = rx.decode_frame(frame_with(2)).unwrap_err();
        assert!(err.to_string().contains("too many new atoms"), "{err}");
        assert_eq!(rx.new_atoms(), 2);
        // The refused text was not interned.
        assert!(Atom::lookup(&format!("{tag}_2")).is_none());
    }
}
