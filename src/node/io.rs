//! The Erlang I/O protocol, as a group leader sees it (sans-IO).
//!
//! A process whose group leader is a Rust process sends it
//! `{io_request, From, ReplyAs, Request}` and waits for
//! `{io_reply, ReplyAs, Reply}`. This module reads requests into
//! [`IoRequest`] and turns character data into text; the group leader
//! process that serves them lives in the node.

use crate::term::{Atom, Pid, Term};

/// The encoding a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `unicode`: integers are code points, binaries are UTF-8.
    Unicode,
    /// `latin1`: integers and binary bytes are Latin-1 characters.
    Latin1,
}

/// One I/O request, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum IoRequest {
    /// `{put_chars, Encoding, Chars}` (and the legacy `{put_chars, Chars}`).
    PutChars(Encoding, Term),
    /// `{put_chars, Encoding, M, F, A}`: print what `apply(M, F, A)` returns
    /// (`io:format/2` sends `io_lib, format, [Format, Args]`).
    PutCharsApply {
        /// The encoding.
        encoding: Encoding,
        /// The module.
        module: Atom,
        /// The function.
        function: Atom,
        /// The arguments.
        args: Vec<Term>,
    },
    /// `{get_line, Encoding, Prompt}`.
    GetLine(Encoding, Term),
    /// `{get_chars, Encoding, Prompt, N}`.
    GetChars(Encoding, Term, usize),
    /// `{get_until, ...}`, `{get_password, ...}` and other input requests
    /// that need Erlang code to run on the group leader.
    Unsupported(Term),
    /// `{setopts, Opts}`.
    SetOpts(Term),
    /// `getopts`.
    GetOpts,
    /// `{get_geometry, columns | rows}`.
    GetGeometry(Atom),
    /// `{requests, [Request]}`: run in order, stop at the first error.
    Requests(Vec<IoRequest>),
}

/// An `{io_request, From, ReplyAs, Request}` message.
#[derive(Clone, Debug, PartialEq)]
pub struct IoMessage {
    /// Who asks, and gets the reply.
    pub from: Pid,
    /// What the reply must carry to be recognised.
    pub reply_as: Term,
    /// The request.
    pub request: IoRequest,
}

impl IoMessage {
    /// Reads an `{io_request, From, ReplyAs, Request}` message; `None` if
    /// the message is not one.
    pub fn parse(msg: &Term) -> Option<IoMessage> {
        let t = msg.as_tuple()?;
        match t {
            [tag, Term::Pid(from), reply_as, request] if tag.is_atom("io_request") => {
                Some(IoMessage {
                    from: *from,
                    reply_as: reply_as.clone(),
                    request: IoRequest::parse(request),
                })
            }
            _ => None,
        }
    }

    /// The reply message: `{io_reply, ReplyAs, Reply}`.
    pub fn reply(&self, reply: Term) -> Term {
        Term::Tuple(vec![Term::atom("io_reply"), self.reply_as.clone(), reply])
    }
}

fn encoding(t: &Term) -> Option<Encoding> {
    match t.as_atom()?.as_str() {
        "unicode" | "utf8" => Some(Encoding::Unicode),
        "latin1" => Some(Encoding::Latin1),
        _ => None,
    }
}

impl IoRequest {
    /// Reads a request term. Requests this module does not know come back
    /// as [`IoRequest::Unsupported`]; the group leader answers those with
    /// `{error, request}`, as OTP's does.
    pub fn parse(t: &Term) -> IoRequest {
        let unsupported = || IoRequest::Unsupported(t.clone());
        if t.is_atom("getopts") {
            return IoRequest::GetOpts;
        }
        let Some(items) = t.as_tuple() else {
            return unsupported();
        };
        let Some((tag, rest)) = items.split_first() else {
            return unsupported();
        };
        let Some(tag) = tag.as_atom() else {
            return unsupported();
        };
        match (tag.as_str(), rest) {
            ("put_chars", [enc, chars]) => match encoding(enc) {
                Some(e) => IoRequest::PutChars(e, chars.clone()),
                None => unsupported(),
            },
            ("put_chars", [chars]) => IoRequest::PutChars(Encoding::Latin1, chars.clone()),
            ("put_chars", [enc, Term::Atom(m), Term::Atom(f), args]) => {
                match (encoding(enc), args.list_elems()) {
                    (Some(encoding), Some(args)) => IoRequest::PutCharsApply {
                        encoding,
                        module: *m,
                        function: *f,
                        args: args.into_owned(),
                    },
                    _ => unsupported(),
                }
            }
            ("put_chars", [Term::Atom(m), Term::Atom(f), args]) => match args.list_elems() {
                Some(args) => IoRequest::PutCharsApply {
                    encoding: Encoding::Latin1,
                    module: *m,
                    function: *f,
                    args: args.into_owned(),
                },
                None => unsupported(),
            },
            ("get_line", [enc, prompt]) => match encoding(enc) {
                Some(e) => IoRequest::GetLine(e, prompt.clone()),
                None => unsupported(),
            },
            ("get_line", [prompt]) => IoRequest::GetLine(Encoding::Latin1, prompt.clone()),
            ("get_chars", [enc, prompt, Term::Int(n)]) => {
                match (encoding(enc), usize::try_from(*n)) {
                    (Some(e), Ok(n)) => IoRequest::GetChars(e, prompt.clone(), n),
                    _ => unsupported(),
                }
            }
            ("get_chars", [prompt, Term::Int(n)]) => match usize::try_from(*n) {
                Ok(n) => IoRequest::GetChars(Encoding::Latin1, prompt.clone(), n),
                Err(_) => unsupported(),
            },
            ("setopts", [opts]) => IoRequest::SetOpts(opts.clone()),
            ("get_geometry", [Term::Atom(what)]) => IoRequest::GetGeometry(*what),
            ("requests", [list]) => match list.list_elems() {
                Some(reqs) => IoRequest::Requests(reqs.iter().map(IoRequest::parse).collect()),
                None => unsupported(),
            },
            _ => unsupported(),
        }
    }
}

