//! Erlang's term order and equality.
//!
//! `number < atom < reference < fun < port < pid < tuple < map < nil < list
//! < bitstring`, with Erlang's rules inside each kind. Two orders exist, as
//! in Erlang:
//!
//! - the standard order (`<`, `==`, `lists:sort/1`), where an integer and a
//!   float of the same value are equal (`1 == 1.0`): [`Ord`] and
//!   [`PartialEq`] for [`Term`];
//! - the exact order (`=:=`, and the key order of maps), where every integer
//!   sorts before every float: [`Term::exact_cmp`] and [`Term::exact_eq`].
//!
//! Pids compare by serial, number, then node (name, then creation); ports
//! and references by node first, then their numbers: as the BEAM compares
//! them (checked against OTP 25 by the golden tests).

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use num_bigint::BigInt;
use num_traits::{FromPrimitive, ToPrimitive};

use super::{Fun, Map, Pid, Port, Reference, Term};

/// The position of a term's kind in the term order.
fn class(t: &Term) -> u8 {
    match t {
        Term::Int(_) | Term::BigInt(_) | Term::Float(_) => 0,
        Term::Atom(_) => 1,
        Term::Ref(_) => 2,
        Term::Fun(_) => 3,
        Term::Port(_) => 4,
        Term::Pid(_) => 5,
        Term::Tuple(_) => 6,
        Term::Map(_) => 7,
        Term::List(v) if v.is_empty() => 8,
        Term::ByteList(b) if b.is_empty() => 8,
        Term::List(_) | Term::ByteList(_) | Term::ImproperList(_) => 9,
        Term::Binary(_) | Term::BitBinary(_) => 10,
    }
}

