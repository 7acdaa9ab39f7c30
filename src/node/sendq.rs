//! What a peer task has yet to send, and the order it goes on the wire.
//!
//! A large message goes out in fragments (`FRAGMENTS`), and, as on BEAM,
//! the fragments of one process's large message need not hold up what
//! other processes send meanwhile: the queue hands the writer a slice of
//! each large message in turn, with new small messages in between.
//!
//! Erlang orders signals per pair of processes, so:
//! - a plain message from a process with a large message still going out
//!   waits behind it (in its stream's `behind` queue);
//! - any other signal (links, exits, monitors, spawn replies, sends with
//!   no known sender) is a barrier: it waits until every large message has
//!   gone, and everything queued after it waits behind it.
//!
//! The order in which messages are *encoded* is the order in which their
//! first frames are handed out, so atom-cache entries a header defines are
//! on the wire before any frame that uses them; continuation fragments
//! carry no atom-cache references.
//!
//! Sans-IO: the peer task feeds messages in and writes what
//! [`SendQueue::next_chunk`] returns.

use std::collections::VecDeque;

use crate::connection::control::{ControlMessage, DistMessage};
use crate::connection::dist_header::{DistEncoder, Prepared};
use crate::connection::framing::OutFrame;
use crate::term::{EncodeError, Pid, Term};

/// About how much of one large message is handed out per turn: its
/// frames up to this many bytes (at least one frame).
const SLICE_BYTES: usize = 256 * 1024;

/// How many of `frames`, from the first, make one turn's slice: enough to
/// reach [`SLICE_BYTES`], and at least one.
fn slice_len<'a>(frames: impl IntoIterator<Item = &'a OutFrame>) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for f in frames {
        if n > 0 && bytes >= SLICE_BYTES {
            break;
        }
        bytes += f.len();
        n += 1;
    }
    n
}

/// A message to send: as a process gave it, or encoded by it already
/// ([`Prepared`], most messages once the connection is up).
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// To be encoded by the connection (boxed: the queues stay small).
    Msg(Box<Unencoded>),
    /// Encoded by its sender.
    Prepared(Prepared),
}

/// A message the connection encodes, and its estimated weight.
#[derive(Debug)]
pub(crate) struct Unencoded {
    pub(crate) msg: DistMessage,
    weight: usize,
}

impl Outgoing {
    /// `msg`, to be encoded by the connection.
    pub(crate) fn unencoded(msg: DistMessage) -> Outgoing {
        let weight = 32 + msg.payload().map_or(0, |t| approx_size(t, 0));
        Outgoing::Msg(Box::new(Unencoded { msg, weight }))
    }

    /// About the bytes the message takes on the wire: exactly, once its
    /// sender has encoded it; estimated (once, when it was queued) before.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Outgoing::Prepared(p) => p.size(),
            Outgoing::Msg(m) => m.weight,
        }
    }
}

/// About the bytes `t` takes encoded, without encoding it. Below 32
/// levels each term counts as a few bytes.
fn approx_size(t: &Term, depth: usize) -> usize {
    const APPROX_DEPTH: usize = 32;
    let inner = |elems: &[Term]| {
        if depth < APPROX_DEPTH {
            elems.iter().map(|e| approx_size(e, depth + 1)).sum()
        } else {
            elems.len() * 8
        }
    };
    match t {
        Term::Binary(b) => 5 + b.len(),
        Term::ByteList(b) => 3 + b.len(),
        Term::BitBinary(b) => 6 + b.bytes.len(),
        Term::Tuple(v) | Term::List(v) => 5 + inner(v),
        Term::ImproperList(l) => 5 + inner(&l.elems) + approx_size(&l.tail, depth + 1),
        Term::Map(m) if depth < APPROX_DEPTH => {
            5 + m
                .iter()
                .map(|(k, v)| approx_size(k, depth + 1) + approx_size(v, depth + 1))
                .sum::<usize>()
        }
        Term::Map(m) => 5 + m.len() * 16,
        Term::Pid(_) | Term::Port(_) | Term::Ref(_) | Term::Fun(_) | Term::BigInt(_) => 24,
        _ => 8,
    }
}

