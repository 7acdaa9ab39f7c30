//! `erldist epmd` and `erldist names` against the real `epmd` command line.

use std::process::{Command, Stdio};
use std::time::Duration;

use erldist::epmd::EpmdClient;
use erldist::testing::{epmd_command, free_port, on_free_port, require_erl, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_erldist");

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn names_output(port: u16) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["names", "--port", &port.to_string()])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erldist_epmd_and_names_match_epmd_names() {
    if !require_erl() {
        return;
    }
    // `erldist epmd` exits at once if another process took the port.
    let (port, mut server) = on_free_port(|port| async move {
        let mut server = Killed(
            Command::new(BIN)
                .args([
                    "epmd",
                    "--port",
                    &port.to_string(),
                    "--address",
                    "127.0.0.1",
                ])
                .env_remove("ERL_EPMD_RELAXED_COMMAND_CHECK")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let exited = |s: &mut Killed| s.0.try_wait().is_ok_and(|s| s.is_some());
        let up = wait_until(Duration::from_secs(10), || {
            names_output(port).0 || exited(&mut server)
        });
        if up && !exited(&mut server) {
            Ok(server)
        } else {
            Err(std::io::Error::other("erldist epmd did not start"))
        }
    })
    .await
    .unwrap();
    let client = EpmdClient::new().port(port);
    let reg = client.register("cli_node", 12345).await.unwrap();

    let (ok, ours) = names_output(port);
    assert!(ok);
    let (ok, theirs) = epmd_command(port, &["-names"]).unwrap();
    assert!(ok);
    assert_eq!(ours, theirs);
    assert_eq!(
        ours,
        format!("epmd: up and running on port {port} with data:\nname cli_node at port 12345\n")
    );

    // No EPMD: a clear error, exit code 1.
    let (ok, text) = names_output(free_port().unwrap());
    assert!(!ok);
    assert!(text.contains("no EPMD at"), "{text}");

    // `epmd -kill` stops `erldist epmd` once no node is registered.
    drop(reg);
    assert!(wait_until(Duration::from_secs(5), || {
        epmd_command(port, &["-kill"]).is_ok_and(|(ok, _)| ok)
    }));
    assert!(wait_until(Duration::from_secs(5), || {
        matches!(server.0.try_wait(), Ok(Some(_)))
    }));
}
