//! A bounded soak: random API operations on a few VMs, random client
//! hang-ups mid-operation, and random `kill -9` of the daemon (sometimes
//! with an operation in flight) followed by a restart. After every restart
//! the daemon must start, every VM must be in the state its acknowledged
//! operations left it in (or that of the one operation in flight), and no
//! VMM process of the killed daemon may survive. Runs `VM_SOAK_SECS`
//! seconds (default 20, at most 120); `VM_SOAK_SEED` replays a run.

mod daemon_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use daemon_support::{live_children, spinning_guest, Daemon};
use test_prerequisites::kvm_available;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    Absent,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Model {
    fn after_restart(self) -> Self {
        match self {
            Self::Running | Self::Paused => Self::Stopped,
            s => s,
        }
    }
}

/// What the daemon says about `id`.
async fn observe(d: &Daemon, id: &str) -> (Model, u64) {
    let r = d.req("GET", &format!("/vms/{id}"), None).await;
    if r.status == 404 {
        return (Model::Absent, 0);
    }
    assert_eq!(r.status, 200, "GET {id}: {}", r.text());
    let v: serde_json::Value = r.json().unwrap();
    let state = match v["state"].as_str().unwrap() {
        "created" => Model::Created,
        "running" => Model::Running,
        "paused" => Model::Paused,
        "stopped" => Model::Stopped,
        other => panic!("{id} is {other}: {v:#}"),
    };
    (state, v["process"]["pid"].as_u64().unwrap_or(0))
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ")
}