/// Why character data could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not character data")]
pub struct NotChars;

/// Flattens character data (a deep list of code points and binaries, or a
/// binary, or an atom as OTP's `io` also accepts) into text, as the
/// encoding says: under `unicode` binaries are UTF-8 and integers code
/// points; under `latin1` both are Latin-1 characters.
pub fn chars_to_string(chars: &Term, enc: Encoding) -> Result<String, NotChars> {
    let mut out = String::new();
    let mut stack: Vec<&Term> = vec![chars];
    while let Some(t) = stack.pop() {
        match t {
            Term::Binary(b) => match enc {
                Encoding::Unicode => out.push_str(std::str::from_utf8(b).map_err(|_| NotChars)?),
                Encoding::Latin1 => out.extend(b.iter().map(|&c| char::from(c))),
            },
            Term::ByteList(b) => match enc {
                Encoding::Unicode | Encoding::Latin1 => {
                    out.extend(b.iter().map(|&c| char::from(c)))
                }
            },
            Term::Int(c) => {
                let c = u32::try_from(*c)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or(NotChars)?;
                if enc == Encoding::Latin1 && u32::from(c) > 255 {
                    return Err(NotChars);
                }
                out.push(c);
            }
            Term::List(v) => stack.extend(v.iter().rev()),
            Term::ImproperList(l) => {
                // [Chars | Binary] is valid chardata.
                if !matches!(l.tail, Term::Binary(_)) {
                    return Err(NotChars);
                }
                stack.push(&l.tail);
                stack.extend(l.elems.iter().rev());
            }
            Term::Atom(a) if std::ptr::eq(t, chars) => out.push_str(a.as_str()),
            _ => return Err(NotChars),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term;

    #[test]
    fn reads_the_requests_otp_sends() {
        let put = IoRequest::parse(&term!({put_chars, unicode, <<"Hi, my name is Kate\n">>}));
        assert_eq!(
            put,
            IoRequest::PutChars(Encoding::Unicode, term!(<<"Hi, my name is Kate\n">>))
        );
        let fmt = IoRequest::parse(&term!({put_chars, unicode, io_lib, format, ["~p~n", [42]]}));
        assert!(matches!(fmt, IoRequest::PutCharsApply { ref args, .. } if args.len() == 2));
        assert_eq!(IoRequest::parse(&term!(getopts)), IoRequest::GetOpts);
        assert!(matches!(
            IoRequest::parse(&term!({get_line, unicode, "> "})),
            IoRequest::GetLine(..)
        ));
        assert!(matches!(
            IoRequest::parse(&term!({get_chars, unicode, "", 3})),
            IoRequest::GetChars(_, _, 3)
        ));
        assert!(matches!(
            IoRequest::parse(&term!({whatever, 1})),
            IoRequest::Unsupported(_)
        ));
        let batch = IoRequest::parse(
            &term!({requests, [{put_chars, unicode, "a"}, {put_chars, latin1, "b"}]}),
        );
        assert!(matches!(batch, IoRequest::Requests(ref v) if v.len() == 2));
    }

    #[test]
    fn flattens_chardata() {
        let chars = term!([104, <<"é">>, [[(0x4f60)]] | <<"!">>]);
        assert_eq!(chars_to_string(&chars, Encoding::Unicode).unwrap(), "hé你!");
        assert_eq!(
            chars_to_string(&term!(<<233>>), Encoding::Latin1).unwrap(),
            "é"
        );
        assert!(chars_to_string(&term!(<<233>>), Encoding::Unicode).is_err());
        assert!(chars_to_string(&term!([(0x4f60)]), Encoding::Latin1).is_err());
        assert!(chars_to_string(&term!({ a }), Encoding::Unicode).is_err());
    }
}
