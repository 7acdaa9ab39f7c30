//! erldist's EPMD server serving the real clients: `erl` nodes, `elixir`,
//! and the `epmd` command line; and byte-for-byte comparisons with the real
//! `epmd`.

use std::time::Duration;

use erldist::epmd::{EpmdClient, EpmdServer, EpmdServerConfig};
use erldist::testing::{
    epmd_command, require_erl, require_programs, unique_name, wait_until, ErlNode, RealEpmd,
};

/// Sends `req` and collects what arrives until the peer closes or 1 s of
/// silence (the real EPMD keeps ALIVE2 connections open, even refused
/// ones).
fn read_what_arrives(port: u16, req: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

async fn server(relaxed: bool) -> EpmdServer {
    EpmdServer::start(EpmdServerConfig {
        relaxed_command_check: relaxed,
        ..EpmdServerConfig::with_port(0)
    })
    .await
    .unwrap()
}

fn listed(server: &EpmdServer, alive: &str) -> bool {
    server.names().iter().any(|e| e.name == alive)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_nodes_register_find_each_other_and_connect() {
    if !require_erl() {
        return;
    }
    let server = server(false).await;
    let port = server.port();
    let cookie = unique_name("cookie");
    let mut a = ErlNode::start("a", port, &cookie).unwrap();
    let mut b = ErlNode::start("b", port, &cookie).unwrap();
    assert!(listed(&server, a.alive_name()));
    assert!(listed(&server, b.alive_name()));

    // The real `epmd -names` client lists them.
    let (ok, text) = epmd_command(port, &["-names"]).unwrap();
    assert!(ok, "{text}");
    assert!(
        text.starts_with(&format!("epmd: up and running on port {port} with data:\n")),
        "{text}"
    );
    assert!(text.contains(&format!("name {} at port ", a.alive_name())));
    assert!(text.contains(&format!("name {} at port ", b.alive_name())));

    // The nodes look each other up through our EPMD and connect.
    let pong = a.eval(&format!("net_adm:ping('{}').", b.name())).unwrap();
    assert_eq!(pong, "pong");
    let seen = b
        .eval(&format!("lists:member('{}', nodes()).", a.name()))
        .unwrap();
    assert_eq!(seen, "true");
    // erl_epmd:names/1 (which checks the port in the reply) works too.
    let names = a.eval("{ok, Ns} = net_adm:names(), length(Ns).").unwrap();
    assert_eq!(names, "2");
    // The creation the node uses is the one our EPMD handed out.
    let creation: u32 = a
        .eval("erlang:system_info(creation).")
        .unwrap()
        .parse()
        .unwrap();
    assert!(creation >= 4);

    // A killed node disappears.
    let b_alive = b.alive_name().to_owned();
    b.kill();
    assert!(wait_until(Duration::from_secs(5), || !listed(
        &server, &b_alive
    )));
    let (_, text) = epmd_command(port, &["-names"]).unwrap();
    assert!(!text.contains(&b_alive), "{text}");
    assert!(text.contains(a.alive_name()));
    let client = EpmdClient::new().port(port);
    assert!(client.port_please(&b_alive).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elixir_node_pings_erl_node_through_our_epmd() {
    if !require_erl() || !require_programs(&["elixir"]) {
        return;
    }
    let server = server(false).await;
    let port = server.port();
    let cookie = unique_name("cookie");
    let mut a = ErlNode::start("ex_a", port, &cookie).unwrap();
    let ex_name = format!("{}@localhost", unique_name("ex"));
    let target = a.name().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("elixir")
            .args(["--sname", &ex_name, "--cookie", &cookie])
            .args(["--erl", "-start_epmd false"])
            .args(["-e", &format!("IO.puts(Node.ping(:\"{target}\"))")])
            .env("ERL_EPMD_PORT", port.to_string())
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "pong",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The Elixir node was seen by the Erlang one.
    let _ = a.eval("ok.").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epmd_command_line_kill_and_stop_rules() {
    if !require_erl() {
        return;
    }
    // Strict mode: KILL refused while a node lives, STOP ignored.
    let server = server(false).await;
    let port = server.port();
    let client = EpmdClient::new().port(port);
    let name = unique_name("k");
    let reg = client.register(&name, 5000).await.unwrap();
    let (ok, text) = tokio::task::spawn_blocking(move || epmd_command(port, &["-kill"]))
        .await
        .unwrap()
        .unwrap();
    assert!(!ok);
    assert_eq!(text, "Killing not allowed - living nodes in database.\n");
    assert!(!server.is_stopped());
    let (ok, _) = tokio::task::spawn_blocking(move || epmd_command(port, &["-stop", "x"]))
        .await
        .unwrap()
        .unwrap();
    assert!(!ok);
    drop(reg);
    assert!(wait_until(Duration::from_secs(5), || server
        .names()
        .is_empty()));
    let (ok, text) = tokio::task::spawn_blocking(move || epmd_command(port, &["-kill"]))
        .await
        .unwrap()
        .unwrap();
    assert!(ok, "{text}");
    assert_eq!(text, "Killed\n");
    let mut server = server;
    tokio::time::timeout(Duration::from_secs(5), server.stopped())
        .await
        .unwrap();

    // Relaxed mode: STOP drops a registration, KILL works with nodes alive.
    let server = self::server(true).await;
    let port = server.port();
    let client = EpmdClient::new().port(port);
    let mut reg = client.register(&name, 5000).await.unwrap();
    let stop_name = name.clone();
    let (ok, text) =
        tokio::task::spawn_blocking(move || epmd_command(port, &["-stop", &stop_name]))
            .await
            .unwrap()
            .unwrap();
    assert!(ok, "{text}");
    assert_eq!(text, "STOPPED\n");
    tokio::time::timeout(Duration::from_secs(5), reg.closed())
        .await
        .unwrap();
    assert!(server.names().is_empty());
    let (_, text) = tokio::task::spawn_blocking(move || epmd_command(port, &["-stop", "nosuch"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text, "NOEXIST\n");
    let _reg = client.register(&name, 5000).await.unwrap();
    let (ok, text) = tokio::task::spawn_blocking(move || epmd_command(port, &["-kill"]))
        .await
        .unwrap()
        .unwrap();
    assert!(ok, "{text}");
    let mut server = server;
    tokio::time::timeout(Duration::from_secs(5), server.stopped())
        .await
        .unwrap();
}

/// Sends the same raw requests to the real epmd and to ours, holding the
/// same registrations, and compares the bytes that come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_byte_identical_to_real_epmd() {
    if !require_erl() {
        return;
    }
    for relaxed in [false, true] {
        let real = if relaxed {
            RealEpmd::start_relaxed().unwrap()
        } else {
            RealEpmd::start().unwrap()
        };
        let ours = server(relaxed).await;
        let name = unique_name("same");
        let other = unique_name("other");
        let mut regs = Vec::new();
        for port in [real.port(), ours.port()] {
            let c = EpmdClient::new().port(port);
            regs.push(c.register(&other, 4242).await.unwrap());
            regs.push(c.register(&name, 4343).await.unwrap());
        }
        let ask = |port: u16, req: Vec<u8>| {
            tokio::task::spawn_blocking(move || read_what_arrives(port, &req))
        };
        let with_len = |body: &[u8]| {
            let mut v = (body.len() as u16).to_be_bytes().to_vec();
            v.extend_from_slice(body);
            v
        };
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            ("port please", with_len(format!("z{name}").as_bytes())),
            ("port please NUL", with_len(format!("z{name}\0").as_bytes())),
            ("port please unknown", with_len(b"znobody")),
            ("port please empty", with_len(b"z")),
            ("unknown tag", with_len(b"Q")),
            ("zero length", vec![0, 0]),
            ("too long", vec![0x0b, 0xf2, b'n']),
            ("extra bytes", vec![0, 1, b'n', 0]),
            ("names", with_len(b"n")),
            ("stop unknown", with_len(b"snobody")),
        ];
        // Duplicate registration (and its reply); epmd keeps that socket
        // open, so cut the read short with the 3 s timeout: compare only
        // what arrived.
        let dup = {
            let mut body = vec![b'x', 0x10, 0x92, 77, 0, 0, 6, 0, 5];
            body.extend_from_slice(&(name.len() as u16).to_be_bytes());
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(&[0, 0]);
            with_len(&body)
        };
        cases.push(("duplicate alive2", dup));
        for (what, req) in cases {
            let (r, o) = tokio::join!(ask(real.port(), req.clone()), ask(ours.port(), req));
            let (mut r, mut o) = (r.unwrap(), o.unwrap());
            if what == "names" {
                // The first 4 bytes are each EPMD's own port.
                assert_eq!(&r[..4], &u32::from(real.port()).to_be_bytes()[..]);
                assert_eq!(&o[..4], &u32::from(ours.port()).to_be_bytes()[..]);
                r.drain(..4);
                o.drain(..4);
            }
            assert_eq!(
                String::from_utf8_lossy(&o),
                String::from_utf8_lossy(&r),
                "{what} (relaxed: {relaxed})"
            );
            let expect_reply = matches!(what, "port please" | "port please NUL" | "names")
                || what.starts_with("duplicate")
                || what == "port please unknown"
                || (relaxed && what == "stop unknown");
            assert_eq!(
                !r.is_empty() || what == "names",
                expect_reply,
                "{what}: {r:?}"
            );
        }
        // KILL with nodes registered: "NO" unless relaxed, then "OK".
        let (r, o) = tokio::join!(
            ask(real.port(), with_len(b"k")),
            ask(ours.port(), with_len(b"k"))
        );
        let (r, o) = (r.unwrap(), o.unwrap());
        assert_eq!(o, r);
        assert_eq!(r, if relaxed { &b"OK"[..] } else { &b"NO"[..] });
    }
}
