//! Crash test: a child process appends in a loop and is killed with SIGKILL at random
//! moments; after each kill the store must reopen and hold every append the child had
//! acknowledged (reported on its stdout pipe after `append` returned).
//!
//! The child is this test binary re-executed with `CHILD_ENV` set, running `crash_child`.
//! The run is bounded by the number of kills, not by time.

use std::collections::HashMap;
use std::env;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vm_core::store::{EventStore, V2Store};
use vm_core::{EventKind, VmEvent, VmId};

const CHILD_ENV: &str = "VM_CORE_CRASH_CHILD_STORE";
const SEED_ENV: &str = "VM_CORE_CRASH_SEED";
const KILLS: usize = 200;
/// The child stops by itself after this many appends per writer (it is normally killed long
/// before), so a lost parent cannot leave it running forever.
const CHILD_MAX_APPENDS: u64 = 20_000;

/// Writers of the child: (stream name, events per batch, bytes of error text per event).
/// The last writes ~33 KiB frames, which SIGKILL can cut mid-`pwrite` (torn tails).
const WRITERS: [(&str, usize, usize); 3] = [("single", 1, 0), ("batch", 7, 16), ("big", 32, 1024)];

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn writer(store: &V2Store, name: &str, batch: usize, pad: usize, out: &std::sync::Mutex<()>) {
    let vm = VmId::new(name).unwrap();
    let mut seq = store.stream_head(&vm);
    let text = "x".repeat(pad);
    for _ in 0..CHILD_MAX_APPENDS {
        let events: Vec<VmEvent> = (1..=batch as u64)
            .map(|i| {
                let kind = if seq + i == 1 {
                    EventKind::created(vm_core::VmConfig::default())
                } else {
                    EventKind::Failed {
                        error: text.clone(),
                    }
                };
                VmEvent::new(vm.clone(), seq + i, kind)
            })
            .collect();
        store.append_batch(&events).unwrap();
        seq += batch as u64;
        let _guard = out.lock().unwrap();
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "ACK {name} {seq}").unwrap();
        stdout.flush().unwrap();
    }
}

/// The child's body: a no-op unless re-executed by the crash test.
#[test]
fn crash_child() {
    let Some(path) = env::var_os(CHILD_ENV) else {
        return;
    };
    let store = V2Store::open(Path::new(&path)).unwrap();
    if let Some(rec) = store.tail_recovery() {
        println!("RECOVERED {} {}", rec.offset, rec.dropped_bytes);
    }
    let out = std::sync::Mutex::new(());
    std::thread::scope(|s| {
        for (name, batch, pad) in WRITERS {
            let (store, out) = (&store, &out);
            s.spawn(move || writer(store, name, batch, pad, out));
        }
    });
}

#[test]
fn sigkill_never_loses_acknowledged_appends() {
    if env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let seed = env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed {seed} (set {SEED_ENV} to replay)");
    let mut rng = XorShift(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.v2");
    let stderr_path = dir.path().join("child.stderr");
    let exe = env::current_exe().unwrap();

    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut total_acks = 0u64;
    let mut recoveries = 0u64;
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut record = |line: &str, acked: &mut HashMap<String, u64>| -> bool {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("ACK"), Some(name), Some(seq)) => {
                    let seq: u64 = seq.parse().unwrap();
                    let slot = acked.entry(name.to_owned()).or_default();
                    assert!(seq > *slot, "ack {line} after {slot}");
                    *slot = seq;
                    total_acks += 1;
                    true
                }
                (Some("RECOVERED"), ..) => {
                    recoveries += 1;
                    false
                }
                _ => false,
            }
        };
        // Kill after a random number of acks, at a random moment in the next append.
        let target = 1 + rng.below(24);
        let mut seen = 0;
        while seen < target {
            let Some(line) = lines.next() else {
                let status = child.wait().unwrap();
                panic!(
                    "kill {kill}: child exited early ({status}): {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            };
            if record(&line.unwrap(), &mut acked) {
                seen += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        child.kill().unwrap(); // SIGKILL
                               // Acks the child wrote before dying are still in the pipe: they count.
        for line in lines {
            record(&line.unwrap(), &mut acked);
        }
        child.wait().unwrap();

        let store =
            V2Store::open(&path).unwrap_or_else(|e| panic!("kill {kill}: reopen failed: {e}"));
        if store.tail_recovery().is_some() {
            recoveries += 1;
        }
        for (name, &seq) in &acked {
            let vm = VmId::new(name).unwrap();
            let head = store.stream_head(&vm);
            assert!(
                head >= seq,
                "kill {kill}: {name} acked {seq}, store has {head}"
            );
        }
    }
    let store = V2Store::open(&path).unwrap();
    let all: Vec<VmEvent> = store.read_all().unwrap().map(Result::unwrap).collect();
    for (name, &seq) in &acked {
        let vm = VmId::new(name).unwrap();
        let stream = store.read_stream(&vm, 1).unwrap();
        assert!(stream.len() as u64 >= seq);
        assert!(stream.iter().zip(1..).all(|(e, s)| e.sequence == s));
    }
    eprintln!(
        "crash test: {KILLS} kills, {total_acks} acks, {} events stored, {recoveries} torn tails recovered",
        all.len()
    );
    assert!(total_acks >= KILLS as u64);
}
