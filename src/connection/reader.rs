//! Reading a connection's socket.
//!
//! A reader that takes everything out of the socket the moment it arrives
//! slows down a BEAM node streaming to it. Linux acknowledges at once when
//! a read empties the receive queue after small segments (`tcp_input.c`,
//! `__tcp_cleanup_rbuf`: "If this read emptied read buffer, we send ACK").
//! So every message the sender writes finds its previous one acknowledged,
//! leaves as a segment of its own, and the sender pays for each segment.
//! When acknowledgements come later, the sender's writes wait in its
//! socket and leave joined, several messages a segment, and it sends far
//! more messages a second (docs/benchmarks-log.md, *`recv_small`: how the
//! reader got ahead*).
//!
//! [`Reader`] still takes what arrives at once: it *peeks* at the socket,
//! so nothing waits to be delivered. But it leaves the last bytes it has
//! seen (up to [`TAIL`]) in the socket, and empties the socket only once
//! more than [`DRAIN`] bytes have gone through since it last did, or when
//! nothing new has come for [`HOLD`] (a tick of tokio's timer, at most a
//! millisecond). The bytes it leaves are ones it has already delivered:
//! the next read takes them out of the socket unseen.
//!
//! It reads the plain way (everything, at once) when holding cannot help
//! or must not happen:
//! - when the peer is not streaming: the bytes before came more than
//!   [`STREAM_GAP`] earlier (a lone message, a tick);
//! - when this side has written since the last read: its segments carry
//!   the acknowledgement anyway (request and reply traffic), and what is
//!   held then goes back at once;
//! - during a large stream (a peek would see [`PEEK`] bytes or more): the
//!   sender's segments are full already;
//! - when the peer has closed the socket: its last bytes must be read.
//!
//! Held bytes pin memory: the kernel frees a buffer only when all of it is
//! read, and joins new segments onto the last one. Emptying the socket
//! after every [`DRAIN`] bytes and after any large read keeps what is
//! pinned to a few kilobytes, and the timer empties it when the peer
//! pauses, so the receive window never closes on held bytes, and a peer
//! waiting for an acknowledgement never waits for the kernel's delayed-ACK
//! timer (tens of milliseconds).
//!
//! The decisions are [`Hold`]'s, over byte counts only; [`Reader`] does the
//! socket calls. Elsewhere than Linux it always reads the plain way.

use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::task::noop_waker_ref;
use tokio::io::{AsyncReadExt, Interest, ReadBuf};
use tokio::net::tcp::ReadHalf;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::driver::DownReason;

/// The read buffer grows by this much when less than [`READ_MIN`] is left.
/// Frames are cut out of it without copying, so a block is freed when the
/// last frame read into it is dropped.
const READ_BLOCK: usize = 8 * 1024;

/// The least room a read is given.
const READ_MIN: usize = 4096;

/// The most bytes left in the socket after a read.
const TAIL: usize = 256;

/// Once this many bytes have been taken out of the socket since it was
/// last empty, the next read empties it.
const DRAIN: usize = 256;

/// How many bytes one peek looks at. When the socket holds this many or
/// more, the reader takes everything the plain way.
const PEEK: usize = 1024;

/// How long held bytes stay in the socket when nothing new comes. tokio's
/// timer rounds up to its next tick, so this is "at the next millisecond".
const HOLD: Duration = Duration::from_micros(1);

/// Bytes are held only while a peer streams: when the bytes before came
/// less than this long before.
const STREAM_GAP: Duration = Duration::from_millis(1);

/// What the reader has left in the socket, counted in bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Hold {
    /// Bytes at the head of the socket's queue that were already
    /// delivered.
    held: usize,
    /// Bytes taken out of the socket since it was last emptied.
    taken: usize,
    /// The last plain read filled [`PEEK`] bytes or more: a large stream
    /// is coming in, so the next read is plain too, without a peek.
    bulk: bool,
}

/// What to do after a peek.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Nothing new has come.
    Wait,
    /// Deliver these bytes of the peek (the new ones), then take `take`
    /// bytes out of the socket.
    Deliver { new: Range<usize>, take: usize },
    /// The peek did not see everything: take the `skip` held bytes out of
    /// the socket, then read the rest the plain way.
    Read { skip: usize },
}

impl Hold {
    /// What the next read is: a plain read during a large stream (no
    /// peek: nothing is held then), or else `None`: a peek first.
    fn next(&self) -> Option<Step> {
        self.bulk.then_some(Step::Read { skip: 0 })
    }

