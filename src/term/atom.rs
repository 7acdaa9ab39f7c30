//! Interned atoms.
//!
//! Every distinct atom text is stored once, for the life of the process, in a
//! global table, exactly as the BEAM keeps its atom table. An [`Atom`] is a
//! pointer into that table: copying it is free, and two atoms are equal exactly
//! when they point at the same entry. Like the BEAM, the table has a limit
//! ([`ATOM_TABLE_LIMIT`]); decoders use [`Atom::try_new`], which refuses to
//! create new atoms past it, so a peer cannot exhaust memory with fresh atoms.
//!
//! The table is shared by every connection, so one peer filling it would
//! starve the others. An [`AtomBudget`] bounds how many *new* atoms (texts
//! not yet in the table) one source may add: each distribution connection
//! has one (see `DistDecoder::max_new_atoms`), so a peer that sends
//! ever-new atom texts is disconnected long before the table fills. Atoms
//! already in the table cost nothing.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, RwLock};

/// The most atoms the table holds before [`Atom::try_new`] refuses new ones
/// (the BEAM's default `+t` limit).
pub const ATOM_TABLE_LIMIT: usize = 1_048_576;

/// The longest atom, in characters, that Erlang accepts.
pub const MAX_ATOM_CHARS: usize = 255;

/// An Erlang atom: an interned, immutable name.
///
/// ```
/// use erldist::Atom;
/// let ok = Atom::from("ok");
/// assert_eq!(ok, Atom::from(String::from("ok")));
/// assert_eq!(ok.as_str(), "ok");
/// ```
#[derive(Clone, Copy)]
pub struct Atom(&'static Entry);

struct Entry {
    /// The text (the tail of `ext`).
    name: &'static str,
    /// The atom as the encoder writes it: `SMALL_ATOM_UTF8_EXT` or
    /// `ATOM_UTF8_EXT`, the length, the text. Empty when the atom has more
    /// than [`MAX_ATOM_CHARS`] characters and cannot be encoded.
    ext: &'static [u8],
    /// The first 8 bytes of the text, big-endian, zero-padded: comparing
    /// these orders most pairs of atoms without reading the text.
    prefix: u64,
    /// `ext` followed by zeros to [`EXT_BLOCK`] bytes (the same
    /// allocation), when `ext` is not empty and fits: the encoder copies
    /// the whole fixed-size block and keeps `ext.len()` bytes of it, which
    /// spares a variable-length copy per atom.
    block: Option<&'static [u8; EXT_BLOCK]>,
}

/// The size of an atom's padded external form ([`Atom::ext_block`]):
/// atoms of up to 30 bytes of text (nearly all of them) fit.
pub(crate) const EXT_BLOCK: usize = 32;

impl Entry {
    /// Leaks a new entry for `name` (atoms live as long as the process).
    fn leak(name: &str) -> &'static Entry {
        let bytes = name.as_bytes();
        let encodable = bytes.len() <= MAX_ATOM_CHARS || name.chars().count() <= MAX_ATOM_CHARS;
        let mut ext = Vec::with_capacity((bytes.len() + 3).max(EXT_BLOCK));
        if encodable {
            if bytes.len() < 256 {
                ext.extend_from_slice(&[super::tags::SMALL_ATOM_UTF8_EXT, bytes.len() as u8]);
            } else {
                // At most 255 characters of at most 4 bytes: fits in 16 bits.
                ext.push(super::tags::ATOM_UTF8_EXT);
                ext.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            }
        }
        let start = ext.len();
        ext.extend_from_slice(bytes);
        let ext_len = ext.len();
        // Zero padding up to a whole block (not part of the text or `ext`).
        ext.resize(ext_len.max(EXT_BLOCK), 0);
        let padded: &'static [u8] = Box::leak(ext.into_boxed_slice());
        let (ext, _) = padded.split_at(ext_len);
        let (head, text) = ext.split_at(start);
        let name = match std::str::from_utf8(text) {
            Ok(name) => name,
            // Unreachable: `text` is a copy of a `str`.
            Err(_) => unreachable!("atom text is UTF-8"),
        };
        let mut prefix = [0u8; 8];
        for (p, b) in prefix.iter_mut().zip(bytes) {
            *p = *b;
        }
        Box::leak(Box::new(Entry {
            name,
            ext: if head.is_empty() { &[] } else { ext },
            prefix: u64::from_be_bytes(prefix),
            block: if head.is_empty() || ext_len > EXT_BLOCK {
                None
            } else {
                padded.first_chunk::<EXT_BLOCK>()
            },
        }))
    }
}

