//! Group leaders: Rust processes that are I/O servers.
//!
//! A process spawned on a BEAM node with a Rust group leader sends its
//! output there as I/O requests (`IO.puts "Hi, my name is Kate"` on kate
//! arrives as `{put_chars, unicode, <<"Hi, my name is Kate\n">>}`). A group
//! leader started by [`Node::start_group_leader`] serves the Erlang I/O
//! protocol: it writes what it is sent to its [`IoSink`] (stdout, a
//! channel, a callback) and reads input from a configured source.
//!
//! `io:format/2` on a remote process sends `{put_chars, unicode, io_lib,
//! format, [Format, Args]}`: the formatting is left to the group leader.
//! A Rust group leader has `io_lib:format/2` applied on the requesting
//! process's node (through `erpc`), so the text is exactly what a BEAM
//! group leader prints; only when that node cannot be asked does it format
//! the common directives itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::io::{chars_to_string, Encoding, IoMessage, IoRequest};
use super::{Node, Process};
use crate::term::{Atom, Pid, Term};

/// Text a process printed through a group leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoOutput {
    /// The process that printed it.
    pub from: Pid,
    /// The text, as the BEAM would print it.
    pub text: String,
}

/// Where a group leader writes.
#[derive(Clone, Default)]
pub enum IoSink {
    /// The standard output of this program.
    #[default]
    Stdout,
    /// A channel: each request's text becomes one [`IoOutput`].
    Channel(mpsc::UnboundedSender<IoOutput>),
    /// A function called with each request's text.
    Callback(Arc<dyn Fn(IoOutput) + Send + Sync>),
}

impl std::fmt::Debug for IoSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoSink::Stdout => "Stdout",
            IoSink::Channel(_) => "Channel",
            IoSink::Callback(_) => "Callback",
        })
    }
}

impl IoSink {
    fn write(&self, out: IoOutput) {
        match self {
            IoSink::Stdout => {
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(out.text.as_bytes());
                let _ = stdout.flush();
            }
            IoSink::Channel(tx) => {
                let _ = tx.send(out);
            }
            IoSink::Callback(f) => f(out),
        }
    }
}

/// How a group leader behaves; see [`Node::start_group_leader`].
#[derive(Debug, Default)]
pub struct GroupLeaderConfig {
    sink: IoSink,
    input: Option<mpsc::UnboundedReceiver<String>>,
    name: Option<Atom>,
    binary: bool,
}

impl GroupLeaderConfig {
    /// Writes to stdout; input is at its end (`get_line` answers `eof`).
    pub fn stdout() -> GroupLeaderConfig {
        GroupLeaderConfig::default()
    }

    /// Sends each output to `tx`.
    pub fn channel(tx: mpsc::UnboundedSender<IoOutput>) -> GroupLeaderConfig {
        GroupLeaderConfig {
            sink: IoSink::Channel(tx),
            ..Default::default()
        }
    }

    /// Calls `f` with each output.
    pub fn callback(f: impl Fn(IoOutput) + Send + Sync + 'static) -> GroupLeaderConfig {
        GroupLeaderConfig {
            sink: IoSink::Callback(Arc::new(f)),
            ..Default::default()
        }
    }

    /// Where output goes.
    pub fn sink(mut self, sink: IoSink) -> GroupLeaderConfig {
        self.sink = sink;
        self
    }

    /// Input: text chunks from `rx` (`get_line` waits for a whole line;
    /// when the channel closes, what is left, then `eof`).
    pub fn input(mut self, rx: mpsc::UnboundedReceiver<String>) -> GroupLeaderConfig {
        self.input = Some(rx);
        self
    }

    /// Input: this text, then `eof`.
    pub fn input_text(self, text: &str) -> GroupLeaderConfig {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(text.to_owned());
        self.input(rx)
    }

    /// Whether input is answered as binaries from the start (as Elixir's
    /// `IO.gets` expects of a device in binary mode) rather than as
    /// character lists (OTP's default); `io:setopts/1` changes it.
    pub fn binary(mut self, on: bool) -> GroupLeaderConfig {
        self.binary = on;
        self
    }

    /// Registers the group leader under `name` on the node.
    pub fn register(mut self, name: impl Into<Atom>) -> GroupLeaderConfig {
        self.name = Some(name.into());
        self
    }
}

impl Node {
    /// Starts a group leader (an I/O server process) and returns its PID:
    /// give it as [`super::GroupLeaderOpt::Pid`] to a remote spawn, or set
    /// it with [`Process::set_group_leader`].
    pub fn start_group_leader(&self, config: GroupLeaderConfig) -> Pid {
        let name = config.name;
        let pid = self.spawn(move |p| async move {
            let mut server = IoServer {
                sink: config.sink,
                input: config.input,
                buffer: String::new(),
                binary: config.binary,
            };
            server.serve(p).await;
        });
        if let Some(name) = name {
            let _ = self.register(name, pid);
        }
        pid
    }

