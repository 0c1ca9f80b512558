//! Opening v1 stores logs the deprecation warning exactly once per process.
//! (Its own test binary: the warning is process-global.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

struct CountV1Warnings(Arc<AtomicUsize>);

impl Subscriber for CountV1Warnings {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let m = event.metadata();
        if *m.level() == Level::WARN && m.target().ends_with("store::v1") {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn deprecation_warning_is_logged_once() {
    let count = Arc::new(AtomicUsize::new(0));
    tracing::subscriber::set_global_default(CountV1Warnings(count.clone())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    std::fs::write(
        &path,
        "{\"vm\":\"a\",\"seq\":1,\"ts_ms\":1,\"type\":\"started\"}\n",
    )
    .unwrap();
    for _ in 0..3 {
        let s = vm_core::store::open(&path).unwrap();
        assert_eq!(s.format(), vm_core::StoreFormat::V1);
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
}