    /// Counts a plain read of `n` bytes.
    fn after_read(&mut self, n: usize) {
        self.bulk = n >= PEEK;
    }

    /// Decides what to do when a peek of [`PEEK`] bytes saw `queued`
    /// (never 0: that is the end of the stream). `streaming`: the last
    /// bytes came less than [`STREAM_GAP`] before these; if not, nothing
    /// is held (a lone message, a tick: no stream to join up).
    fn after_peek(&mut self, queued: usize, streaming: bool) -> Step {
        if queued >= PEEK {
            let skip = std::mem::take(&mut self.held);
            // The plain read may leave part of a large buffer behind;
            // the next read empties the socket rather than pin it.
            self.taken = DRAIN;
            return Step::Read { skip };
        }
        if queued <= self.held {
            return Step::Wait;
        }
        let new = self.held..queued;
        let mut keep = queued.min(TAIL);
        self.taken += queued - keep;
        if self.taken >= DRAIN || !streaming {
            keep = 0;
            self.taken = 0;
        }
        self.held = keep;
        Step::Deliver {
            new,
            take: queued - keep,
        }
    }

    /// Gives the held bytes back: returns how many to take out of the
    /// socket, which is then empty.
    fn release(&mut self) -> usize {
        self.taken = 0;
        std::mem::take(&mut self.held)
    }

    /// A plain read, after giving back what is held: when the peer has
    /// closed the socket (its last bytes must not wait behind a held
    /// tail), or when this side has written since the last read (its
    /// segments carry the acknowledgement, so holding gains nothing).
    fn plainly(&mut self) -> Step {
        Step::Read {
            skip: self.release(),
        }
    }
}

/// Reads a connection's socket into its read buffer; see the module
/// documentation.
#[derive(Debug)]
pub(crate) struct Reader {
    peek: Option<Box<Peeker>>,
    /// Whether this side wrote to the socket since the last read.
    wrote: bool,
}

/// The peeking reader's state.
#[derive(Debug)]
struct Peeker {
    hold: Hold,
    /// When the last bytes were delivered; held bytes go back at
    /// `last + HOLD` if nothing new comes.
    last: Instant,
    /// [`STREAM_GAP`] (tests lengthen it, to hold whatever their pace).
    gap: Duration,
    /// The timer for `last + HOLD`, set only when the reader waits with
    /// bytes held. Kept across reads: pushing its deadline later costs
    /// little.
    release: Pin<Box<Sleep>>,
    /// What the last step delivered, when it also marked the socket not
    /// ready (it had seen everything queued).
    delivered: Option<usize>,
    /// Where peeks land, and held bytes when they are taken out.
    scratch: Box<[MaybeUninit<u8>; PEEK]>,
}

impl Reader {
    /// A reader for a connection's socket.
    pub(crate) fn new() -> Reader {
        Reader {
            peek: Peeker::new().map(Box::new),
            wrote: false,
        }
    }

    /// Tells the reader that this side wrote to the socket.
    pub(crate) fn wrote(&mut self) {
        self.wrote = true;
    }

    /// Reads what the socket has into `rbuf`; returns how many new bytes.
    pub(crate) async fn read(
        &mut self,
        rd: &mut ReadHalf<'_>,
        rbuf: &mut BytesMut,
    ) -> Result<usize, DownReason> {
        let r = match self.peek.as_deref_mut() {
            Some(p) => p.read(rd.as_ref(), rbuf, self.wrote).await,
            None => read_plain(rd, rbuf).await,
        };
        self.wrote = false;
        r
    }

    /// How many delivered bytes it has left in the socket.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.peek.as_ref().map_or(0, |p| p.hold.held)
    }
}

/// Reads everything the socket has into `rbuf`.
async fn read_plain(rd: &mut ReadHalf<'_>, rbuf: &mut BytesMut) -> Result<usize, DownReason> {
    make_room(rbuf);
    match rd.read_buf(rbuf).await {
        Ok(0) => Err(DownReason::ClosedByPeer),
        Ok(n) => Ok(n),
        Err(e) => Err(io_down(e)),
    }
}

fn make_room(rbuf: &mut BytesMut) {
    if rbuf.capacity() - rbuf.len() < READ_MIN {
        rbuf.reserve(READ_BLOCK);
    }
}

fn io_down(e: io::Error) -> DownReason {
    DownReason::Io(e.to_string())
}

