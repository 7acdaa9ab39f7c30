//! Cookies, challenges and digests.
//!
//! Nodes prove they share a secret, the magic cookie, without sending it:
//! each side sends a random 32-bit challenge and the other answers with
//! `MD5(cookie ++ decimal(challenge))` (`dist_util:gen_digest/2`).
//!
//! The cookie comes, as for `erl`, from an explicit value (`-setcookie`)
//! or else from `$HOME/.erlang.cookie` (then
//! `$XDG_CONFIG_HOME/erlang/.erlang.cookie`), created with 20 random
//! uppercase letters and mode 0400 when neither exists (`auth.erl`).
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::name::NodeName;

/// What can go wrong getting a cookie or randomness.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// The cookie is empty.
    #[error("the cookie is empty")]
    Empty,
    /// The cookie is longer than an atom may be.
    #[error("the cookie is longer than 255 characters")]
    TooLong,
    /// The cookie file cannot be read or written.
    #[error("cookie file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The cookie file is readable by others than its owner; `erl` refuses
    /// such a file ("Cookie file ... must be accessible by owner only").
    #[error("cookie file {path} must be accessible by owner only (its mode is {mode:o})")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The cookie file is not a regular file.
    #[error("cookie file {path} is not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// The cookie file holds characters `erl` does not accept.
    #[error("cookie file {path}: {reason}")]
    BadContents {
        /// The file.
        path: PathBuf,
        /// What is wrong, in `auth.erl`'s words.
        reason: &'static str,
    },
    /// Neither `$HOME` nor `$XDG_CONFIG_HOME` is set.
    #[error("no home directory for the cookie file ($HOME is not set)")]
    NoHome,
    /// The operating system's random source failed.
    #[error("the system random source failed: {0}")]
    Random(getrandom::Error),
}

/// The magic cookie: a shared secret. Its `Debug` and `Display` print
/// `<redacted>`, so it cannot leak into logs by accident; use
/// [`expose`](Self::expose) when the text is really needed.
///
/// ```
/// use erldist::handshake::Cookie;
/// let c = Cookie::new("secret").unwrap();
/// assert_eq!(format!("{c:?} {c}"), "Cookie(<redacted>) <redacted>");
/// assert_eq!(c.expose(), "secret");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie(Arc<str>);

impl Cookie {
    /// A cookie with this text (what `erl -setcookie` takes). It must be
    /// non-empty and at most 255 characters (it is an atom in OTP).
    ///
    /// # Errors
    /// [`CookieError::Empty`], [`CookieError::TooLong`].
    pub fn new(text: &str) -> Result<Cookie, CookieError> {
        if text.is_empty() {
            return Err(CookieError::Empty);
        }
        if text.chars().count() > 255 {
            return Err(CookieError::TooLong);
        }
        Ok(Cookie(text.into()))
    }