#[derive(Debug, Default)]
struct Figures {
    operations: u64,
    cancelled: u64,
    restarts: u64,
    in_flight_at_kill: u64,
    mismatches: u64,
    orphans: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_random_ops_hang_ups_and_kill_9() {
    let secs = std::env::var("VM_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(20)
        .min(120);
    let seed = std::env::var("VM_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let guests = kvm_available();
    eprintln!("soak: {secs} s, seed {seed}, guests {guests}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let spin = spinning_guest(dir.path());
    let args = ["--grace-period", "1"];
    let mut d = Daemon::start_with(dir.path(), &args).await;
    let ids: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
    // Acknowledged state, and an operation whose answer never came.
    let mut model: BTreeMap<String, (Model, Option<Model>)> = ids
        .iter()
        .map(|id| (id.clone(), (Model::Absent, None)))
        .collect();
    let mut figures = Figures::default();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let id = ids[rng.below(ids.len() as u64) as usize].clone();
        // A hung-up operation completes (or never began): settle it first.
        if let Some((before, Some(next))) = model.get(&id).copied() {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut seen = observe(&d, &id).await.0;
            while seen != next && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                seen = observe(&d, &id).await.0;
            }
            if seen != before && seen != next {
                eprintln!("MISMATCH {id}: {seen:?} after a hung-up {before:?} -> {next:?}");
                figures.mismatches += 1;
            }
            model.insert(id.clone(), (seen, None));
        }
        let state = model[&id].0;
        let mut choices: Vec<(&str, &str, Option<String>, Model)> = Vec::new();
        let act = |a: &str| Some(format!(r#"{{"action_type":"{a}"}}"#));
        match state {
            Model::Absent => {
                let body = if guests && rng.below(2) == 0 {
                    spin.clone()
                } else {
                    "{}".to_string()
                };
                choices.push(("PUT", "", Some(body), Model::Created));
            }
            Model::Created | Model::Stopped => {
                if guests && model_config_is_guest(&d, &id).await {
                    choices.push(("PUT", "/actions", act("start"), Model::Running));
                }
                if state == Model::Created {
                    choices.push(("PUT", "/actions", act("stop"), Model::Stopped));
                }
                choices.push(("DELETE", "", None, Model::Absent));
            }
            Model::Running => {
                choices.push(("PUT", "/actions", act("pause"), Model::Paused));
                choices.push(("PUT", "/actions", act("stop"), Model::Stopped));
            }
            Model::Paused => {
                choices.push(("PUT", "/actions", act("resume"), Model::Running));
                choices.push(("PUT", "/actions", act("stop"), Model::Stopped));
            }
        }
        let (method, suffix, body, next) =
            choices.swap_remove(rng.below(choices.len() as u64) as usize);
        let path = format!("/vms/{id}{suffix}");
        figures.operations += 1;
        let roll = rng.below(100);
        if roll < 20 {
            // The client hangs up after 0-40 ms.
            figures.cancelled += 1;
            let after = Duration::from_millis(rng.below(40));
            d.hang_up(method, &path, body.as_deref().unwrap_or(""), after)
                .await;
            model.insert(id.clone(), (state, Some(next)));
        } else if roll < 25 {
            // kill -9 with this operation in flight, then restart.
            let client = d.client.clone();
            let (op_method, op_path, op_body) = (method.to_string(), path.clone(), body.clone());
            let op = tokio::spawn(async move {
                client
                    .request(&op_method, &op_path, op_body.as_deref().map(str::as_bytes))
                    .await
            });
            tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
            let vmms = live_children(d.child.id());
            d.kill9();
            match op.await.unwrap() {
                Ok(r) if r.status < 300 => model.insert(id.clone(), (next, None)),
                Ok(r) => panic!("{method} {path}: {} {}", r.status, r.text()),
                Err(_) => {
                    figures.in_flight_at_kill += 1;
                    model.insert(id.clone(), (state, Some(next)))
                }
            };
            drop(d);
            d = Daemon::start_with(dir.path(), &args).await;
            figures.restarts += 1;
            for pid in vmms {
                let deadline = Instant::now() + Duration::from_secs(20);
                while alive(pid) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if alive(pid) {
                    eprintln!("ORPHAN: VMM process {pid} outlived its daemon");
                    figures.orphans += 1;
                }
            }
            for (vm, (acked, pending)) in &mut model {
                let seen = observe(&d, vm).await.0;
                let allowed: Vec<Model> = std::iter::once(*acked)
                    .chain(*pending)
                    .map(Model::after_restart)
                    .collect();
                if !allowed.contains(&seen) {
                    eprintln!("MISMATCH after restart {vm}: {seen:?}, acknowledged {acked:?}, in flight {pending:?}");
                    figures.mismatches += 1;
                }
                *acked = seen;
                *pending = None;
            }
        } else {
            let r = d.req(method, &path, body.as_deref()).await;
            if r.status >= 300 {
                eprintln!(
                    "MISMATCH {method} {path} from {state:?}: {} {}",
                    r.status,
                    r.text()
                );
                figures.mismatches += 1;
                let seen = observe(&d, &id).await.0;
                model.insert(id.clone(), (seen, None));
            } else {
                model.insert(id.clone(), (next, None));
            }
        }
    }
    // The end: settle, compare once more, and stop cleanly.
    for (vm, (acked, pending)) in &model {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = observe(&d, vm).await.0;
        while Some(seen) != *pending && pending.is_some() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            seen = observe(&d, vm).await.0;
        }
        if seen != *acked && Some(seen) != *pending {
            eprintln!(
                "MISMATCH at the end {vm}: {seen:?}, acknowledged {acked:?}, in flight {pending:?}"
            );
            figures.mismatches += 1;
        }
    }
    let vmms = live_children(d.child.id());
    assert!(d.sigterm().success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    figures.orphans += vmms.iter().filter(|p| alive(**p)).count() as u64;
    eprintln!("soak figures: {figures:?}");
    assert_eq!((figures.mismatches, figures.orphans), (0, 0), "{figures:?}");
    assert!(figures.restarts > 0 && figures.cancelled > 0, "{figures:?}");
}

/// Whether `id` boots the spinning guest (a VM with the built-in guest
/// stops on its own after booting, which this model does not follow).
async fn model_config_is_guest(d: &Daemon, id: &str) -> bool {
    let v = d.expect("GET", &format!("/vms/{id}"), None, 200).await;
    v["config"]["kernel"].is_string()
}