impl Peeker {
    #[cfg(target_os = "linux")]
    fn new() -> Option<Peeker> {
        Some(Peeker {
            hold: Hold::default(),
            last: Instant::now(),
            gap: STREAM_GAP,
            release: Box::pin(tokio::time::sleep(HOLD)),
            delivered: None,
            scratch: Box::new([MaybeUninit::uninit(); PEEK]),
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn new() -> Option<Peeker> {
        None
    }

    async fn read(
        &mut self,
        s: &TcpStream,
        rbuf: &mut BytesMut,
        wrote: bool,
    ) -> Result<usize, DownReason> {
        if wrote && self.hold.held > 0 {
            // This side replied: what is held goes back now, without
            // the timer (whose wake would be wasted).
            let n = self.hold.release();
            self.take_out(s, n).map_err(io_down)?;
        }
        loop {
            let ready = if self.hold.held > 0 {
                let release_at = self.last + HOLD;
                if self.release.deadline() != release_at {
                    self.release.as_mut().reset(release_at);
                }
                let ready = tokio::select! {
                    r = s.ready(Interest::READABLE) => Some(r),
                    _ = self.release.as_mut() => None,
                };
                match ready {
                    Some(r) => r,
                    None => {
                        let n = self.hold.release();
                        self.take_out(s, n).map_err(io_down)?;
                        continue;
                    }
                }
            } else {
                s.ready(Interest::READABLE).await
            }
            .map_err(io_down)?;
            let plain = wrote || ready.is_read_closed();
            // Inside `try_io`, a `WouldBlock` from the step marks the
            // socket not ready only if no new readiness came since it
            // began, so bytes arriving meanwhile are not missed.
            match s.try_io(Interest::READABLE, || self.step(s, rbuf, plain)) {
                Ok(0) => return Err(DownReason::ClosedByPeer),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(n) = self.delivered.take() {
                        return Ok(n);
                    }
                }
                Err(e) => return Err(io_down(e)),
            }
        }
    }

    /// One read: 0 at the end of the stream, `WouldBlock` if nothing new,
    /// or if the bytes it delivered (in `delivered`) were all there was.
    fn step(&mut self, s: &TcpStream, rbuf: &mut BytesMut, plain: bool) -> io::Result<usize> {
        let step = if plain {
            self.hold.plainly()
        } else if let Some(step) = self.hold.next() {
            step
        } else {
            // tokio's `poll_peek`, in the `try_io` the caller runs this in:
            // it marks the socket not ready itself if nothing is there. Its
            // waker is a no-op one; the caller waits with `ready`, whose
            // waiters are apart from the one `poll_peek` would set.
            let mut cx = Context::from_waker(noop_waker_ref());
            let mut peeked = ReadBuf::uninit(&mut self.scratch[..]);
            let queued = match s.poll_peek(&mut cx, &mut peeked) {
                Poll::Ready(r) => r?,
                Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
            };
            if queued == 0 {
                return Ok(0);
            }
            let now = Instant::now();
            let streaming = now.duration_since(self.last) < self.gap;
            let step = self.hold.after_peek(queued, streaming);
            if let Step::Deliver { .. } = step {
                self.last = now;
            }
            if let Step::Deliver { new, .. } = &step {
                rbuf.extend_from_slice(peeked.filled().get(new.clone()).unwrap_or_default());
            }
            step
        };
        match step {
            Step::Wait => Err(io::ErrorKind::WouldBlock.into()),
            Step::Deliver { new, take } => {
                self.take_out(s, take)?;
                // The peek saw everything queued: the socket can be marked
                // not ready now, as tokio's own reads do after a short read,
                // instead of peeking again to find nothing.
                self.delivered = Some(new.len());
                Err(io::ErrorKind::WouldBlock.into())
            }
            Step::Read { skip } => {
                self.take_out(s, skip)?;
                make_room(rbuf);
                let room = rbuf.capacity() - rbuf.len();
                let n = s.try_read_buf(rbuf)?;
                self.hold.after_read(n);
                if n > 0 && n < room {
                    // A short read emptied the socket: mark it not ready,
                    // as tokio's own reads do.
                    self.delivered = Some(n);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            }
        }
    }

    /// Takes `n` bytes the reader has already delivered out of the socket.
    /// A plain `recv` (socket2's, into uninitialised memory that is never
    /// looked at): tokio's reads refuse while the socket is marked not
    /// ready, as it is when the timer gives held bytes back.
    fn take_out(&mut self, s: &TcpStream, mut n: usize) -> io::Result<()> {
        let socket = socket2::SockRef::from(s);
        while n > 0 {
            let got = socket.recv(&mut self.scratch[..n.min(PEEK)])?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            n -= got.min(n);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(new: Range<usize>, take: usize) -> Step {
        Step::Deliver { new, take }
    }

    #[test]
    fn a_small_stream_is_delivered_whole_with_a_tail_left_in_the_socket() {
        let mut h = Hold::default();
        // 100 bytes: all delivered, none taken out.
        assert_eq!(h.after_peek(100, true), deliver(0..100, 0));
        // 200 more: only the new ones delivered; 44 taken, 256 left.
        assert_eq!(h.after_peek(300, true), deliver(100..300, 44));
        assert_eq!(h.held, TAIL);
        // A wake with nothing new delivers nothing.
        assert_eq!(h.after_peek(TAIL, true), Step::Wait);
        // Past DRAIN bytes taken, the socket is emptied.
        assert_eq!(
            h.after_peek(TAIL + 300, true),
            deliver(TAIL..TAIL + 300, TAIL + 300)
        );
        assert_eq!(h, Hold::default());
    }

    #[test]
    fn every_byte_is_delivered_once_and_taken_out_once() {
        // Peeks of every size after every state: the delivered ranges
        // continue each other, and what is taken out never passes what
        // was delivered.
        for (first, second, streaming) in (1..PEEK + 10)
            .flat_map(|a| (1..PEEK + 10).map(move |b| (a, b)))
            .flat_map(|(a, b)| [[true, true], [true, false], [false, true]].map(|f| (a, b, f)))
        {
            let mut h = Hold::default();
            let (mut delivered, mut taken_out) = (0usize, 0usize);
            for (queued_new, streaming) in [first, second].into_iter().zip(streaming) {
                let queued = h.held + queued_new;
                match h.after_peek(queued, streaming) {
                    Step::Deliver { new, take } => {
                        // The new bytes start right after the held ones.
                        assert_eq!(new.start, delivered - taken_out);
                        assert_eq!(new.end, queued);
                        delivered += new.len();
                        taken_out += take;
                    }
                    Step::Read { skip } => {
                        taken_out += skip;
                        assert_eq!(taken_out, delivered, "skips exactly the held bytes");
                        // The plain read takes the rest.
                        delivered += queued - skip;
                        taken_out += queued - skip;
                    }
                    Step::Wait => panic!("{queued_new} new bytes came"),
                }
                assert!(taken_out <= delivered);
                assert_eq!(delivered - taken_out, h.held);
                assert!(h.held <= TAIL);
            }
        }
    }

    #[test]
    fn a_lone_message_is_not_held() {
        let mut h = Hold::default();
        assert_eq!(h.after_peek(30, false), deliver(0..30, 30));
        assert_eq!(h, Hold::default());
        // Within a stream it would be.
        h.after_peek(30, true);
        assert_eq!(h.held, 30);
        // A late one takes the held bytes out with it.
        assert_eq!(h.after_peek(40, false), deliver(30..40, 40));
        assert_eq!(h, Hold::default());
    }

    #[test]
    fn a_large_read_and_a_close_leave_nothing_held() {
        let mut h = Hold::default();
        h.after_peek(10, true);
        assert_eq!(h.after_peek(PEEK, true), Step::Read { skip: 10 });
        assert_eq!(h.held, 0);
        // After a large read the next small one empties the socket.
        assert_eq!(h.after_peek(20, true), deliver(0..20, 20));
        h.after_peek(10, true);
        assert_eq!(h.plainly(), Step::Read { skip: 10 });
        assert_eq!(h, Hold::default());
    }

    #[test]
    fn a_large_stream_is_read_plainly_until_a_short_read() {
        let mut h = Hold::default();
        assert_eq!(h.next(), None, "peeks first");
        assert_eq!(h.after_peek(PEEK, true), Step::Read { skip: 0 });
        h.after_read(64 * 1024);
        assert_eq!(h.next(), Some(Step::Read { skip: 0 }), "no peek mid-stream");
        h.after_read(PEEK - 1);
        assert_eq!(h.next(), None, "peeks again after a short read");
    }

    /// A reader that takes any pace for a stream, so the tests do not
    /// turn on the machine's speed.
    fn streaming_reader() -> Reader {
        let mut r = Reader::new();
        if let Some(p) = r.peek.as_mut() {
            p.gap = Duration::from_secs(3600);
        }
        r
    }

    /// A connected pair of sockets on the loopback: (writer, reader).
    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        a.set_nodelay(true).unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn small_writes_arrive_at_once_and_the_held_tail_is_given_back() {
        use tokio::io::AsyncWriteExt;
        let (mut w, mut r) = pair().await;
        let mut reader = streaming_reader();
        assert!(reader.peek.is_some(), "peeks on Linux");
        let (mut rd, _wr) = r.split();
        let mut rbuf = BytesMut::new();
        for i in 0..50u8 {
            let msg = [i; 7];
            w.write_all(&msg).await.unwrap();
            // Each write is read as soon as it arrives, though the socket
            // still holds it.
            let mut got = 0;
            while got < 7 {
                got +=
                    tokio::time::timeout(Duration::from_secs(5), reader.read(&mut rd, &mut rbuf))
                        .await
                        .expect("a write arrives at once")
                        .unwrap();
            }
            assert_eq!(&rbuf[..], &msg);
            rbuf.clear();
        }
        assert!(reader.held() > 0, "the last bytes stay in the socket");
        // With nothing new, the held bytes are taken out within a tick or
        // two of tokio's timer, and nothing is delivered twice.
        let r =
            tokio::time::timeout(Duration::from_millis(50), reader.read(&mut rd, &mut rbuf)).await;
        assert!(r.is_err(), "nothing new to read");
        assert_eq!(reader.held(), 0);
        assert!(rbuf.is_empty());
        w.write_all(b"end").await.unwrap();
        reader.read(&mut rd, &mut rbuf).await.unwrap();
        assert_eq!(&rbuf[..], b"end");
    }

    #[tokio::test]
    async fn after_this_side_writes_the_reader_holds_nothing() {
        use tokio::io::AsyncWriteExt;
        let (mut w, mut r) = pair().await;
        let mut reader = streaming_reader();
        let (mut rd, _wr) = r.split();
        let mut rbuf = BytesMut::new();
        w.write_all(b"ping").await.unwrap();
        reader.read(&mut rd, &mut rbuf).await.unwrap();
        assert_eq!(reader.held(), 4, "a streaming peer's bytes are held");
        // A reply went out: the next read takes everything, the held
        // bytes unseen and the new ones delivered.
        reader.wrote();
        w.write_all(b"pong").await.unwrap();
        let mut got = 0;
        while got < 4 {
            got += reader.read(&mut rd, &mut rbuf).await.unwrap();
        }
        assert_eq!(&rbuf[..], b"pingpong");
        assert_eq!(reader.held(), 0);
        // With no write since, bytes are held again.
        w.write_all(b"!").await.unwrap();
        reader.read(&mut rd, &mut rbuf).await.unwrap();
        assert_eq!(&rbuf[..], b"pingpong!");
        assert_eq!(reader.held(), 1);
    }

    #[tokio::test]
    async fn a_stream_of_mixed_writes_arrives_whole_and_in_order_then_the_close() {
        use tokio::io::AsyncWriteExt;
        let (mut w, mut r) = pair().await;
        // Writes of 1 byte to 100 KB, in a pattern, then a close while the
        // reader holds a tail.
        let mut sent = Vec::new();
        let mut x = 7u32;
        for i in 0..2000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = match i % 50 {
                0 => 100_000,
                1..=5 => 1 + (x as usize >> 16) % 3000,
                _ => 1 + (x as usize >> 16) % 60,
            };
            sent.extend((0..len).map(|k| (k as u32 ^ i) as u8));
        }
        let expect = sent.clone();
        let writer = tokio::spawn(async move {
            let mut x = 1usize;
            let mut at = 0;
            while at < sent.len() {
                x = x * 31 % 997;
                let n = (x % 97 + 1).min(sent.len() - at);
                let n = if x % 13 == 0 {
                    (sent.len() - at).min(70_000)
                } else {
                    n
                };
                w.write_all(&sent[at..at + n]).await.unwrap();
                at += n;
                if x % 5 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            // Closing with the last bytes held: the reader must still see
            // them and then the end.
        });
        let mut reader = streaming_reader();
        let (mut rd, _wr) = r.split();
        let mut rbuf = BytesMut::new();
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut rd, &mut rbuf))
                .await
                .expect("no stall")
            {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        writer.await.unwrap();
        assert_eq!(end, DownReason::ClosedByPeer);
        assert_eq!(rbuf.len(), expect.len());
        assert!(
            rbuf[..] == expect[..],
            "the bytes arrive in order, each once"
        );
    }
}
