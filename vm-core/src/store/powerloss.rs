//! Power-loss tests: the stores run on a simulated file system that remembers what was
//! written since each file's last sync (and which directory entries changed since the last
//! directory fsync), and at a chosen operation loses power: everything not yet synced is
//! discarded, and the store is reopened from what survived.
//!
//! Every scenario runs once per crash point `k` (power lost after the `k`-th mutating
//! operation: create, write, truncate, sync, rename, link, remove, directory fsync), for
//! `k = 0..N` where `N` is the operation count of an uninterrupted run. Each crash is
//! judged against three surviving disk images, from kindest to harshest for the format:
//! - `Lost`: only synced data and directory entries survive;
//! - `Torn`: all directory changes and unsynced writes survive, the last write cut in half;
//! - `Zeroed`: all directory changes survive and files keep their new sizes, but the
//!   unsynced bytes read as zeros (metadata written, data blocks not);
//! - `Holes`: like `Torn`, but the last write's *first* sectors are missing (written back
//!   out of order), from its start to the first sector boundary past its middle, and read
//!   as what the disk held before (zeros past the old end). In a group commit the write
//!   holds several frames, so intact frames follow the hole: open() must see a torn tail
//!   (none of them was acknowledged, see `FrameReader::unwritten_sectors`), not corruption.

use std::collections::BTreeMap;
use std::fs::TryLockError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, PoisonError};

use super::fs::{StoreFile, StoreFs};
use super::migrate::migrate_in;
use super::v2::format::SECTOR;
use super::v2::positional::PositionalIo;
use super::{detect_format_in, EventStore, MigrationReport, StoreFormat, V1Store, V2Store};
use crate::event::{EventKind, Timestamp, VmEvent};
use crate::id::VmId;

/// File contents by path: a disk as it is found after power comes back.
type Image = BTreeMap<PathBuf, Vec<u8>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Survival {
    Lost,
    Torn,
    Zeroed,
    Holes,
}

const SURVIVALS: [Survival; 4] = [
    Survival::Lost,
    Survival::Torn,
    Survival::Zeroed,
    Survival::Holes,
];

#[derive(Debug, Clone)]
enum Unsynced {
    Write { offset: u64, len: usize },
    SetLen,
}

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Unsynced>,
}

impl Inode {
    fn synced(data: Vec<u8>) -> Self {
        Self {
            durable: data.clone(),
            data,
            unsynced: Vec::new(),
        }
    }

    /// The content after power loss.
    fn survivor(&self, how: Survival) -> Vec<u8> {
        match how {
            Survival::Lost => self.durable.clone(),
            Survival::Torn => {
                // Every unsynced change reached the disk but the last write, which was cut.
                let mut out = self.data.clone();
                if let Some(Unsynced::Write { offset, len }) = self.unsynced.last() {
                    let keep = (*offset as usize + len / 2).min(out.len());
                    let end = (*offset as usize + len).min(out.len());
                    if end == out.len() {
                        out.truncate(keep);
                    } else {
                        for (i, b) in out.iter_mut().enumerate().take(end).skip(keep) {
                            *b = self.durable.get(i).copied().unwrap_or(0);
                        }
                    }
                }
                out
            }
            Survival::Holes => {
                // The last write's later sectors reached the disk, its first ones did not.
                let mut out = self.data.clone();
                if let Some(Unsynced::Write { offset, len }) = self.unsynced.last() {
                    let start = *offset as usize;
                    let sector = SECTOR as usize;
                    let end = (start + len / 2).div_ceil(sector) * sector;
                    let end = end.min(start + len).min(out.len());
                    for (i, b) in out.iter_mut().enumerate().take(end).skip(start) {
                        *b = self.durable.get(i).copied().unwrap_or(0);
                    }
                }
                out
            }
            Survival::Zeroed => {
                let mut out = self.data.clone();
                for (i, b) in out.iter_mut().enumerate() {
                    if self.durable.get(i) != Some(b) {
                        *b = 0;
                    }
                }
                out
            }
        }
    }
}