/// A large message going out, and what its sender sent after it.
#[derive(Debug)]
struct Stream {
    sender: Pid,
    frames: VecDeque<OutFrame>,
    /// The part of the message's weight not yet released: released as
    /// its frames are handed out, all of it with the last.
    weight: usize,
    behind: VecDeque<Outgoing>,
}

impl Stream {
    /// Takes what `handed` bytes just handed out release of the
    /// message's weight: all that is left once its last frame has gone.
    fn release(&mut self, handed: usize) -> usize {
        let r = if self.frames.is_empty() {
            self.weight
        } else {
            handed.min(self.weight)
        };
        self.weight -= r;
        r
    }
}

/// Messages waiting to go to one peer (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    /// Received, not yet written.
    ready: VecDeque<Outgoing>,
    /// Large messages going out, served in turn.
    streams: VecDeque<Stream>,
    /// Behind a barrier: they go when every stream has ended.
    held: VecDeque<Outgoing>,
    /// The [`Outgoing::weight`] of the messages not yet encoded.
    weight: usize,
    /// The weight of the messages encoded since [`SendQueue::take_released`].
    released: usize,
}

/// The sender of a plain message, which may overtake others' large ones.
fn plain_sender(m: &Outgoing) -> Option<Pid> {
    let m = match m {
        Outgoing::Msg(m) => &m.msg,
        Outgoing::Prepared(p) => return p.sender(),
    };
    match m.control() {
        ControlMessage::SendSender { from, .. }
        | ControlMessage::SendSenderTt { from, .. }
        | ControlMessage::RegSend { from, .. }
        | ControlMessage::RegSendTt { from, .. }
        | ControlMessage::AliasSend { from, .. }
        | ControlMessage::AliasSendTt { from, .. } => Some(*from),
        _ => None,
    }
}

/// Frames being gathered for one write.
struct Chunk {
    frames: Vec<OutFrame>,
    bytes: usize,
}

impl Chunk {
    fn take(&mut self, frames: impl IntoIterator<Item = OutFrame>) {
        for f in frames {
            self.bytes += f.len();
            self.frames.push(f);
        }
    }

    /// Encodes `m` into the chunk; a message in more frames than one
    /// slice ([`slice_len`]) leaves the chunk with its first slice only and
    /// the rest returned.
    fn encode(
        &mut self,
        m: Outgoing,
        enc: &mut DistEncoder,
    ) -> Result<Option<VecDeque<OutFrame>>, EncodeError> {
        let before = self.frames.len();
        self.append(m, enc)?;
        let new = self.frames.get(before..).unwrap_or_default();
        let slice = slice_len(new);
        let rest = match new.len() {
            n if n <= slice => None,
            _ => Some(self.frames.drain(before + slice..).collect()),
        };
        self.counted_from(before);
        Ok(rest)
    }

    /// Encodes `m` into the chunk whole, however many frames it takes.
    fn encode_whole(&mut self, m: Outgoing, enc: &mut DistEncoder) -> Result<(), EncodeError> {
        let before = self.frames.len();
        self.append(m, enc)?;
        self.counted_from(before);
        Ok(())
    }

    /// Appends all of `m`'s frames, not yet counted.
    fn append(&mut self, m: Outgoing, enc: &mut DistEncoder) -> Result<(), EncodeError> {
        match m {
            Outgoing::Msg(m) => {
                enc.encode_split_into(&m.msg, &mut self.frames)?;
            }
            Outgoing::Prepared(p) => {
                if enc.encode_prepared(p, &mut self.frames).is_none() {
                    // Encoded while an earlier connection with the atom
                    // cache was up; lost with it, as what was queued for it.
                    tracing::warn!("message encoded for an earlier connection dropped");
                }
            }
        }
        Ok(())
    }