type Table = HashMap<&'static str, &'static Entry, foldhash::fast::RandomState>;

struct Interner {
    // Keys borrow from the leaked entries they map to.
    names: RwLock<Table>,
    count: AtomicUsize,
}

fn interner() -> &'static Interner {
    static INTERNER: OnceLock<Interner> = OnceLock::new();
    INTERNER.get_or_init(|| Interner {
        names: RwLock::new(Table::default()),
        count: AtomicUsize::new(0),
    })
}

thread_local! {
    static RECENT: [std::cell::Cell<Recent>; 256] =
        const { [const { std::cell::Cell::new(Recent::EMPTY) }; 256] };
}

/// A slot of the per-thread cache of recent atoms: the atom and the key
/// of its text ([`recent_key`]), so that a text of up to 16 bytes, which
/// the key holds whole, is matched without reading the atom's entry.
#[derive(Clone, Copy)]
struct Recent {
    key: RecentKey,
    atom: Option<Atom>,
}

impl Recent {
    const EMPTY: Recent = Recent {
        key: RecentKey {
            first: 0,
            last: 0,
            len: 0,
        },
        atom: None,
    };
}

/// A text's length and its first and last 8 bytes (all of it, up to 16
/// bytes; zero-extended under 8), read as two words rather than byte by
/// byte.
#[derive(Clone, Copy, PartialEq, Eq)]
struct RecentKey {
    first: u64,
    last: u64,
    len: usize,
}

#[inline(always)]
fn recent_key(bytes: &[u8]) -> RecentKey {
    let (first, last) = match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        (Some(f), Some(l)) => (u64::from_le_bytes(*f), u64::from_le_bytes(*l)),
        _ => match (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
            (Some(f), Some(l)) => (
                u64::from(u32::from_le_bytes(*f)),
                u64::from(u32::from_le_bytes(*l)),
            ),
            _ => {
                // Up to 3 bytes.
                let mut x = 0u64;
                for (i, &c) in bytes.iter().enumerate() {
                    x |= u64::from(c) << (8 * i);
                }
                (x, 0)
            }
        },
    };
    RecentKey {
        first,
        last,
        len: bytes.len(),
    }
}

/// The slot of a text in the per-thread cache of recent atoms: a hash of
/// its key. Texts that share a slot cost only a miss.
#[inline(always)]
fn recent_slot(k: &RecentKey) -> usize {
    let h = (k.first ^ k.last.rotate_left(29) ^ ((k.len as u64) << 56))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 56) as usize
}

/// The atom of the text `bytes` if the per-thread cache of recent atoms
/// holds it; else the key and slot to [`remember`] it under.
#[inline(always)]
fn recent(bytes: &[u8]) -> Result<Atom, (RecentKey, usize)> {
    let key = recent_key(bytes);
    let slot = recent_slot(&key);
    let held = RECENT.with(|r| r.get(slot).map(|c| c.get()));
    match held {
        // The key is the whole text up to 16 bytes; past that the middle
        // is compared too.
        Some(Recent {
            key: k,
            atom: Some(a),
        }) if k == key && (key.len <= 16 || a.as_str().as_bytes() == bytes) => Ok(a),
        _ => Err((key, slot)),
    }
}

/// Puts `atom` in the per-thread cache of recent atoms, under the key and
/// slot that [`recent`] gave for its text.
fn remember(key: RecentKey, slot: usize, atom: Atom) {
    RECENT.with(|r| {
        if let Some(c) = r.get(slot) {
            c.set(Recent {
                key,
                atom: Some(atom),
            });
        }
    });
}

/// Why bytes could not become an atom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AtomFromBytesError {
    /// Not UTF-8.
    Utf8,
    /// Too long, or the table is full.
    Atom(AtomError),
}