#[derive(Debug, Default)]
struct Disk {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    ops: u64,
    crash_after: Option<u64>,
    /// The images taken when power was lost; every later operation fails.
    crashed: Option<Vec<(Survival, Image)>>,
}

impl Disk {
    fn image(&self, how: Survival) -> Image {
        let names = if how == Survival::Lost {
            &self.durable_names
        } else {
            &self.names
        };
        names
            .iter()
            .map(|(p, &ino)| (p.clone(), self.inodes[ino].survivor(how)))
            .collect()
    }

    fn check_power(&self) -> io::Result<()> {
        if self.crashed.is_some() {
            return Err(io::Error::other("power lost"));
        }
        Ok(())
    }

    /// Counts a mutating operation that just completed; loses power if it was the chosen one.
    fn done(&mut self) {
        self.ops += 1;
        self.maybe_crash();
    }

    fn maybe_crash(&mut self) {
        if self.crashed.is_none() && self.crash_after == Some(self.ops) {
            self.crashed = Some(SURVIVALS.iter().map(|&s| (s, self.image(s))).collect());
        }
    }

    fn inode(&self, path: &Path) -> io::Result<usize> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
}

/// A simulated single-directory file system with power loss.
#[derive(Debug, Clone, Default)]
struct SimFs(Arc<Mutex<Disk>>);

#[derive(Debug)]
struct SimFile {
    disk: Arc<Mutex<Disk>>,
    ino: usize,
}

fn lock(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    disk.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimFs {
    /// A disk holding `image`, all of it durable.
    fn from_image(image: &Image) -> Self {
        let mut disk = Disk::default();
        for (path, data) in image {
            disk.names.insert(path.clone(), disk.inodes.len());
            disk.inodes.push(Inode::synced(data.clone()));
        }
        disk.durable_names = disk.names.clone();
        Self(Arc::new(Mutex::new(disk)))
    }

    /// Loses power after `k` more mutating operations.
    fn arm(&self, k: u64) {
        let mut d = lock(&self.0);
        d.crash_after = Some(d.ops + k);
        d.maybe_crash();
    }

    fn ops(&self) -> u64 {
        lock(&self.0).ops
    }

    /// The surviving images, if power was lost.
    fn crashed(&self) -> Option<Vec<(Survival, Image)>> {
        lock(&self.0).crashed.clone()
    }

    fn file(&self, ino: usize) -> Box<dyn StoreFile> {
        Box::new(SimFile {
            disk: Arc::clone(&self.0),
            ino,
        })
    }
}

impl PositionalIo for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let d = lock(&self.disk);
        d.check_power()?;
        let data = &d.inodes[self.ino].data;
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut d = lock(&self.disk);
        d.check_power()?;
        let inode = &mut d.inodes[self.ino];
        let end = offset as usize + buf.len();
        if inode.data.len() < end {
            inode.data.resize(end, 0);
        }
        inode.data[offset as usize..end].copy_from_slice(buf);
        inode.unsynced.push(Unsynced::Write {
            offset,
            len: buf.len(),
        });
        d.done();
        Ok(())
    }
}

impl StoreFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        let d = lock(&self.disk);
        d.check_power()?;
        Ok(d.inodes[self.ino].data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut d = lock(&self.disk);
        d.check_power()?;
        let inode = &mut d.inodes[self.ino];
        inode.data.resize(len as usize, 0);
        inode.unsynced.push(Unsynced::SetLen);
        d.done();
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut d = lock(&self.disk);
        d.check_power()?;
        let inode = &mut d.inodes[self.ino];
        inode.durable = inode.data.clone();
        inode.unsynced.clear();
        d.done();
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn try_lock(&self) -> Result<(), TryLockError> {
        Ok(())
    }
}