    /// A new random cookie of 20 uppercase letters, like the one `erl`
    /// writes to a missing `~/.erlang.cookie`, from the OS's CSPRNG.
    ///
    /// # Errors
    /// [`CookieError::Random`].
    pub fn random() -> Result<Cookie, CookieError> {
        random_letters(20).map(|s| Cookie(s.into()))
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `MD5(cookie ++ decimal(challenge))`, the answer to `challenge`.
    pub fn digest(&self, challenge: u32) -> Digest {
        let mut ctx = md5::Context::new();
        ctx.consume(self.0.as_bytes());
        ctx.consume(challenge.to_string().as_bytes());
        Digest(ctx.compute().0)
    }

    /// Reads a cookie file as `erl` does (`auth:read_cookie/1`): it must
    /// be a regular file accessible by its owner only (on Unix), holding
    /// printable ASCII, optionally followed by spaces and line ends.
    ///
    /// # Errors
    /// [`CookieError::Io`], [`CookieError::Permissions`],
    /// [`CookieError::NotAFile`], [`CookieError::BadContents`].
    pub fn read_file(path: &Path) -> Result<Cookie, CookieError> {
        let io_err = |source| CookieError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        if !meta.is_file() {
            return Err(CookieError::NotAFile {
                path: path.to_owned(),
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(CookieError::Permissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let bytes = std::fs::read(path).map_err(io_err)?;
        parse_cookie_file(&bytes)
            .map_err(|reason| CookieError::BadContents {
                path: path.to_owned(),
                reason,
            })
            .and_then(|text| Cookie::new(&text))
    }

    /// Creates a cookie file with a new [random](Self::random) cookie and
    /// mode 0400, as `erl` does when there is none. Fails if the file
    /// exists.
    ///
    /// # Errors
    /// [`CookieError::Io`], [`CookieError::Random`].
    pub fn create_file(path: &Path) -> Result<Cookie, CookieError> {
        use std::io::Write;
        let cookie = Cookie::random()?;
        let io_err = |source| CookieError::Io {
            path: path.to_owned(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o400);
        }
        let mut f = opts.open(path).map_err(io_err)?;
        f.write_all(cookie.expose().as_bytes()).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        Ok(cookie)
    }

    /// The cookie `erl` would use without `-setcookie`:
    /// `$HOME/.erlang.cookie`, else `$XDG_CONFIG_HOME/erlang/.erlang.cookie`
    /// (default `$HOME/.config/erlang`), else a new `$HOME/.erlang.cookie`
    /// ([`create_file`](Self::create_file)). A file that exists but is
    /// unusable is an error, not skipped, as in `auth.erl`.
    ///
    /// # Errors
    /// The errors of [`read_file`](Self::read_file) and
    /// [`create_file`](Self::create_file); [`CookieError::NoHome`].
    pub fn from_default_file() -> Result<Cookie, CookieError> {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        let xdg = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".config")))
            .map(|c| c.join("erlang").join(".erlang.cookie"));
        let home_file = home.map(|h| h.join(".erlang.cookie"));
        for path in home_file.iter().chain(xdg.iter()) {
            match Cookie::read_file(path) {
                Err(CookieError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                }
                other => return other,
            }
        }
        match home_file.or(xdg) {
            Some(path) => Cookie::create_file(&path),
            None => Err(CookieError::NoHome),
        }
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cookie(<redacted>)")
    }
}

impl fmt::Display for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `auth:check_cookie/2`: printable ASCII (space to `~`), then only
/// spaces, CR and LF.
fn parse_cookie_file(bytes: &[u8]) -> Result<String, &'static str> {
    let end = bytes
        .iter()
        .position(|b| !(b' '..=b'~').contains(b))
        .unwrap_or(bytes.len());
    let (text, rest) = bytes.split_at(end);
    if rest.iter().any(|b| !matches!(b, b'\n' | b'\r' | b' ')) {
        return Err("Bad characters in cookie");
    }
    if text.is_empty() {
        return Err("Too short cookie string");
    }
    Ok(String::from_utf8_lossy(text).into_owned())
}

/// `n` uppercase letters from the OS's CSPRNG (rejection sampling, so
/// each letter is equally likely).
pub(crate) fn random_letters(n: usize) -> Result<String, CookieError> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 32];
    while out.len() < n {
        getrandom::fill(&mut buf).map_err(CookieError::Random)?;
        for b in buf {
            // 234 = 9 * 26: keep the distribution uniform.
            if b < 234 && out.len() < n {
                out.push(char::from(b'A' + b % 26));
            }
        }
    }
    Ok(out)
}

/// A fresh challenge from the OS's CSPRNG (OTP's `dist_util:gen_challenge/0`
/// mixes clocks and runtime statistics; a predictable challenge would let
/// a recorded exchange be replayed).
///
/// # Errors
/// [`CookieError::Random`].
pub fn gen_challenge() -> Result<u32, CookieError> {
    getrandom::u32().map_err(CookieError::Random)
}

/// A handshake digest: 16 bytes of MD5. Compared in constant time.
#[derive(Clone, Copy)]
pub struct Digest(pub [u8; 16]);

impl Digest {
    /// Constant-time comparison (so a peer cannot learn the expected
    /// digest byte by byte from timing).
    pub fn ct_eq(&self, other: &Digest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl PartialEq for Digest {
    fn eq(&self, other: &Digest) -> bool {
        self.ct_eq(other)
    }
}

impl Eq for Digest {}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", hex::encode(self.0))
    }
}

/// The cookies of a node: one for every peer, with per-peer exceptions
/// (`erlang:set_cookie(Node, Cookie)`).
///
/// ```
/// use erldist::handshake::{Cookie, Cookies, NodeName};
/// let mut cookies = Cookies::new(Cookie::new("main").unwrap());
/// let special = NodeName::parse("other@localhost").unwrap();
/// cookies.set_for(special.clone(), Cookie::new("other").unwrap());
/// assert_eq!(cookies.for_peer(&special).expose(), "other");
/// assert_eq!(cookies.for_peer(&NodeName::parse("x@localhost").unwrap()).expose(), "main");
/// ```
#[derive(Clone, Debug)]
pub struct Cookies {
    default: Cookie,
    per_peer: HashMap<NodeName, Cookie>,
}