/// A bound on how many new atoms one source of atoms (a connection) may
/// add to the process-wide table. Atoms already in the table cost nothing.
///
/// ```
/// use erldist::term::AtomBudget;
/// use erldist::Atom;
/// let budget = AtomBudget::new(1);
/// let name = format!("budget_doc_{}", std::process::id());
/// assert!(Atom::try_new_within(&name, &budget).is_ok());
/// assert!(Atom::try_new_within(&name, &budget).is_ok()); // not new: free
/// assert!(Atom::try_new_within(&format!("{name}_2"), &budget).is_err());
/// assert_eq!(budget.used(), 1);
/// ```
#[derive(Debug)]
pub struct AtomBudget {
    limit: usize,
    used: AtomicUsize,
}

impl AtomBudget {
    /// A budget of `limit` new atoms.
    pub fn new(limit: usize) -> AtomBudget {
        AtomBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// No bound but the table's own ([`ATOM_TABLE_LIMIT`]).
    pub fn unlimited() -> AtomBudget {
        AtomBudget::new(usize::MAX)
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many new atoms were created against this budget.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes one new atom from the budget; `false` when it is spent.
    fn take(&self) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                (u < self.limit).then_some(u + 1)
            })
            .is_ok()
    }
}

impl Default for AtomBudget {
    fn default() -> AtomBudget {
        AtomBudget::unlimited()
    }
}

/// Why an atom could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AtomError {
    /// The atom has more than [`MAX_ATOM_CHARS`] characters.
    #[error("atom too long: {chars} characters, at most 255 allowed")]
    TooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// The atom table is full (see [`ATOM_TABLE_LIMIT`]).
    #[error("atom table full ({ATOM_TABLE_LIMIT} atoms)")]
    TableFull,
    /// The source (a peer) has created as many new atoms as its
    /// [`AtomBudget`] allows.
    #[error("too many new atoms from one source (limit {limit})")]
    BudgetSpent {
        /// The budget's limit.
        limit: usize,
    },
}

impl Atom {
    /// Interns `name`, refusing names longer than 255 characters and new
    /// atoms once the table holds [`ATOM_TABLE_LIMIT`] atoms. Decoders of
    /// peer data use this.
    pub fn try_new(name: &str) -> Result<Atom, AtomError> {
        if name.len() > MAX_ATOM_CHARS {
            let chars = name.chars().count();
            if chars > MAX_ATOM_CHARS {
                return Err(AtomError::TooLong { chars });
            }
        }
        Self::intern(name, true)
    }

    /// Interns `name` as [`Atom::try_new`] does, and, if the text is not in
    /// the table yet, charges one new atom to `budget`, refusing it once
    /// the budget is spent ([`AtomError::BudgetSpent`]).
    pub fn try_new_within(name: &str, budget: &AtomBudget) -> Result<Atom, AtomError> {
        if name.len() > MAX_ATOM_CHARS {
            let chars = name.chars().count();
            if chars > MAX_ATOM_CHARS {
                return Err(AtomError::TooLong { chars });
            }
        }
        if let Some(a) = Self::lookup(name) {
            return Ok(a);
        }
        if !budget.take() {
            return Err(AtomError::BudgetSpent {
                limit: budget.limit,
            });
        }
        Self::intern(name, true)
    }

    /// The atom of this text, if it is in the table.
    pub(crate) fn lookup(name: &str) -> Option<Atom> {
        if let Ok(a) = recent(name.as_bytes()) {
            return Some(a);
        }
        let guard = interner().names.read().unwrap_or_else(|e| e.into_inner());
        guard.get(name).map(|entry| Atom(entry))
    }

    /// Interns `name` without the length and table limits. For names
    /// written by the program itself; use [`Atom::try_new`] for data that
    /// comes from elsewhere. An atom over 255 characters cannot be encoded.
    pub fn new(name: &str) -> Atom {
        match Self::intern(name, false) {
            Ok(atom) => atom,
            // Unreachable: `intern` only fails when asked to check the limit.
            Err(_) => unreachable!("unlimited interning cannot fail"),
        }
    }

