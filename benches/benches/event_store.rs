//! Event store throughput: the v2 binary store against SQLite in WAL mode, same events, same
//! durability (every commit fsync'd: `synchronous=FULL`), same run; ratios printed at the end.
//!
//! - append/single: one event per durable append (v2 `append`, SQLite one-row transaction);
//! - append/batch64: 64 events per durable append;
//! - append/concurrent4: 4 threads appending single events at once (v2 group commit shares
//!   fsyncs; SQLite serialises writers);
//! - replay/read_all: decode every event of an open store (SQLite: SELECT + same decoder);
//! - replay/open+read_all: what a restarting daemon does (v2 open scans and indexes first).
//!
//! Goals (issue 7): append ≥ 5× SQLite, replay ≥ 10 M events/s.

// Throughput figures are reported as f64; precision loss past 2^52 ns or events is irrelevant.
#![allow(clippy::cast_precision_loss)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use rusqlite::{params, Connection};
use vm_core::store::codec::{encode_event, EventDecoder};
use vm_core::store::{EventStore, V2Store};
use vm_core::{EventKind, StopReason, VmConfig, VmEvent, VmId};

const REPLAY_VMS: u64 = 1000;
const REPLAY_EVENTS_PER_VM: u64 = 200;
const THREADS: usize = 4;

/// Per benchmark: (nanoseconds, elements) of every sample, to print ratios at the end.
static SAMPLES: Mutex<Vec<(String, f64)>> = Mutex::new(Vec::new());

fn record(name: &str, elapsed: Duration, elements: u64) -> Duration {
    let per = elapsed.as_nanos() as f64 / elements.max(1) as f64;
    SAMPLES.lock().unwrap().push((name.to_owned(), per));
    elapsed
}

fn event(vm: &VmId, seq: u64) -> VmEvent {
    let kind = match seq % 6 {
        _ if seq == 1 => EventKind::created(VmConfig::default()),
        0 => EventKind::Started,
        1 => EventKind::Paused,
        2 => EventKind::Resumed,
        3 => EventKind::Stopped {
            reason: StopReason::Requested,
        },
        4 => EventKind::DeviceDetached {
            device_id: "eth0".into(),
        },
        _ => EventKind::Failed {
            error: "vcpu 0: KVM_EXIT_INTERNAL_ERROR".into(),
        },
    };
    VmEvent::new(vm.clone(), seq, kind)
}

/// A stream writer: hands out the next events of one VM.
struct Stream {
    vm: VmId,
    next: u64,
}

impl Stream {
    fn new(name: &str) -> Self {
        Self {
            vm: VmId::new(name).unwrap(),
            next: 1,
        }
    }
    fn take(&mut self, n: u64) -> Vec<VmEvent> {
        let evs = (self.next..self.next + n)
            .map(|s| event(&self.vm, s))
            .collect();
        self.next += n;
        evs
    }
}

fn sqlite(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "FULL").unwrap();
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS events (
             id INTEGER PRIMARY KEY, vm TEXT NOT NULL, seq INTEGER NOT NULL,
             ts INTEGER NOT NULL, body BLOB NOT NULL, UNIQUE (vm, seq));",
    )
    .unwrap();
    c
}