    /// The node's default group leader: writes to stdout, registered as
    /// `user`; started on first use (outside a Tokio runtime, when it
    /// cannot be, the node's own PID stands in).
    pub fn default_group_leader(&self) -> Pid {
        let mut gl = self
            .inner
            .spawn
            .default_gl
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(pid) = *gl {
            if self.is_alive(pid) {
                return pid;
            }
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return self.system_pid();
        }
        let mut config = GroupLeaderConfig::stdout();
        if self.whereis("user").is_none() {
            config = config.register("user");
        }
        let pid = self.start_group_leader(config);
        *gl = Some(pid);
        pid
    }
}

/// Why an I/O request to a group leader failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// The group leader is gone (`terminated`, as `io` reports it).
    #[error("the group leader terminated")]
    Terminated,
    /// The group leader answered `{error, Reason}`.
    #[error("the group leader answered an error: {0}")]
    Error(Term),
    /// The requesting process exited while waiting.
    #[error("the requesting process exited")]
    Exited,
}

impl Process {
    /// Sends an I/O request to this process's group leader and waits for
    /// the reply, as `io:request/2` does (with a monitor on the group
    /// leader, so a dead one is noticed). The group leader may be on
    /// another node: a Rust function called by `erpc` prints on the
    /// caller's.
    ///
    /// # Errors
    /// [`IoError::Terminated`] if the group leader is gone, or
    /// [`IoError::Exited`] if this process exited.
    pub async fn io_request(&mut self, request: Term) -> Result<Term, IoError> {
        let gl = self.group_leader();
        let mon = self.monitor(gl);
        let tag = Term::Ref(Box::new(mon));
        self.send(
            gl,
            Term::Tuple(vec![
                Term::atom("io_request"),
                Term::Pid(self.pid()),
                tag.clone(),
                request,
            ]),
        );
        let answer = self
            .recv_match(|m| match m.as_tuple() {
                Some([t, r, _]) => t.is_atom("io_reply") && r.exact_eq(&tag),
                Some([t, r, ..]) => t.is_atom("DOWN") && r.exact_eq(&tag),
                _ => false,
            })
            .await
            .map_err(|_| IoError::Exited)?;
        match answer.as_tuple() {
            Some([_, _, reply]) => {
                self.demonitor(&mon);
                Ok(reply.clone())
            }
            _ => Err(IoError::Terminated),
        }
    }

    /// Prints `text` through the group leader (`io:put_chars/1`).
    ///
    /// # Errors
    /// As [`Process::io_request`], and [`IoError::Error`] if the group
    /// leader refused.
    pub async fn put_chars(&mut self, text: &str) -> Result<(), IoError> {
        let req = Term::Tuple(vec![
            Term::atom("put_chars"),
            Term::atom("unicode"),
            Term::binary(text.as_bytes().to_vec()),
        ]);
        match self.io_request(req).await? {
            r if r.is_atom("ok") => Ok(()),
            other => Err(reply_error(other)),
        }
    }

    /// Reads a line from the group leader (`io:get_line/1`): `None` at
    /// the end of input.
    ///
    /// # Errors
    /// As [`Process::put_chars`].
    pub async fn get_line(&mut self, prompt: &str) -> Result<Option<String>, IoError> {
        let req = Term::Tuple(vec![
            Term::atom("get_line"),
            Term::atom("unicode"),
            Term::binary(prompt.as_bytes().to_vec()),
        ]);
        match self.io_request(req).await? {
            r if r.is_atom("eof") => Ok(None),
            r => match chars_to_string(&r, Encoding::Unicode) {
                Ok(line) => Ok(Some(line)),
                Err(_) => Err(reply_error(r)),
            },
        }
    }
}

fn reply_error(reply: Term) -> IoError {
    match reply.as_tuple() {
        Some([e, r]) if e.is_atom("error") => IoError::Error(r.clone()),
        _ => IoError::Error(reply),
    }
}

/// How long a group leader waits for the requester's node to format.
const DELEGATE_TIMEOUT: Duration = Duration::from_secs(10);

struct IoServer {
    sink: IoSink,
    input: Option<mpsc::UnboundedReceiver<String>>,
    buffer: String,
    binary: bool,
}

fn ok() -> Term {
    Term::atom("ok")
}

fn error(reason: Term) -> Term {
    Term::Tuple(vec![Term::atom("error"), reason])
}