    fn intern(name: &str, limited: bool) -> Result<Atom, AtomError> {
        let (key, slot) = match recent(name.as_bytes()) {
            Ok(a) => return Ok(a),
            Err(at) => at,
        };
        let a = Self::intern_in_table(name, limited)?;
        // Only texts a decoder may accept: a hit skips the length check.
        if name.len() <= MAX_ATOM_CHARS {
            remember(key, slot, a);
        }
        Ok(a)
    }

    /// [`Atom::intern`] past the per-thread cache.
    #[inline(never)]
    fn intern_in_table(name: &str, limited: bool) -> Result<Atom, AtomError> {
        let table = interner();
        {
            let guard = table.names.read().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = guard.get(name) {
                return Ok(Atom(entry));
            }
        }
        let mut guard = table.names.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = guard.get(name) {
            return Ok(Atom(entry));
        }
        if limited && table.count.load(Ordering::Relaxed) >= ATOM_TABLE_LIMIT {
            return Err(AtomError::TableFull);
        }
        // Atoms live as long as the process, as in the BEAM.
        let entry = Entry::leak(name);
        guard.insert(entry.name, entry);
        table.count.fetch_add(1, Ordering::Relaxed);
        Ok(Atom(entry))
    }

    /// Interns UTF-8 `bytes` as [`Atom::try_new`] does, first looking in
    /// a small per-thread cache of recent atoms, which spares the table's
    /// lock and hash for the atoms a stream repeats.
    #[inline]
    pub(crate) fn try_from_utf8(
        bytes: &[u8],
        budget: Option<&AtomBudget>,
    ) -> Result<Atom, AtomFromBytesError> {
        match recent(bytes) {
            Ok(a) => Ok(a),
            Err(_) => Self::try_from_utf8_missed(bytes, budget),
        }
    }

    /// [`Atom::try_from_utf8`] past the per-thread cache (which interning
    /// updates).
    #[inline(never)]
    fn try_from_utf8_missed(
        bytes: &[u8],
        budget: Option<&AtomBudget>,
    ) -> Result<Atom, AtomFromBytesError> {
        let text = std::str::from_utf8(bytes).map_err(|_| AtomFromBytesError::Utf8)?;
        match budget {
            Some(b) => Atom::try_new_within(text, b),
            None => Atom::try_new(text),
        }
        .map_err(AtomFromBytesError::Atom)
    }

    /// The atom's text.
    #[inline]
    pub fn as_str(&self) -> &'static str {
        self.0.name
    }

    /// The atom in the external format (tag, length, UTF-8 text), or
    /// `None` when it has more than [`MAX_ATOM_CHARS`] characters.
    #[inline]
    pub(crate) fn ext_bytes(&self) -> Option<&'static [u8]> {
        let ext = self.0.ext;
        (!ext.is_empty()).then_some(ext)
    }

    /// The atom's external form (as [`Atom::ext_bytes`]) as the first
    /// `len` bytes of a zero-padded block of [`EXT_BLOCK`] bytes, and
    /// `len`; `None` when it does not fit or cannot be encoded.
    #[inline(always)]
    pub(crate) fn ext_block(&self) -> Option<(&'static [u8; EXT_BLOCK], usize)> {
        match self.0.block {
            Some(b) => Some((b, self.0.ext.len())),
            None => None,
        }
    }

    /// How many atoms the process has interned so far.
    pub fn table_size() -> usize {
        interner().count.load(Ordering::Relaxed)
    }

    /// Whether the atom's text is entirely Latin-1 (so old `ATOM_EXT`
    /// consumers could read it).
    pub fn is_latin1(&self) -> bool {
        self.as_str().chars().all(|c| (c as u32) < 256)
    }
}

impl PartialEq for Atom {
    #[inline]
    fn eq(&self, other: &Atom) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Atom {}

impl Hash for Atom {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0 as *const Entry as usize).hash(state)
    }
}

impl PartialOrd for Atom {
    fn partial_cmp(&self, other: &Atom) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Atoms order by their text, byte by byte in UTF-8 (which is code point
/// order), as Erlang orders them.
impl Ord for Atom {
    #[inline]
    fn cmp(&self, other: &Atom) -> std::cmp::Ordering {
        if self == other {
            return std::cmp::Ordering::Equal;
        }
        // Zero padding keeps the prefixes in the texts' order: where they
        // differ, the texts differ at the same byte, or the shorter ends there.
        match self.0.prefix.cmp(&other.0.prefix) {
            std::cmp::Ordering::Equal => self.as_str().as_bytes().cmp(other.as_str().as_bytes()),
            o => o,
        }
    }
}

impl fmt::Debug for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Atom({:?})", self.as_str())
    }
}

