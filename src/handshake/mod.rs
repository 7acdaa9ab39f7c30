//! The distribution handshake: names, cookies, challenges and flags.