impl Cookies {
    /// Cookies that are `default` for every peer.
    pub fn new(default: Cookie) -> Cookies {
        Cookies {
            default,
            per_peer: HashMap::new(),
        }
    }

    /// The cookie used with `peer`.
    pub fn for_peer(&self, peer: &NodeName) -> &Cookie {
        self.per_peer.get(peer).unwrap_or(&self.default)
    }

    /// Uses `cookie` with `peer` instead of the default.
    pub fn set_for(&mut self, peer: NodeName, cookie: Cookie) {
        self.per_peer.insert(peer, cookie);
    }

    /// The default cookie.
    pub fn default_cookie(&self) -> &Cookie {
        &self.default
    }
}

impl From<Cookie> for Cookies {
    fn from(c: Cookie) -> Cookies {
        Cookies::new(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_md5_of_cookie_and_decimal_challenge() {
        let c = Cookie::new("secret").unwrap();
        let d = c.digest(4_000_000_000);
        assert_eq!(d.0, md5::compute(b"secret4000000000").0);
        assert_eq!(d, c.digest(4_000_000_000));
        assert_ne!(d, c.digest(1));
    }

    #[test]
    fn cookie_is_redacted() {
        let c = Cookie::new("hunter2").unwrap();
        assert!(!format!("{c:?}{c}{:?}", Cookies::new(c.clone())).contains("hunter2"));
    }

    #[test]
    fn random_cookies_are_20_uppercase_letters() {
        let a = Cookie::random().unwrap();
        assert_eq!(a.expose().len(), 20);
        assert!(a.expose().bytes().all(|b| b.is_ascii_uppercase()));
        assert_ne!(a, Cookie::random().unwrap());
    }

    #[test]
    fn cookie_file_contents_follow_auth_erl() {
        assert_eq!(parse_cookie_file(b"ABC\n").unwrap(), "ABC");
        assert_eq!(parse_cookie_file(b"A B \r\n").unwrap(), "A B ");
        assert!(parse_cookie_file(b"AB\nC").is_err());
        assert!(parse_cookie_file(b"\n").is_err());
        assert!(parse_cookie_file(b"").is_err());
        assert!(parse_cookie_file("é".as_bytes()).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn cookie_files_are_created_0400_and_refused_when_open_to_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(crate::testing::unique_name("cookie"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".erlang.cookie");
        let c = Cookie::create_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        assert_eq!(Cookie::read_file(&path).unwrap(), c);
        assert!(Cookie::create_file(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Cookie::read_file(&path),
            Err(CookieError::Permissions { mode: 0o644, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn cookie_files_follow_auth_erl_check_attributes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(crate::testing::unique_name("cookie_modes"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c");
        std::fs::write(&path, "SECRETVALUE\n").unwrap();
        // auth.erl: (Mode band 8#077) =/= 0 is refused; owner bits are free.
        for (mode, ok) in [
            (0o400, true),
            (0o600, true),
            (0o700, true),
            (0o640, false),
            (0o604, false),
            (0o620, false),
            (0o602, false),
            (0o610, false),
            (0o601, false),
            (0o777, false),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = Cookie::read_file(&path);
            assert_eq!(r.is_ok(), ok, "mode {mode:o}: {r:?}");
            if let Err(e) = r {
                assert!(matches!(e, CookieError::Permissions { .. }), "{e}");
                let text = format!("{e} {e:?}");
                assert!(text.contains("owner only") && !text.contains("SECRETVALUE"));
            }
        }
        // A symbolic link is followed, as file:raw_read_file_info does.
        let link = dir.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(Cookie::read_file(&link).unwrap().expose(), "SECRETVALUE");
        // Not a regular file: refused.
        let sub = dir.join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(matches!(
            Cookie::read_file(&sub),
            Err(CookieError::NotAFile { .. })
        ));
        // Bad contents: the error says why, never what the file holds.
        let bad = dir.join("bad");
        std::fs::write(&bad, "SECRETVALUE\n\tx").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o400)).unwrap();
        let e = Cookie::read_file(&bad).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(
            text.contains("Bad characters") && !text.contains("SECRETVALUE"),
            "{text}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