fn sqlite_append(c: &mut Connection, events: &[VmEvent], buf: &mut Vec<u8>) {
    let tx = c.transaction().unwrap();
    {
        let mut st = tx
            .prepare_cached("INSERT INTO events (vm, seq, ts, body) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        for ev in events {
            buf.clear();
            encode_event(ev, buf).unwrap();
            st.execute(params![
                ev.vm_id.as_str(),
                ev.sequence as i64,
                ev.timestamp.0 as i64,
                &buf[..]
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn bench_append(c: &mut Criterion, label: &str, batch: u64) {
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(batch));
    let dir = tempfile::tempdir().unwrap();

    let v2 = V2Store::create(&dir.path().join("v2")).unwrap();
    let mut s = Stream::new("bench");
    let name = format!("append/{label}/v2");
    g.bench_function(BenchmarkId::new(label, "v2"), |b| {
        b.iter_custom(|iters| {
            let batches: Vec<Vec<VmEvent>> = (0..iters).map(|_| s.take(batch)).collect();
            let t = Instant::now();
            for evs in &batches {
                v2.append_batch(evs).unwrap();
            }
            record(&name, t.elapsed(), iters * batch)
        });
    });

    let mut db = sqlite(&dir.path().join("sqlite.db"));
    let mut s = Stream::new("bench");
    let mut buf = Vec::new();
    let name = format!("append/{label}/sqlite");
    g.bench_function(BenchmarkId::new(label, "sqlite"), |b| {
        b.iter_custom(|iters| {
            let batches: Vec<Vec<VmEvent>> = (0..iters).map(|_| s.take(batch)).collect();
            let t = Instant::now();
            for evs in &batches {
                sqlite_append(&mut db, evs, &mut buf);
            }
            record(&name, t.elapsed(), iters * batch)
        });
    });
    g.finish();
}

fn bench_concurrent(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(THREADS as u64));
    let dir = tempfile::tempdir().unwrap();
    let label = format!("concurrent{THREADS}");

    let v2 = V2Store::create(&dir.path().join("v2")).unwrap();
    let mut streams: Vec<Stream> = (0..THREADS)
        .map(|t| Stream::new(&format!("t{t}")))
        .collect();
    let name = format!("append/{label}/v2");
    g.bench_function(BenchmarkId::new(&label, "v2"), |b| {
        b.iter_custom(|iters| {
            let work: Vec<Vec<VmEvent>> = streams.iter_mut().map(|s| s.take(iters)).collect();
            let t = Instant::now();
            std::thread::scope(|sc| {
                for evs in &work {
                    let v2 = &v2;
                    sc.spawn(move || {
                        for ev in evs {
                            v2.append(ev).unwrap();
                        }
                    });
                }
            });
            record(&name, t.elapsed(), iters * THREADS as u64)
        });
    });
    let stats = v2.commit_stats();
    println!(
        "v2 group commit: {} appends shared {} fsyncs ({:.1} appends per fsync)",
        stats.frames,
        stats.flushes,
        stats.frames as f64 / stats.flushes.max(1) as f64
    );

    let db_path = dir.path().join("sqlite.db");
    drop(sqlite(&db_path));
    let mut streams: Vec<Stream> = (0..THREADS)
        .map(|t| Stream::new(&format!("t{t}")))
        .collect();
    let mut conns: Vec<Connection> = (0..THREADS).map(|_| sqlite(&db_path)).collect();
    let name = format!("append/{label}/sqlite");
    g.bench_function(BenchmarkId::new(&label, "sqlite"), |b| {
        b.iter_custom(|iters| {
            let work: Vec<Vec<VmEvent>> = streams.iter_mut().map(|s| s.take(iters)).collect();
            let t = Instant::now();
            std::thread::scope(|sc| {
                for (evs, conn) in work.iter().zip(conns.iter_mut()) {
                    sc.spawn(move || {
                        let mut buf = Vec::new();
                        for ev in evs {
                            sqlite_append(conn, std::slice::from_ref(ev), &mut buf);
                        }
                    });
                }
            });
            record(&name, t.elapsed(), iters * THREADS as u64)
        });
    });
    g.finish();
}

fn replay_events() -> Vec<Vec<VmEvent>> {
    // Streams written in chunks of 50 events, round-robin over the VMs.
    let mut streams: Vec<Stream> = (0..REPLAY_VMS)
        .map(|i| Stream::new(&format!("vm-{i}")))
        .collect();
    let mut chunks = Vec::new();
    for _ in 0..REPLAY_EVENTS_PER_VM / 50 {
        for s in &mut streams {
            chunks.push(s.take(50));
        }
    }
    chunks
}

fn bench_replay(c: &mut Criterion) {
    let total = REPLAY_VMS * REPLAY_EVENTS_PER_VM;
    let dir = tempfile::tempdir().unwrap();
    let chunks = replay_events();
    let v2_path = dir.path().join("v2");
    {
        let v2 = V2Store::create(&v2_path).unwrap();
        for chunk in &chunks {
            v2.append_batch(chunk).unwrap();
        }
    }
    let db_path = dir.path().join("sqlite.db");
    {
        let mut db = sqlite(&db_path);
        db.pragma_update(None, "synchronous", "OFF").unwrap(); // setup only
        let mut buf = Vec::new();
        let all: Vec<VmEvent> = chunks.iter().flatten().cloned().collect();
        sqlite_append(&mut db, &all, &mut buf);
    }

    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(total));
    let v2 = V2Store::open(&v2_path).unwrap();
    g.bench_function(BenchmarkId::new("read_all", "v2"), |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let n = v2
                    .read_all()
                    .unwrap()
                    .map(|e| e.map(|_| 1u64).unwrap())
                    .sum::<u64>();
                assert_eq!(n, total);
            }
            record("replay/read_all/v2", t.elapsed(), iters * total)
        });
    });
    drop(v2);
    g.bench_function(BenchmarkId::new("open+read_all", "v2"), |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let v2 = V2Store::open(&v2_path).unwrap();
                let n = v2
                    .read_all()
                    .unwrap()
                    .map(|e| e.map(|_| 1u64).unwrap())
                    .sum::<u64>();
                assert_eq!(n, total);
            }
            record("replay/open+read_all/v2", t.elapsed(), iters * total)
        });
    });
    let read_sqlite = |conn: &Connection| {
        let mut st = conn
            .prepare_cached("SELECT body FROM events ORDER BY id")
            .unwrap();
        let mut rows = st.query([]).unwrap();
        let mut dec = EventDecoder::new();
        let mut n = 0u64;
        while let Some(row) = rows.next().unwrap() {
            let body = row.get_ref(0).unwrap().as_blob().unwrap();
            dec.decode_one(body).unwrap();
            n += 1;
        }
        assert_eq!(n, total);
    };
    let conn = sqlite(&db_path);
    g.bench_function(BenchmarkId::new("read_all", "sqlite"), |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                read_sqlite(&conn);
            }
            record("replay/read_all/sqlite", t.elapsed(), iters * total)
        });
    });
    drop(conn);
    g.bench_function(BenchmarkId::new("open+read_all", "sqlite"), |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                read_sqlite(&sqlite(&db_path));
            }
            record("replay/open+read_all/sqlite", t.elapsed(), iters * total)
        });
    });
    g.finish();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn print_ratios() {
    let mut by_name: HashMap<String, Vec<f64>> = HashMap::new();
    for (name, per) in SAMPLES.lock().unwrap().drain(..) {
        by_name.entry(name).or_default().push(per);
    }
    let med = |n: &str| by_name.get(n).cloned().map(median);
    println!("\nevent store vs SQLite WAL (synchronous=FULL), medians of the samples above:");
    for case in [
        "append/single",
        "append/batch64",
        &format!("append/concurrent{THREADS}"),
        "replay/read_all",
        "replay/open+read_all",
    ] {
        if let (Some(v2), Some(sq)) = (med(&format!("{case}/v2")), med(&format!("{case}/sqlite"))) {
            println!(
                "  {case:<24} v2 {:>12.0} ev/s   sqlite {:>12.0} ev/s   ratio {:>6.2}x",
                1e9 / v2,
                1e9 / sq,
                sq / v2
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_append(&mut c, "single", 1);
    bench_append(&mut c, "batch64", 64);
    bench_concurrent(&mut c);
    bench_replay(&mut c);
    c.final_summary();
    print_ratios();
}