impl IoServer {
    async fn serve(&mut self, mut p: Process) {
        while let Ok(msg) = p.recv().await {
            let Some(req) = IoMessage::parse(&msg) else {
                continue;
            };
            let reply = self.request(p.node(), req.from, &req.request).await;
            // Only after printing, so the requester's next output follows.
            p.send(req.from, req.reply(reply));
        }
    }

    fn print(&self, from: Pid, text: String) {
        if !text.is_empty() {
            self.sink.write(IoOutput { from, text });
        }
    }

    async fn request(&mut self, node: &Node, from: Pid, req: &IoRequest) -> Term {
        match req {
            IoRequest::PutChars(enc, chars) => match chars_to_string(chars, *enc) {
                Ok(text) => {
                    self.print(from, text);
                    ok()
                }
                Err(_) => error(Term::Tuple(vec![
                    Term::atom("put_chars"),
                    Term::atom(enc_name(*enc)),
                    chars.clone(),
                ])),
            },
            IoRequest::PutCharsApply {
                encoding,
                module,
                function,
                args,
            } => match apply_chars(node, from, *module, *function, args).await {
                Ok(chars) => match chars_to_string(&chars, *encoding) {
                    Ok(text) => {
                        self.print(from, text);
                        ok()
                    }
                    Err(_) => error(Term::Atom(*function)),
                },
                Err(()) => error(Term::Atom(*function)),
            },
            IoRequest::GetLine(enc, prompt) => {
                self.prompt(from, prompt);
                match self.read_line().await {
                    Some(line) => self.data(line, *enc),
                    None => Term::atom("eof"),
                }
            }
            IoRequest::GetChars(enc, prompt, n) => {
                self.prompt(from, prompt);
                match self.read_chars(*n).await {
                    Some(text) => self.data(text, *enc),
                    None => Term::atom("eof"),
                }
            }
            IoRequest::GetOpts => Term::List(vec![
                Term::Tuple(vec![Term::atom("binary"), Term::from(self.binary)]),
                Term::Tuple(vec![Term::atom("encoding"), Term::atom("unicode")]),
            ]),
            IoRequest::SetOpts(opts) => self.setopts(opts),
            IoRequest::GetGeometry(_) => error(Term::atom("enotsup")),
            IoRequest::Requests(reqs) => {
                let mut last = ok();
                for r in reqs {
                    last = Box::pin(self.request(node, from, r)).await;
                    if matches!(last.as_tuple(), Some([e, _]) if e.is_atom("error")) {
                        break;
                    }
                }
                last
            }
            IoRequest::Unsupported(_) => error(Term::atom("request")),
        }
    }

    fn prompt(&self, from: Pid, prompt: &Term) {
        let text = match prompt {
            Term::Atom(a) => a.as_str().to_owned(),
            other => chars_to_string(other, Encoding::Unicode).unwrap_or_default(),
        };
        self.print(from, text);
    }

    /// Input data as the request's encoding and the binary option say.
    fn data(&self, text: String, enc: Encoding) -> Term {
        if enc == Encoding::Latin1 && text.chars().any(|c| u32::from(c) > 255) {
            return error(Term::Tuple(vec![
                Term::atom("no_translation"),
                Term::atom("unicode"),
                Term::atom("latin1"),
            ]));
        }
        match (self.binary, enc) {
            (true, Encoding::Unicode) => Term::binary(text.into_bytes()),
            (true, Encoding::Latin1) => Term::binary(
                text.chars()
                    .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                    .collect::<Vec<u8>>(),
            ),
            (false, _) => Term::List(text.chars().map(|c| Term::from(u32::from(c))).collect()),
        }
    }

    fn setopts(&mut self, opts: &Term) -> Term {
        let Some(opts) = opts.list_elems() else {
            return error(Term::atom("badarg"));
        };
        for o in opts.iter() {
            match o {
                Term::Atom(a) if a.as_str() == "binary" => self.binary = true,
                Term::Atom(a) if a.as_str() == "list" => self.binary = false,
                Term::Tuple(kv) => match kv.as_slice() {
                    [k, v] if k.is_atom("binary") => self.binary = v.is_atom("true"),
                    [k, v]
                        if k.is_atom("encoding")
                            && (v.is_atom("unicode")
                                || v.is_atom("utf8")
                                || v.is_atom("latin1")) => {}
                    [k, _] if k.is_atom("echo") || k.is_atom("expand_fun") => {}
                    _ => return error(Term::atom("enotsup")),
                },
                _ => return error(Term::atom("enotsup")),
            }
        }
        ok()
    }