    /// Adds the frames from `before` on to the chunk's size.
    fn counted_from(&mut self, before: usize) {
        if let Some(new) = self.frames.get(before..) {
            self.bytes += new.iter().map(OutFrame::len).sum::<usize>();
        }
    }
}

impl SendQueue {
    /// Queues `m` behind everything queued so far.
    pub(crate) fn push(&mut self, m: Outgoing) {
        self.weight += m.weight();
        self.ready.push_back(m);
    }

    /// The weight of the messages encoded (handed out, or rejected) since
    /// the last call.
    pub(crate) fn take_released(&mut self) -> usize {
        std::mem::take(&mut self.released)
    }

    /// The weight of everything still queued, encoded or not: what is
    /// released if the queue is dropped.
    pub(crate) fn weight_left(&self) -> usize {
        self.weight + self.released + self.streams.iter().map(|s| s.weight).sum::<usize>()
    }

    /// Takes `m`'s weight off the messages not yet encoded: it is about to
    /// be.
    fn leaving(&mut self, m: &Outgoing) -> usize {
        let w = m.weight();
        self.weight = self.weight.saturating_sub(w);
        w
    }

    /// Whether nothing is left to send.
    pub(crate) fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.streams.is_empty() && self.held.is_empty()
    }

    /// Encodes what may go next and returns its frames, about `budget`
    /// bytes (more when one message that may not be sliced is larger).
    /// Messages that cannot be encoded are passed to `rejected` and
    /// dropped.
    pub(crate) fn next_chunk(
        &mut self,
        enc: &mut DistEncoder,
        budget: usize,
        rejected: &mut dyn FnMut(EncodeError),
    ) -> Vec<OutFrame> {
        let mut chunk = Chunk {
            frames: Vec::new(),
            bytes: 0,
        };
        loop {
            // New messages take at most half the budget while large ones
            // are going out, so that a steady flow of small messages does
            // not starve them.
            let share = if self.streams.is_empty() {
                budget
            } else {
                budget / 2
            };
            self.place_ready(enc, &mut chunk, share, rejected);
            self.serve_streams(enc, &mut chunk, budget, rejected);
            self.place_ready(enc, &mut chunk, budget, rejected);
            if chunk.bytes >= budget || !self.streams.is_empty() || self.held.is_empty() {
                return chunk.frames;
            }
            // Every stream has ended: what was held goes first, in order.
            let mut held = std::mem::take(&mut self.held);
            held.append(&mut self.ready);
            self.ready = held;
        }
    }

    fn place_ready(
        &mut self,
        enc: &mut DistEncoder,
        chunk: &mut Chunk,
        until: usize,
        rejected: &mut dyn FnMut(EncodeError),
    ) {
        while chunk.bytes < until {
            let Some(m) = self.ready.pop_front() else {
                break;
            };
            self.place(m, enc, chunk, rejected);
        }
    }

    fn place(
        &mut self,
        m: Outgoing,
        enc: &mut DistEncoder,
        chunk: &mut Chunk,
        rejected: &mut dyn FnMut(EncodeError),
    ) {
        if !self.held.is_empty() {
            self.held.push_back(m);
            return;
        }
        let Some(sender) = plain_sender(&m) else {
            if self.streams.is_empty() {
                // Not sliced: a signal goes whole.
                self.released += self.leaving(&m);
                if let Err(e) = chunk.encode_whole(m, enc) {
                    rejected(e);
                }
            } else {
                self.held.push_back(m);
            }
            return;
        };
        if let Some(s) = self.streams.iter_mut().find(|s| s.sender == sender) {
            s.behind.push_back(m);
            return;
        }
        let weight = self.leaving(&m);
        let before = chunk.bytes;
        match chunk.encode(m, enc) {
            Ok(Some(rest)) => {
                let mut s = Stream {
                    sender,
                    frames: rest,
                    weight,
                    behind: VecDeque::new(),
                };
                self.released += s.release(chunk.bytes - before);
                self.streams.push_back(s);
            }
            Ok(None) => self.released += weight,
            Err(e) => {
                self.released += weight;
                rejected(e);
            }
        }
    }

    /// One slice of each stream in turn, until the budget is spent or no
    /// stream is left; a stream whose message has gone goes on with what
    /// its sender sent behind it.
    fn serve_streams(
        &mut self,
        enc: &mut DistEncoder,
        chunk: &mut Chunk,
        budget: usize,
        rejected: &mut dyn FnMut(EncodeError),
    ) {
        while chunk.bytes < budget {
            let Some(mut s) = self.streams.pop_front() else {
                return;
            };
            let n = slice_len(&s.frames);
            let before = chunk.bytes;
            chunk.take(s.frames.drain(..n));
            self.released += s.release(chunk.bytes - before);
            while s.frames.is_empty() {
                let Some(m) = s.behind.pop_front() else {
                    break;
                };
                s.weight = self.leaving(&m);
                let before = chunk.bytes;
                match chunk.encode(m, enc) {
                    Ok(Some(rest)) => s.frames = rest,
                    Ok(None) => {}
                    Err(e) => rejected(e),
                }
                self.released += s.release(chunk.bytes - before);
            }
            if !s.frames.is_empty() || !s.behind.is_empty() {
                self.streams.push_back(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::dist_header::DistDecoder;
    use crate::flags::DistFlags;
    use crate::term::{Atom, Term};

    const FLAGS: DistFlags = DistFlags(DistFlags::DIST_HDR_ATOM_CACHE.0 | DistFlags::FRAGMENTS.0);

    fn pid(id: u32) -> Pid {
        Pid {
            node: Atom::from("a@localhost"),
            id,
            serial: 0,
            creation: 1,
        }
    }

    fn message(from: u32, tag: &str, len: usize) -> DistMessage {
        let payload = Term::tuple(vec![Term::atom(tag), Term::binary(vec![0u8; len])]);
        let control = ControlMessage::SendSender {
            from: pid(from),
            to: pid(99),
        };
        DistMessage::new(control, Some(payload)).unwrap()
    }

    /// A message from `from` carrying `{Tag, Binary of len bytes}`,
    /// encoded by its sender, as the node does once the connection is up.
    fn send(from: u32, tag: &str, len: usize) -> Outgoing {
        let p = Prepared::new(&message(from, tag, len)).expect("a plain message is prepared");
        assert_eq!(p.sender(), Some(pid(from)));
        Outgoing::Prepared(p)
    }

    /// The same message left to the connection to encode, as the node
    /// does with what is sent before the connection is up.
    fn queued(from: u32, tag: &str, len: usize) -> Outgoing {
        Outgoing::unencoded(message(from, tag, len))
    }

    /// The two ways a large message reaches the queue.
    const FORMS: [fn(u32, &str, usize) -> Outgoing; 2] = [send, queued];

    fn link(from: u32) -> Outgoing {
        let m = DistMessage::control_only(ControlMessage::Link {
            from: pid(from),
            to: pid(99),
        })
        .unwrap();
        assert!(Prepared::new(&m).is_none(), "a signal is not prepared");
        Outgoing::unencoded(m)
    }

    /// Runs the queue to the end and decodes the wire: what the peer gets,
    /// in order, as (sender id, tag or "link").
    fn wire(q: &mut SendQueue, budget: usize) -> Vec<(u32, String)> {
        let mut enc = DistEncoder::new(FLAGS);
        let mut dec = DistDecoder::new(FLAGS);
        let mut got = Vec::new();
        let mut rounds = 0;
        while !q.is_empty() {
            rounds += 1;
            assert!(rounds < 10_000, "the queue does not drain");
            for f in q.next_chunk(&mut enc, budget, &mut |e| panic!("{e}")) {
                if let Some(m) = dec.decode_frame(f.into_bytes()).unwrap() {
                    let (control, payload) = m.into_parts();
                    let item = match (control, payload) {
                        (ControlMessage::SendSender { from, .. }, Some(Term::Tuple(t))) => {
                            (from.id, t[0].to_string())
                        }
                        (ControlMessage::Link { from, .. }, None) => (from.id, "link".into()),
                        other => panic!("unexpected {other:?}"),
                    };
                    got.push(item);
                }
            }
        }
        got
    }

    /// What is pushed is released, exactly, as it is handed out; a large
    /// message a slice at a time; what is left is what was not handed out.
    #[test]
    fn weight_is_released_as_messages_are_handed_out() {
        for big in FORMS {
            let mut q = SendQueue::default();
            let msgs = vec![
                big(1, "big", 4 << 20),
                send(2, "small", 10),
                link(3),
                send(1, "behind", 100),
                big(4, "big2", 1 << 20),
                queued(5, "queued", 50),
            ];
            let pushed: usize = msgs.iter().map(Outgoing::weight).sum();
            for m in msgs {
                q.push(m);
            }
            assert!(pushed > 5 << 20, "weighs {pushed}");
            assert_eq!(q.weight_left(), pushed);
            let mut enc = DistEncoder::new(FLAGS);
            let mut released = 0;
            let mut first = true;
            while !q.is_empty() {
                let frames = q.next_chunk(&mut enc, 256 << 10, &mut |e| panic!("{e}"));
                let handed: usize = frames.iter().map(OutFrame::len).sum();
                let r = q.take_released();
                if first {
                    // Not the whole 4 MiB for its first slice.
                    assert!(r <= handed + 1024, "released {r} for {handed} handed out");
                    first = false;
                }
                released += r;
                assert_eq!(released + q.weight_left(), pushed);
            }
            assert_eq!(released, pushed);
            assert_eq!(q.weight_left(), 0);
        }
    }

    #[test]
    fn small_messages_overtake_another_process_large_one() {
        for big in FORMS {
            let mut q = SendQueue::default();
            q.push(big(1, "big", 4 << 20));
            q.push(send(2, "small", 10));
            let got = wire(&mut q, 256 << 10);
            assert_eq!(got, vec![(2, "small".into()), (1, "big".into())]);
        }
    }

    #[test]
    fn one_process_messages_keep_their_order() {
        for big in FORMS {
            let mut q = SendQueue::default();
            q.push(big(1, "big", 1 << 20));
            q.push(send(1, "next", 10));
            q.push(big(1, "big2", 1 << 20));
            q.push(send(1, "last", 10));
            q.push(send(2, "other", 10));
            let got = wire(&mut q, 64 << 10);
            let mine: Vec<_> = got.iter().filter(|(p, _)| *p == 1).cloned().collect();
            let tags: Vec<_> = mine.iter().map(|(_, t)| t.as_str()).collect();
            assert_eq!(tags, ["big", "next", "big2", "last"]);
            assert_eq!(got[0], (2, "other".into()));
        }
    }

    #[test]
    fn a_signal_waits_for_every_large_message_and_holds_what_follows() {
        for big in FORMS {
            let mut q = SendQueue::default();
            q.push(big(1, "big", 1 << 20));
            q.push(link(3));
            q.push(send(2, "small", 10));
            let got = wire(&mut q, 64 << 10);
            assert_eq!(
                got,
                vec![(1, "big".into()), (3, "link".into()), (2, "small".into())]
            );
        }
    }

    #[test]
    fn a_flow_of_small_messages_does_not_starve_a_large_one() {
        let mut q = SendQueue::default();
        let mut enc = DistEncoder::new(FLAGS);
        let mut dec = DistDecoder::new(FLAGS);
        q.push(send(1, "big", 1 << 20));
        // Each round, more small messages than a chunk holds arrive.
        let mut big_done = None;
        for round in 0..100 {
            for _ in 0..5_000 {
                q.push(send(2, "small", 100));
            }
            for f in q.next_chunk(&mut enc, 256 << 10, &mut |e| panic!("{e}")) {
                if let Some(m) = dec.decode_frame(f.into_bytes()).unwrap() {
                    if matches!(m.control(), ControlMessage::SendSender { from, .. } if from.id == 1)
                    {
                        big_done = big_done.or(Some(round));
                    }
                }
            }
        }
        // 17 fragments, 4 per round at the least.
        assert!(big_done.is_some_and(|r| r <= 5), "{big_done:?}");
    }

    #[test]
    fn two_large_messages_share_the_wire() {
        let mut q = SendQueue::default();
        q.push(send(1, "a", 2 << 20));
        q.push(queued(2, "b", 2 << 20));
        let mut enc = DistEncoder::new(FLAGS);
        let mut dec = DistDecoder::new(FLAGS);
        // The sequence id of each frame, in wire order.
        let (mut seqs, mut done) = (Vec::new(), Vec::new());
        while !q.is_empty() {
            for f in q.next_chunk(&mut enc, 256 << 10, &mut |e| panic!("{e}")) {
                let b = f.into_bytes();
                seqs.push(b[2..10].to_vec());
                if let Some(m) = dec.decode_frame(b).unwrap() {
                    done.push(m);
                }
            }
        }
        assert_eq!(done.len(), 2);
        let (a, b) = (&seqs[0], seqs.iter().find(|s| *s != &seqs[0]).unwrap());
        let first_b = seqs.iter().position(|s| s == b).unwrap();
        let last_a = seqs.iter().rposition(|s| s == a).unwrap();
        assert!(first_b < last_a, "b started before a ended");
    }

    #[test]
    fn fragments_larger_than_a_slice_go_one_per_turn() {
        let mut q = SendQueue::default();
        q.push(send(1, "a", 3 << 20));
        q.push(send(2, "b", 3 << 20));
        q.push(send(3, "small", 10));
        let mut enc = DistEncoder::new(FLAGS).fragment_size(1 << 20);
        let mut dec = DistDecoder::new(FLAGS);
        let (mut order, mut largest) = (Vec::new(), 0);
        while !q.is_empty() {
            let frames = q.next_chunk(&mut enc, 256 << 10, &mut |e| panic!("{e}"));
            largest = largest.max(frames.iter().map(OutFrame::len).sum::<usize>());
            for f in frames {
                if let Some(m) = dec.decode_frame(f.into_bytes()).unwrap() {
                    if let ControlMessage::SendSender { from, .. } = m.control() {
                        order.push(from.id);
                    }
                }
            }
        }
        // A turn takes one 1 MiB fragment of a large message, not four:
        // the small message goes after the first fragment of each.
        assert!(
            largest < (1 << 20) + (256 << 10),
            "a chunk of {largest} bytes"
        );
        assert_eq!(order, [3, 1, 2]);
    }

    #[test]
    fn without_fragments_everything_goes_in_order() {
        for big in FORMS {
            let mut q = SendQueue::default();
            q.push(big(1, "big", 1 << 20));
            q.push(send(2, "small", 10));
            let mut enc = DistEncoder::new(DistFlags::DIST_HDR_ATOM_CACHE);
            let mut dec = DistDecoder::new(DistFlags::DIST_HDR_ATOM_CACHE);
            let frames = q.next_chunk(&mut enc, 1 << 30, &mut |e| panic!("{e}"));
            assert_eq!(frames.len(), 2);
            let first = dec.decode_frame(frames[0].clone().into_bytes()).unwrap();
            assert!(matches!(
                first.unwrap().control(),
                ControlMessage::SendSender { from, .. } if from.id == 1
            ));
            assert!(q.is_empty());
        }
    }
}