impl StoreFs for SimFs {
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn StoreFile>> {
        let d = lock(&self.0);
        d.check_power()?;
        let ino = d.inode(path)?;
        Ok(self.file(ino))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StoreFile>> {
        let mut d = lock(&self.0);
        d.check_power()?;
        if d.names.contains_key(path) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let ino = d.inodes.len();
        d.inodes.push(Inode::default());
        d.names.insert(path.to_owned(), ino);
        d.done();
        Ok(self.file(ino))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let d = lock(&self.0);
        d.check_power()?;
        Ok(d.inodes[d.inode(path)?].data.len() as u64)
    }

    fn read_up_to(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let d = lock(&self.0);
        d.check_power()?;
        let data = &d.inodes[d.inode(path)?].data;
        Ok(data[..data.len().min(usize::try_from(limit).unwrap_or(usize::MAX))].to_vec())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut d = lock(&self.0);
        d.check_power()?;
        d.inode(path)?;
        d.names.remove(path);
        d.done();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut d = lock(&self.0);
        d.check_power()?;
        let ino = d.inode(from)?;
        d.names.remove(from);
        d.names.insert(to.to_owned(), ino);
        d.done();
        Ok(())
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        let mut d = lock(&self.0);
        d.check_power()?;
        let ino = d.inode(original)?;
        if d.names.contains_key(link) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        d.names.insert(link.to_owned(), ino);
        d.done();
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        let mut d = lock(&self.0);
        d.check_power()?;
        d.durable_names = d.names.clone();
        d.done();
        Ok(())
    }
}

const JOURNAL: &str = "/sim/journal";

fn event(vm: &str, seq: u64) -> VmEvent {
    let id = VmId::new(vm).unwrap();
    let kind = if seq == 1 {
        EventKind::created(crate::VmConfig::default())
    } else {
        EventKind::Failed {
            error: format!("{vm} event {seq} {}", "x".repeat(40)),
        }
    };
    // A fixed timestamp, so that acknowledged events compare equal to what is read back.
    VmEvent {
        vm_id: id,
        sequence: seq,
        timestamp: Timestamp::from_millis(seq),
        kind,
    }
}

/// Runs `work` against a disk starting as `start` (after `prepare`, which does not lose
/// power), losing power after `work`'s operation `k` for every `k` until a run completes;
/// `check` judges every surviving image against what `work` reported acknowledged.
/// Returns the number of crash points.
fn at_every_crash_point<P, A>(
    start: &Image,
    prepare: impl Fn(&SimFs) -> P,
    work: impl Fn(&SimFs, P) -> A,
    check: impl Fn(&str, Survival, &Image, &A),
) -> u64 {
    for k in 0.. {
        let fs = SimFs::from_image(start);
        let prepared = prepare(&fs);
        let before = fs.ops();
        fs.arm(k);
        let acked = work(&fs, prepared);
        let Some(images) = fs.crashed() else {
            assert!(fs.ops() - before < k, "no crash at {k}");
            return k;
        };
        for (how, image) in images {
            check(
                &format!("crash after op {k} ({how:?})"),
                how,
                &image,
                &acked,
            );
        }
    }
    unreachable!()
}

/// Reopens the journal from `image`; it must open (recovering a torn tail if the crash
/// left one) and hold every acknowledged event. Returns whether a torn tail was cut.
fn reopen_holds(at: &str, image: &Image, acked: &[VmEvent]) -> bool {
    let fs = SimFs::from_image(image);
    let store = V2Store::open_in(&fs, Path::new(JOURNAL))
        .unwrap_or_else(|e| panic!("{at}: reopen failed: {e}"));
    let all: Vec<VmEvent> = store
        .read_all()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{at}: read_all failed: {e}"));
    for ev in acked {
        assert!(all.contains(ev), "{at}: acknowledged {ev:?} lost");
    }
    // The recovered store takes appends again.
    let vm = VmId::new("after").unwrap();
    store
        .append(&event("after", store.stream_head(&vm) + 1))
        .unwrap_or_else(|e| panic!("{at}: append after recovery failed: {e}"));
    store.tail_recovery().is_some()
}

#[test]
fn power_loss_in_create_and_single_appends() {
    let torn = AtomicU64::new(0);
    let points = at_every_crash_point(
        &Image::new(),
        |_| (),
        |fs, ()| {
            let mut acked = Vec::new();
            let Ok(store) = V2Store::open_in(fs, Path::new(JOURNAL)) else {
                return acked;
            };
            for seq in 1..=2 {
                let ev = event("solo", seq);
                if store.append(&ev).is_err() {
                    break;
                }
                acked.push(ev);
            }
            acked
        },
        |at, _, image, acked| {
            if reopen_holds(at, image, acked) {
                torn.fetch_add(1, Ordering::Relaxed);
            }
        },
    );
    let torn = torn.into_inner();
    eprintln!("create + 2 single appends: {points} crash points, {torn} torn tails recovered");
    assert!(points >= 7);
    assert!(torn > 0, "no crash point left a torn tail");
}

#[test]
fn power_loss_in_group_commit() {
    const WRITERS: usize = 4;
    const PER_WRITER: u64 = 3;
    // Thread interleavings differ between runs: try several.
    const ROUNDS: u64 = 10;
    let start = {
        let fs = SimFs::default();
        let store = V2Store::open_in(&fs, Path::new(JOURNAL)).unwrap();
        store.append(&event("seed", 1)).unwrap();
        drop(store);
        let image = lock(&fs.0).image(Survival::Lost);
        image
    };
    let (frames, flushes, torn) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    // Crash points where a hole was followed by intact, never acknowledged frames.
    let hole_then_frames = AtomicU64::new(0);
    let mut points = 0;
    for _ in 0..ROUNDS {
        points += at_every_crash_point(
            &start,
            |fs| V2Store::open_in(fs, Path::new(JOURNAL)).unwrap(),
            |_, store| {
                let barrier = Barrier::new(WRITERS);
                let acked = Mutex::new(vec![event("seed", 1)]);
                std::thread::scope(|s| {
                    for w in 0..WRITERS {
                        let (store, barrier, acked) = (&store, &barrier, &acked);
                        s.spawn(move || {
                            let vm = format!("w{w}");
                            barrier.wait();
                            for seq in 1..=PER_WRITER {
                                let ev = event(&vm, seq);
                                if store.append(&ev).is_err() {
                                    break;
                                }
                                acked.lock().unwrap().push(ev);
                            }
                        });
                    }
                });
                let stats = store.commit_stats();
                frames.fetch_add(stats.frames, Ordering::Relaxed);
                flushes.fetch_add(stats.flushes, Ordering::Relaxed);
                acked.into_inner().unwrap()
            },
            |at, how, image, acked| {
                if how == Survival::Holes && intact_frame_after_hole(image) {
                    hole_then_frames.fetch_add(1, Ordering::Relaxed);
                }
                if reopen_holds(at, image, acked) {
                    torn.fetch_add(1, Ordering::Relaxed);
                }
            },
        );
    }
    let (frames, flushes, torn) = (frames.into_inner(), flushes.into_inner(), torn.into_inner());
    eprintln!(
        "group commit, {WRITERS} writers x {PER_WRITER} appends, {ROUNDS} rounds: {points} crash \
         points, {frames} frames in {flushes} flushes, {torn} torn tails recovered"
    );
    assert!(
        flushes < frames,
        "no fsync was shared: group commit not exercised"
    );
    assert!(torn > 0, "no crash point left a torn tail");
    let hole_then_frames = hole_then_frames.into_inner();
    eprintln!("{hole_then_frames} crash points left a hole followed by intact frames");
    assert!(
        hole_then_frames > 0,
        "no crash point left a hole before intact frames: the case is not exercised"
    );
}

/// Whether the journal in `image` has a zero length prefix with an intact frame (its
/// length and CRC match) somewhere after it.
fn intact_frame_after_hole(image: &Image) -> bool {
    let Some(data) = image.get(Path::new(JOURNAL)) else {
        return false;
    };
    let u32_at = |i: usize| {
        data.get(i..i + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let mut at = super::v2::HEADER_LEN;
    while let Some(len) = u32_at(at) {
        if len == 0 {
            return (at + 1..data.len()).any(|i| {
                let (Some(len), Some(crc)) = (u32_at(i), u32_at(i + 4)) else {
                    return false;
                };
                let payload = data.get(i + 8..i + 8 + len as usize);
                len >= 4 && payload.is_some_and(|p| crc32c::crc32c(p) == crc)
            });
        }
        at += 8 + len as usize;
    }
    false
}

const V1_LINES: [&str; 4] = [
    r#"{"vm":"old-1","seq":1,"ts_ms":1600000000000,"type":"created","config":{"vcpus":2,"memory_mb":256,"net":[{"id":"eth0","tap":"tap0"}]}}"#,
    r#"{"vm":"old-1","seq":2,"ts_ms":1600000000001,"type":"started"}"#,
    r#"{"vm":"old-2","seq":1,"ts_ms":1600000000002,"type":"created","config":{"vcpus":1,"memory_mb":128}}"#,
    r#"{"vm":"old-1","seq":3,"ts_ms":1600000000003,"type":"stopped"}"#,
];

#[test]
fn power_loss_in_v1_to_v2_migration() {
    let v1_bytes: Vec<u8> = V1_LINES
        .iter()
        .flat_map(|l| [l.as_bytes(), b"\n"].concat())
        .collect();
    let start: Image = [(PathBuf::from(JOURNAL), v1_bytes)].into();
    let want: Vec<VmEvent> = {
        let fs = SimFs::from_image(&start);
        let v1 = V1Store::open_in(&fs, Path::new(JOURNAL)).unwrap();
        v1.read_all().unwrap().map(Result::unwrap).collect()
    };
    let path = Path::new(JOURNAL);
    let points = at_every_crash_point(
        &start,
        |_| (),
        |fs, ()| migrate_in(fs, path).is_ok(),
        |at, _, image, &acked| {
            let fs = SimFs::from_image(image);
            let format = detect_format_in(&fs, path)
                .unwrap_or_else(|e| panic!("{at}: format detection failed: {e}"));
            let got: Vec<VmEvent> = match format {
                Some(StoreFormat::V1) => {
                    assert!(!acked, "{at}: migration acknowledged, v1 still in place");
                    let v1 = V1Store::open_in(&fs, path)
                        .unwrap_or_else(|e| panic!("{at}: v1 open failed: {e}"));
                    v1.read_all().unwrap().map(Result::unwrap).collect()
                }
                Some(StoreFormat::V2) => {
                    let v2 = V2Store::open_in(&fs, path)
                        .unwrap_or_else(|e| panic!("{at}: v2 open failed: {e}"));
                    assert!(v2.tail_recovery().is_none(), "{at}: migrated file torn");
                    v2.read_all().unwrap().map(Result::unwrap).collect()
                }
                other => panic!("{at}: neither v1 nor v2 at the journal's path: {other:?}"),
            };
            assert_eq!(got, want, "{at}: events differ");
            // The interrupted migration can be run again to completion.
            match migrate_in(&fs, path) {
                Ok(MigrationReport::Migrated { events, .. }) => {
                    assert_eq!(events, want.len() as u64, "{at}");
                }
                Ok(MigrationReport::AlreadyV2) => {}
                Err(e) => panic!("{at}: migration retry failed: {e}"),
            }
            let v2 = V2Store::open_in(&fs, path).unwrap();
            let again: Vec<VmEvent> = v2.read_all().unwrap().map(Result::unwrap).collect();
            assert_eq!(
                again, want,
                "{at}: events differ after the retried migration"
            );
        },
    );
    eprintln!("v1 -> v2 migration: {points} crash points");
    assert!(points >= 8);
}