    /// More input into the buffer; false at the end of input.
    async fn fill(&mut self) -> bool {
        let Some(rx) = self.input.as_mut() else {
            return false;
        };
        match rx.recv().await {
            Some(text) => {
                self.buffer.push_str(&text);
                true
            }
            None => {
                self.input = None;
                false
            }
        }
    }

    async fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buffer.find('\n') {
                let rest = self.buffer.split_off(i + 1);
                return Some(std::mem::replace(&mut self.buffer, rest));
            }
            if !self.fill().await {
                if self.buffer.is_empty() {
                    return None;
                }
                return Some(std::mem::take(&mut self.buffer));
            }
        }
    }

    async fn read_chars(&mut self, n: usize) -> Option<String> {
        loop {
            if let Some((i, _)) = self.buffer.char_indices().nth(n) {
                let rest = self.buffer.split_off(i);
                return Some(std::mem::replace(&mut self.buffer, rest));
            }
            if self.buffer.chars().count() == n && n > 0 {
                return Some(std::mem::take(&mut self.buffer));
            }
            if !self.fill().await {
                if self.buffer.is_empty() {
                    return None;
                }
                return Some(std::mem::take(&mut self.buffer));
            }
        }
    }
}

fn enc_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Unicode => "unicode",
        Encoding::Latin1 => "latin1",
    }
}

/// `apply(M, F, A)` for a put_chars request: on the requester's node when
/// it is another node, else (or when that fails for want of a connection)
/// `io_lib:format/2`, `fwrite/2` and `write/1` done here.
async fn apply_chars(node: &Node, from: Pid, m: Atom, f: Atom, args: &[Term]) -> Result<Term, ()> {
    if from.node != node.name() && node.net().is_some() {
        let gl = node.system_pid();
        match node
            .rpc_with_group_leader(from.node, m, f, args.to_vec(), DELEGATE_TIMEOUT, gl)
            .await
        {
            Ok(chars) => return Ok(chars),
            Err(
                super::RpcError::Timeout | super::RpcError::NoConnection | super::RpcError::NotSup,
            ) => {}
            Err(_) => return Err(()),
        }
    }
    match (m.as_str(), f.as_str(), args) {
        ("io_lib", "format" | "fwrite", [fmt, args]) => {
            let fmt = match fmt {
                Term::Atom(a) => a.as_str().to_owned(),
                other => chars_to_string(other, Encoding::Unicode).map_err(|_| ())?,
            };
            let args = args.list_elems().ok_or(())?;
            format(&fmt, &args).map(|s| Term::binary(s.into_bytes()))
        }
        ("io_lib", "write", [t]) => Ok(Term::binary(t.to_string().into_bytes())),
        _ => Err(()),
    }
}

/// The common `io_lib:format/2` directives, for when the requester's node
/// cannot format: `~w ~p ~s ~n ~c ~b ~i ~~`, floats as `~w`; widths and
/// modifiers are read and ignored.
pub(crate) fn format(fmt: &str, args: &[Term]) -> Result<String, ()> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        let mut d = chars.next().ok_or(())?;
        while d.is_ascii_digit() || matches!(d, '.' | '*' | '-' | 't' | 'l' | 'k' | 'K') {
            if d == '*' {
                args.next().ok_or(())?;
            }
            d = chars.next().ok_or(())?;
        }
        match d {
            '~' => out.push('~'),
            'n' => out.push('\n'),
            'w' | 'W' | 'e' | 'f' | 'g' | 'b' | 'B' | 'x' | 'X' | '#' | '+' => {
                out.push_str(&args.next().ok_or(())?.to_string())
            }
            'p' | 'P' => out.push_str(&format!("{:#}", args.next().ok_or(())?)),
            's' => {
                let a = args.next().ok_or(())?;
                match a {
                    Term::Atom(a) => out.push_str(a.as_str()),
                    other => {
                        out.push_str(&chars_to_string(other, Encoding::Unicode).map_err(|_| ())?)
                    }
                }
            }
            'c' => {
                let c = args.next().ok_or(())?.as_i64().ok_or(())?;
                out.push(u32::try_from(c).ok().and_then(char::from_u32).ok_or(())?);
            }
            'i' => {
                args.next().ok_or(())?;
            }
            _ => return Err(()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term;

    #[test]
    fn formats_the_common_directives() {
        let got = format(
            "~w and ~p: ~s~n~~",
            &[term!(42), term!({a, "x"}), term!("héllo")],
        )
        .unwrap();
        assert_eq!(got, "42 and {a,<<\"x\">>}: héllo\n~");
        assert!(format("~w", &[]).is_err());
        assert_eq!(
            format("~10.3.0w|~i~c", &[term!(1), term!(x), term!(65)]).unwrap(),
            "1|A"
        );
    }
}