/// Compares an integer with a float exactly (no rounding of the integer).
fn cmp_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Less;
    }
    // 2^63 as f64 is exact.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f >= TWO_63 {
        return Ordering::Less;
    }
    if f < -TWO_63 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    // `t` is integral and in range, so the cast is exact.
    match i.cmp(&(t as i64)) {
        Ordering::Equal => {
            if f > t {
                Ordering::Less
            } else if f < t {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

fn cmp_big_float(b: &BigInt, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Less;
    }
    if f.is_infinite() {
        return if f > 0.0 {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let t = f.trunc();
    // An integral finite float converts to BigInt exactly.
    let tb = BigInt::from_f64(t).unwrap_or_default();
    match b.cmp(&tb) {
        Ordering::Equal => {
            if f > t {
                Ordering::Less
            } else if f < t {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

fn cmp_int_big(i: i64, b: &BigInt) -> Ordering {
    BigInt::from(i).cmp(b)
}

/// Compares numbers by value.
fn cmp_numbers(a: &Term, b: &Term) -> Ordering {
    use Term::*;
    match (a, b) {
        (Int(x), Int(y)) => x.cmp(y),
        (Int(x), BigInt(y)) => cmp_int_big(*x, y),
        (BigInt(x), Int(y)) => cmp_int_big(*y, x).reverse(),
        (BigInt(x), BigInt(y)) => x.cmp(y),
        // Erlang floats are finite and `0.0 == -0.0`; NaN, which Erlang never
        // makes, falls back to its bits to keep the order total.
        (Float(x), Float(y)) => x.partial_cmp(y).unwrap_or_else(|| x.total_cmp(y)),
        (Int(x), Float(y)) => cmp_int_float(*x, *y),
        (Float(x), Int(y)) => cmp_int_float(*y, *x).reverse(),
        (BigInt(x), Float(y)) => cmp_big_float(x, *y),
        (Float(x), BigInt(y)) => cmp_big_float(y, *x).reverse(),
        _ => Ordering::Equal,
    }
}

/// Compares two terms; `exact` selects the exact order (`=:=`).
pub(crate) fn compare(a: &Term, b: &Term, exact: bool) -> Ordering {
    let (ca, cb) = (class(a), class(b));
    if ca != cb {
        return ca.cmp(&cb);
    }
    use Term::*;
    match (a, b) {
        (Int(_) | BigInt(_) | Float(_), _) => {
            let (fa, fb) = (matches!(a, Float(_)), matches!(b, Float(_)));
            if exact && fa != fb {
                // The exact order puts every integer before every float.
                return fa.cmp(&fb);
            }
            cmp_numbers(a, b)
        }
        (Atom(x), Atom(y)) => x.cmp(y),
        (Ref(x), Ref(y)) => cmp_refs(x, y),
        (Fun(x), Fun(y)) => super::deep(|| cmp_funs(x, y, exact)),
        (Port(x), Port(y)) => cmp_ports(x, y),
        (Pid(x), Pid(y)) => cmp_pids(x, y),
        (Tuple(x), Tuple(y)) => x
            .len()
            .cmp(&y.len())
            .then_with(|| super::deep(|| cmp_seq(x.iter(), y.iter(), exact))),
        (Map(x), Map(y)) => super::deep(|| cmp_maps(x, y, exact)),
        (Binary(_) | BitBinary(_), _) => cmp_bits(a, b),
        _ if ca == 8 => Ordering::Equal,
        _ => super::deep(|| cmp_lists(a, b, exact)),
    }
}

fn cmp_seq<'a>(
    mut x: impl Iterator<Item = &'a Term>,
    mut y: impl Iterator<Item = &'a Term>,
    exact: bool,
) -> Ordering {
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => match compare(p, q, exact) {
                Ordering::Equal => {}
                o => return o,
            },
        }
    }
}

/// A view of a list as elements and a tail, whatever its shape.
enum ListView<'a> {
    Terms(&'a [Term], Option<&'a Term>),
    Bytes(&'a [u8]),
}

fn view(t: &Term) -> ListView<'_> {
    match t {
        Term::List(v) => ListView::Terms(v, None),
        Term::ByteList(b) => ListView::Bytes(b),
        Term::ImproperList(l) => ListView::Terms(&l.elems, Some(&l.tail)),
        _ => ListView::Terms(&[], None),
    }
}

impl<'a> ListView<'a> {
    fn len(&self) -> usize {
        match self {
            ListView::Terms(v, _) => v.len(),
            ListView::Bytes(b) => b.len(),
        }
    }

    fn tail(&self) -> Option<&'a Term> {
        match self {
            ListView::Terms(_, t) => *t,
            ListView::Bytes(_) => None,
        }
    }
}

/// Compares the `i`-th elements of two lists (a byte list's element is a
/// small integer, made on the stack: no allocation).
fn cmp_elem(a: &ListView<'_>, b: &ListView<'_>, i: usize, exact: bool) -> Ordering {
    let int = |bytes: &[u8]| Term::Int(bytes.get(i).map_or(0, |&c| i64::from(c)));
    match (a, b) {
        (ListView::Bytes(x), ListView::Bytes(y)) => x.get(i).cmp(&y.get(i)),
        (ListView::Terms(x, _), ListView::Bytes(y)) => match x.get(i) {
            Some(t) => compare(t, &int(y), exact),
            None => Ordering::Less,
        },
        (ListView::Bytes(x), ListView::Terms(y, _)) => match y.get(i) {
            Some(t) => compare(&int(x), t, exact),
            None => Ordering::Greater,
        },
        (ListView::Terms(x, _), ListView::Terms(y, _)) => match (x.get(i), y.get(i)) {
            (Some(p), Some(q)) => compare(p, q, exact),
            (p, q) => p.is_some().cmp(&q.is_some()),
        },
    }
}

fn cmp_lists(a: &Term, b: &Term, exact: bool) -> Ordering {
    let (va, vb) = (view(a), view(b));
    if let (ListView::Bytes(x), ListView::Bytes(y)) = (&va, &vb) {
        return x.cmp(y);
    }
    // Walk cons cells: [H|T] compares heads, then tails.
    let n = va.len().min(vb.len());
    for i in 0..n {
        match cmp_elem(&va, &vb, i, exact) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    // One side ran out of elements: compare the remaining tails as terms.
    let rest_a = if va.len() > n {
        Rest::Cons
    } else {
        tail_of(va.tail())
    };
    let rest_b = if vb.len() > n {
        Rest::Cons
    } else {
        tail_of(vb.tail())
    };
    match (rest_a, rest_b) {
        (Rest::Nil, Rest::Nil) => Ordering::Equal,
        (Rest::Nil, Rest::Cons) => Ordering::Less,
        (Rest::Cons, Rest::Nil) => Ordering::Greater,
        (Rest::Nil, Rest::Other(t)) => compare(&Term::NIL, t, exact),
        (Rest::Other(t), Rest::Nil) => compare(t, &Term::NIL, exact),
        (Rest::Other(t), Rest::Cons) => class(t).cmp(&9),
        (Rest::Cons, Rest::Other(t)) => 9.cmp(&class(t)),
        (Rest::Other(x), Rest::Other(y)) => compare(x, y, exact),
        (Rest::Cons, Rest::Cons) => Ordering::Equal,
    }
}

fn tail_of(tail: Option<&Term>) -> Rest<'_> {
    match tail {
        None => Rest::Nil,
        Some(t) => Rest::Other(t),
    }
}

enum Rest<'a> {
    Nil,
    Cons,
    Other(&'a Term),
}

fn bits_of(t: &Term) -> (&[u8], usize) {
    match t {
        Term::Binary(b) => (b, b.len() * 8),
        Term::BitBinary(bb) => (
            &bb.bytes,
            bb.bytes.len().saturating_sub(1) * 8 + usize::from(bb.bits),
        ),
        _ => (&[], 0),
    }
}

/// Bitstrings compare bit by bit; a prefix sorts first.
fn cmp_bits(a: &Term, b: &Term) -> Ordering {
    let (xa, la) = bits_of(a);
    let (xb, lb) = bits_of(b);
    let common = la.min(lb);
    let whole = common / 8;
    match xa[..whole.min(xa.len())].cmp(&xb[..whole.min(xb.len())]) {
        Ordering::Equal => {}
        o => return o,
    }
    let rem = common % 8;
    if rem > 0 {
        let mask = 0xffu8 << (8 - rem);
        let pa = xa.get(whole).copied().unwrap_or(0) & mask;
        let pb = xb.get(whole).copied().unwrap_or(0) & mask;
        match pa.cmp(&pb) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    la.cmp(&lb)
}

fn cmp_node(an: &super::Atom, ac: u32, bn: &super::Atom, bc: u32) -> Ordering {
    an.cmp(bn).then(ac.cmp(&bc))
}

fn cmp_pids(a: &Pid, b: &Pid) -> Ordering {
    a.serial
        .cmp(&b.serial)
        .then(a.id.cmp(&b.id))
        .then_with(|| cmp_node(&a.node, a.creation, &b.node, b.creation))
}

/// Ports compare by node first, then number (unlike pids), as the BEAM
/// orders them.
fn cmp_ports(a: &Port, b: &Port) -> Ordering {
    cmp_node(&a.node, a.creation, &b.node, b.creation).then(a.id.cmp(&b.id))
}

fn cmp_refs(a: &Reference, b: &Reference) -> Ordering {
    cmp_node(&a.node, a.creation, &b.node, b.creation).then_with(|| {
        let (x, y) = (a.ids(), b.ids());
        x.len().cmp(&y.len()).then_with(|| {
            // The last word is the most significant.
            x.iter().rev().cmp(y.iter().rev())
        })
    })
}

fn cmp_funs(a: &Fun, b: &Fun, exact: bool) -> Ordering {
    match (a, b) {
        (
            Fun::Export {
                module: m1,
                function: f1,
                arity: a1,
            },
            Fun::Export {
                module: m2,
                function: f2,
                arity: a2,
            },
        ) => m1.cmp(m2).then(f1.cmp(f2)).then(a1.cmp(a2)),
        (Fun::Local(_), Fun::Export { .. }) => Ordering::Less,
        (Fun::Export { .. }, Fun::Local(_)) => Ordering::Greater,
        (Fun::Local(x), Fun::Local(y)) => x
            .module
            .cmp(&y.module)
            .then(x.old_index.cmp(&y.old_index))
            .then(x.old_uniq.cmp(&y.old_uniq))
            .then_with(|| cmp_pids(&x.pid, &y.pid))
            .then_with(|| x.free_vars.len().cmp(&y.free_vars.len()))
            .then_with(|| cmp_seq(x.free_vars.iter(), y.free_vars.iter(), exact)),
    }
}

/// Maps compare by size, then by their keys in key order, then by the
/// values in key order.
fn cmp_maps(a: &Map, b: &Map, exact: bool) -> Ordering {
    match a.len().cmp(&b.len()) {
        Ordering::Equal => {}
        o => return o,
    }
    let sa = sorted_entries(a);
    let sb = sorted_entries(b);
    for (x, y) in sa.iter().zip(&sb) {
        match compare(x.0, y.0, true) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    for (x, y) in sa.iter().zip(&sb) {
        match compare(x.1, y.1, exact) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    Ordering::Equal
}

/// A map's entries in key order (exact order, as maps sort their keys).
pub(crate) fn sorted_entries(m: &Map) -> Vec<(&Term, &Term)> {
    let mut v: Vec<(&Term, &Term)> = m.entries.iter().map(|(k, v)| (k, v)).collect();
    if !v
        .windows(2)
        .all(|w| compare(w[0].0, w[1].0, true) == Ordering::Less)
    {
        v.sort_by(|x, y| compare(x.0, y.0, true));
    }
    v
}

impl Term {
    /// Erlang's exact match, `=:=`: like `==` except that an integer never
    /// equals a float.
    ///
    /// ```
    /// use erldist::Term;
    /// assert_eq!(Term::from(1), Term::from(1.0));
    /// assert!(!Term::from(1).exact_eq(&Term::from(1.0)));
    /// ```
    pub fn exact_eq(&self, other: &Term) -> bool {
        compare(self, other, true) == Ordering::Equal
    }

    /// The exact term order: the standard order, except that every integer
    /// sorts before every float (the order of map keys).
    pub fn exact_cmp(&self, other: &Term) -> Ordering {
        compare(self, other, true)
    }
}

impl PartialEq for Term {
    fn eq(&self, other: &Term) -> bool {
        compare(self, other, false) == Ordering::Equal
    }
}

impl Eq for Term {}

impl PartialOrd for Term {
    fn partial_cmp(&self, other: &Term) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Term {
    fn cmp(&self, other: &Term) -> Ordering {
        compare(self, other, false)
    }
}

impl PartialEq for Map {
    fn eq(&self, other: &Map) -> bool {
        cmp_maps(self, other, false) == Ordering::Equal
    }
}

/// Hashing agrees with `==`: an integral float hashes as the integer.
impl Hash for Term {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Term::Tuple(_)
            | Term::List(_)
            | Term::ImproperList(_)
            | Term::Map(_)
            | Term::Fun(_) => super::deep(|| hash_term(self, state)),
            _ => hash_term(self, state),
        }
    }
}

fn hash_term<H: Hasher>(this: &Term, state: &mut H) {
    class(this).hash(state);
    match this {
        Term::Int(i) => hash_int(*i, state),
        Term::BigInt(b) => match b.to_i64() {
            Some(i) => hash_int(i, state),
            None => b.hash(state),
        },
        Term::Float(f) => {
            if f.fract() == 0.0 && f.is_finite() {
                if let Some(i) = f.to_i64() {
                    hash_int(i, state);
                } else if let Some(b) = BigInt::from_f64(*f) {
                    b.hash(state);
                }
            } else {
                f.to_bits().hash(state);
            }
        }
        Term::Atom(a) => a.hash(state),
        Term::Binary(_) | Term::BitBinary(_) => {
            let (bytes, bits) = bits_of(this);
            bytes.hash(state);
            bits.hash(state);
        }
        Term::Tuple(v) => {
            for t in v {
                t.hash(state);
            }
        }
        Term::List(_) | Term::ByteList(_) | Term::ImproperList(_) => match view(this) {
            ListView::Bytes(b) => {
                for &c in b {
                    hash_int(i64::from(c), state);
                }
            }
            ListView::Terms(v, tail) => {
                for t in v {
                    t.hash(state);
                }
                if let Some(t) = tail {
                    0xffu8.hash(state);
                    t.hash(state);
                }
            }
        },
        Term::Map(m) => {
            for (k, v) in sorted_entries(m) {
                k.hash(state);
                v.hash(state);
            }
        }
        Term::Pid(p) => p.hash(state),
        Term::Port(p) => p.hash(state),
        Term::Ref(r) => r.hash(state),
        Term::Fun(f) => match &**f {
            Fun::Export {
                module,
                function,
                arity,
            } => {
                module.hash(state);
                function.hash(state);
                arity.hash(state);
            }
            Fun::Local(l) => {
                // The fields the order compares, and no others.
                l.module.hash(state);
                l.old_index.hash(state);
                l.old_uniq.hash(state);
                l.pid.hash(state);
                for v in &l.free_vars {
                    v.hash(state);
                }
            }
        },
    }
}

fn hash_int<H: Hasher>(i: i64, state: &mut H) {
    i.hash(state)
}