/// The atom's text, unquoted (`Term::Atom`'s `Display` quotes as `~w`).
impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Atom {
    fn from(name: &str) -> Atom {
        Atom::new(name)
    }
}

impl From<String> for Atom {
    fn from(name: String) -> Atom {
        Atom::new(&name)
    }
}

impl From<&String> for Atom {
    fn from(name: &String) -> Atom {
        Atom::new(name)
    }
}

impl AsRef<str> for Atom {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Atom {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Atom {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_programs_long_atoms_do_not_let_long_texts_past_a_decoder() {
        // Atom::new takes names of any length and caches short ones; a
        // decoder must still refuse a text of over 255 characters.
        let long = format!("{}_{}", "x".repeat(300), std::process::id());
        let a = Atom::new(&long);
        assert_eq!(Atom::new(&long), a);
        assert_eq!(Atom::new(&long).as_str(), long);
        assert!(matches!(
            Atom::try_from_utf8(long.as_bytes(), None),
            Err(AtomFromBytesError::Atom(AtomError::TooLong { .. }))
        ));
        // A short one made by the program is found by the decoder.
        let short = format!("short_{}", std::process::id());
        let b = Atom::new(&short);
        assert_eq!(Atom::try_from_utf8(short.as_bytes(), None), Ok(b));
    }

    #[test]
    fn recent_cache_tells_apart_texts_that_share_a_slot() {
        // The same length, first and last 8 bytes: one slot of the cache.
        let names = ["abcdefgh_one_12345678", "abcdefgh_two_12345678"];
        assert_eq!(
            recent_slot(&recent_key(names[0].as_bytes())),
            recent_slot(&recent_key(names[1].as_bytes()))
        );
        for _ in 0..3 {
            for name in names {
                let a = Atom::try_from_utf8(name.as_bytes(), None).ok();
                assert_eq!(a.map(|a| a.as_str()), Some(name));
            }
        }
        // Short texts, of every length up to 16 bytes.
        let text = "0123456789abcdef";
        for n in 0..=text.len() {
            let name = text.get(..n).unwrap_or_default();
            let a = Atom::try_from_utf8(name.as_bytes(), None).ok();
            assert_eq!(a.map(|a| a.as_str()), Some(name));
            assert_eq!(Atom::try_from_utf8(name.as_bytes(), None).ok(), a);
            // Every text that differs from it in one byte is another
            // atom, though the cache matches short texts by key alone.
            for i in 0..n {
                let mut other = name.as_bytes().to_vec();
                other[i] = b'_';
                let b = Atom::try_from_utf8(&other, None).ok();
                assert_eq!(b.map(|b| b.as_str().as_bytes()), Some(&other[..]));
                let again = Atom::try_from_utf8(name.as_bytes(), None).ok();
                assert_eq!(again.map(|a| a.as_str()), Some(name));
            }
        }
        assert_eq!(
            Atom::try_from_utf8(&[0xff, 0xfe], None),
            Err(AtomFromBytesError::Utf8)
        );
    }

    #[test]
    fn ext_block_is_the_external_form_padded_with_zeros() {
        for n in [0, 1, 29, 30, 31, 255] {
            let name = "é".repeat(n / 2) + &"a".repeat(n % 2);
            let a = Atom::new(&name);
            let ext = a.ext_bytes().unwrap();
            match a.ext_block() {
                Some((block, len)) => {
                    assert!(ext.len() <= EXT_BLOCK);
                    assert_eq!(len, ext.len());
                    assert_eq!(&block[..len], ext);
                    assert!(block[len..].iter().all(|&b| b == 0));
                }
                None => assert!(ext.len() > EXT_BLOCK),
            }
        }
        let a = Atom::new(&"x".repeat(300));
        assert_eq!((a.ext_bytes(), a.ext_block()), (None, None));
    }
}
