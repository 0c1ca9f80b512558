//! kill -9 the daemon while clients are mid-operation, restart it, and check
//! that the journal-rebuilt state matches what was acknowledged: every VM is
//! in the state its last acknowledged operation left it in, or in the state
//! of the operation that was in flight (journaled but not yet answered);
//! running or paused VMs come back `stopped` with reason `daemon restarted`,
//! and their VMM processes are gone.

mod daemon_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use daemon_support::{spinning_guest, Daemon};
use test_prerequisites::kvm_available;
use vm_service::api::client::ApiClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    Absent,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Model {
    /// What a restarted daemon reports for a VM last in this state.
    fn after_restart(self) -> Self {
        match self {
            Self::Running | Self::Paused => Self::Stopped,
            s => s,
        }
    }

    fn parse(state: &str) -> Self {
        match state {
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "stopped" => Self::Stopped,
            other => panic!("unexpected state {other}"),
        }
    }
}

#[derive(Debug)]
struct Outcome {
    id: String,
    acked: Model,
    in_flight: Option<Model>,
    pids: Vec<u32>,
}

/// One client's operations on its own VM, in a loop, until the daemon dies.
async fn client(
    sock: std::path::PathBuf,
    id: String,
    spec: String,
    with_guest: bool,
    acks: Arc<AtomicUsize>,
) -> Outcome {
    let api = ApiClient::new(&sock);
    let mut ops: Vec<(&str, &str, Option<String>, Model)> =
        vec![("PUT", "", Some(spec), Model::Created)];
    let act = |a: &str| Some(format!(r#"{{"action_type":"{a}"}}"#));
    if with_guest {
        ops.push(("PUT", "/actions", act("start"), Model::Running));
        ops.push(("PUT", "/actions", act("pause"), Model::Paused));
        ops.push(("PUT", "/actions", act("resume"), Model::Running));
    }
    ops.push(("PUT", "/actions", act("stop"), Model::Stopped));
    ops.push(("DELETE", "", None, Model::Absent));
    let mut out = Outcome {
        id: id.clone(),
        acked: Model::Absent,
        in_flight: None,
        pids: Vec::new(),
    };
    loop {
        for (method, suffix, body, next) in &ops {
            let path = format!("/vms/{id}{suffix}");
            match api
                .request(method, &path, body.as_deref().map(str::as_bytes))
                .await
            {
                Ok(r) if r.status < 300 => {
                    out.acked = *next;
                    if let Ok(v) = r.json::<serde_json::Value>() {
                        if let Some(pid) = v["process"]["pid"].as_u64() {
                            out.pids.push(pid as u32);
                        }
                    }
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => panic!("{method} {path}: {} {}", r.status, r.text()),
                Err(_) => {
                    // The daemon died: this operation may or may not be journaled.
                    out.in_flight = Some(*next);
                    return out;
                }
            }
        }
    }
}

async fn pid_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_mins(1);
    while Instant::now() < deadline {
        // The orphaned VMM process stops its guest when the control socket
        // closes; init reaps it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_operation_then_replay_matches_acknowledged_state() {
    let with_guest = kvm_available();
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path()).await;
    let spin = spinning_guest(dir.path());
    let acks = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..8 {
        // Half the clients boot guests (with KVM), half only define and delete VMs.
        let guest = with_guest && i % 2 == 0;
        let spec = if guest {
            spin.clone()
        } else {
            "{}".to_string()
        };
        tasks.push(tokio::spawn(client(
            d.sock.clone(),
            format!("k{i}"),
            spec,
            guest,
            acks.clone(),
        )));
    }
    while acks.load(Ordering::Relaxed) < 80 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    d.kill9();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let in_flight = outcomes.iter().filter(|o| o.in_flight.is_some()).count();
    eprintln!(
        "killed after {} acknowledged operations; {in_flight} in flight",
        acks.load(Ordering::Relaxed)
    );

    drop(d);
    let d = Daemon::start(dir.path()).await;
    let mut seen = Vec::new();
    for o in &outcomes {
        let r = d.req("GET", &format!("/vms/{}", o.id), None).await;
        let (actual, reason) = match r.status {
            404 => (Model::Absent, None),
            200 => {
                let v: serde_json::Value = r.json().unwrap();
                (
                    Model::parse(v["state"].as_str().unwrap()),
                    v["stop_reason"].as_str().map(String::from),
                )
            }
            s => panic!("GET {}: {s}", o.id),
        };
        let allowed: Vec<Model> = std::iter::once(o.acked)
            .chain(o.in_flight)
            .map(Model::after_restart)
            .collect();
        assert!(
            allowed.contains(&actual),
            "{}: rebuilt {actual:?}, acknowledged {:?}, in flight {:?}",
            o.id,
            o.acked,
            o.in_flight
        );
        let was_live = matches!(o.acked, Model::Running | Model::Paused)
            && !matches!(o.in_flight, Some(Model::Stopped));
        if was_live {
            assert_eq!(reason.as_deref(), Some("daemon restarted"), "{}", o.id);
        }
        for pid in &o.pids {
            assert!(
                pid_gone(*pid).await,
                "VMM process {pid} of {} outlived the daemon",
                o.id
            );
        }
        seen.push((o.id.clone(), actual));
    }

    // The recovered journal replays the same way again, and recovered VMs boot.
    let listed = d.expect("GET", "/vms", None, 200).await;
    let mut d = d;
    assert!(d.sigterm().success());
    drop(d);
    let d = Daemon::start(dir.path()).await;
    assert_eq!(
        d.expect("GET", "/vms", None, 200)
            .await
            .as_array()
            .map(Vec::len),
        listed.as_array().map(Vec::len)
    );
    for (id, state) in &seen {
        let v = d
            .expect(
                "GET",
                &format!("/vms/{id}"),
                None,
                if *state == Model::Absent { 404 } else { 200 },
            )
            .await;
        if *state != Model::Absent {
            assert_eq!(Model::parse(v["state"].as_str().unwrap()), *state, "{id}");
        }
    }
    if with_guest {
        let restartable = seen
            .iter()
            .find(|(_, s)| *s == Model::Stopped)
            .map(|(id, _)| id.clone());
        if let Some(id) = restartable {
            assert_eq!(d.action(&id, "start", 200).await["state"], "running");
            assert_eq!(d.action(&id, "stop", 200).await["state"], "stopped");
        }
    }
}
