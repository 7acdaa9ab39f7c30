//! The `erldist` command line.

fn main() {}
