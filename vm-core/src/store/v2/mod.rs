//! The v2 binary store: an append-only file of CRC32C-checked frames (see [`format`](mod@format)).
//!
//! Appends are durable when they return: each is written and `fdatasync`'d. Concurrent
//! appenders share fsyncs (group commit): the first appender to find no flush running
//! becomes the leader, takes every frame queued so far, writes them with one `pwrite` and
//! one `fdatasync`, then wakes the followers whose frames it carried; appenders arriving
//! meanwhile queue up for the next leader.
//!
//! Opening scans every frame. A damaged tail (partial record, a bad CRC or a zeroed length
//! in the last record) is cut off with `ftruncate` and reported; damage followed by more data is an
//! error naming its byte offset. The file is locked (`flock`) while open.

pub mod format;
mod index;
pub(crate) mod positional;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::TryLockError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

pub(crate) use format::{check_header, header_prefix_matches};
pub use format::{FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_FRAME_LEN};

use crate::event::VmEvent;
use crate::id::VmId;

use super::codec::EventDecoder;
use super::fs::{parent_dir, StdFs, StoreFile, StoreFs};
use super::streams::StreamHeads;
use super::{EventIter, EventStore, StoreError, StoreFormat, TailRecovery};
use format::{decode_payload, encode_frame, FrameError, FrameReader, FRAME_HEADER_LEN};

/// Frames holding events of one stream: `(first sequence of the stream in the frame, offset)`.
type FrameIndex = Vec<(u64, u64)>;

#[derive(Debug, Default)]
struct State {
    heads: StreamHeads,
    durable_len: u64,
    durable_events: u64,
    stream_frames: HashMap<VmId, FrameIndex>,
    pending: Vec<u8>,
    pending_index: Vec<(VmId, u64, u64)>,
    pending_events: u64,
    pending_frames: u64,
    spare: Vec<u8>,
    end: u64,
    open_batch: u64,
    durable_batch: u64,
    flushing: bool,
    failed: Option<String>,
    stats: CommitStats,
}

/// Counters of the group commit since the store was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    /// Batches (frames) made durable.
    pub frames: u64,
    /// `pwrite` + `fdatasync` rounds that made them durable (fewer than `frames` when
    /// concurrent appenders shared fsyncs).
    pub flushes: u64,
}

/// The current binary event store.
#[derive(Debug)]
pub struct V2Store {
    path: PathBuf,
    file: Box<dyn StoreFile>,
    state: Mutex<State>,
    flushed: Condvar,
    recovery: Option<TailRecovery>,
}

thread_local! {
    static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Makes the directory entry of `path` (a creation or a rename) durable.
pub(crate) fn sync_dir(fs: &dyn StoreFs, path: &Path) -> Result<(), StoreError> {
    let dir = parent_dir(path);
    fs.sync_dir(dir)
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

impl V2Store {
    /// Creates a new, empty v2 store at `path` (which must not exist), crash-safely: the
    /// header is written to a temporary file, fsync'd and renamed into place.
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        Self::create_in(&StdFs, path)
    }

    /// Opens the v2 store at `path`, creating it if missing, and recovers a torn tail.
    ///
    /// An empty (0-byte) file is refused: [`V2Store::create`] writes the header before the
    /// file appears under its name, so a store is never empty unless something emptied it,
    /// and starting afresh would silently drop every stream it held.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_in(&StdFs, path)
    }

    /// [`V2Store::create`] on the file system `fs`.
    pub(crate) fn create_in(fs: &dyn StoreFs, path: &Path) -> Result<Self, StoreError> {
        match fs.file_len(path) {
            Ok(_) => {
                return Err(StoreError::AlreadyExists {
                    path: path.to_owned(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("stat", path, e)),
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".creating");
        let tmp = PathBuf::from(tmp);
        // A leftover of a crash mid-create is replaced.
        match fs.remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(StoreError::io("remove", &tmp, e))
            }
            _ => {}
        }
        let f = fs
            .create_new(&tmp)
            .map_err(|e| StoreError::io("create", &tmp, e))?;
        f.write_all_at(&format::encode_header(), 0)
            .and_then(|()| f.sync_all())
            .map_err(|e| StoreError::io("write header", &tmp, e))?;
        drop(f);
        fs.rename(&tmp, path)
            .map_err(|e| StoreError::io("rename", &tmp, e))?;
        sync_dir(fs, path)?;
        Self::open_existing(fs, path)
    }

    /// [`V2Store::open`] on the file system `fs`.
    pub(crate) fn open_in(fs: &dyn StoreFs, path: &Path) -> Result<Self, StoreError> {
        match fs.file_len(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create_in(fs, path),
            Err(e) => Err(StoreError::io("stat", path, e)),
            Ok(0) => Err(StoreError::Emptied {
                path: path.to_owned(),
            }),
            Ok(_) => Self::open_existing(fs, path),
        }
    }

    fn open_existing(fs: &dyn StoreFs, path: &Path) -> Result<Self, StoreError> {
        let file = fs
            .open_rw(path)
            .map_err(|e| StoreError::io("open", path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: path.to_owned(),
                })
            }
            Err(TryLockError::Error(e)) => return Err(StoreError::io("lock", path, e)),
        }
        let len = file.len().map_err(|e| StoreError::io("stat", path, e))?;
        let mut head = [0u8; HEADER_LEN];
        let n = read_up_to(&*file, &mut head).map_err(|e| StoreError::io("read", path, e))?;
        check_header(path, &head[..n])?;
        // Batch 0 counts as durable; the first open batch is 1.
        let mut state = State {
            open_batch: 1,
            ..State::default()
        };
        let mut recovery = None;
        let mut reader = FrameReader::new(&*file, HEADER_LEN as u64, len);
        let mut indexer = index::Indexer::default();
        loop {
            match reader.next_frame() {
                Ok(Some((offset, range))) => {
                    indexer
                        .frame(&mut state, reader.bytes(range), offset)
                        .map_err(|reason| StoreError::Corrupt {
                            path: path.to_owned(),
                            offset,
                            reason,
                        })?;
                }
                Ok(None) => break,
                Err(FrameError::Io(e)) => return Err(StoreError::io("read", path, e)),
                Err(FrameError::Corrupt { offset, reason }) => {
                    return Err(StoreError::Corrupt {
                        path: path.to_owned(),
                        offset,
                        reason,
                    })
                }
                Err(FrameError::Torn { offset, reason }) => {
                    file.set_len(offset)
                        .and_then(|()| file.sync_all())
                        .map_err(|e| StoreError::io("truncate torn tail", path, e))?;
                    let rec = TailRecovery {
                        offset,
                        dropped_bytes: len - offset,
                        reason,
                    };
                    tracing::warn!(
                        path = %path.display(),
                        offset = rec.offset,
                        dropped = rec.dropped_bytes,
                        "truncated torn tail of event store: {}",
                        rec.reason
                    );
                    recovery = Some(rec);
                    break;
                }
            }
        }
        state.durable_len = reader.position();
        state.end = state.durable_len;
        Ok(Self {
            path: path.to_owned(),
            file,
            state: Mutex::new(state),
            flushed: Condvar::new(),
            recovery,
        })
    }

    /// Path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Group-commit counters since open.
    pub fn commit_stats(&self) -> CommitStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes and fsyncs everything queued; called by the leader without the lock held.
    fn flush_as_leader<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.flushing = true;
        // Let appenders that were just woken by the previous flush (or are about to append)
        // join this batch: a yield costs microseconds, the fsync milliseconds. Without it,
        // batches settle into an uneven alternation (1, n-1, 1, n-1, ...).
        drop(st);
        std::thread::yield_now();
        let mut st = self.lock();
        let batch = st.open_batch;
        st.open_batch += 1;
        let spare = std::mem::take(&mut st.spare);
        let mut buf = std::mem::replace(&mut st.pending, spare);
        let index = std::mem::take(&mut st.pending_index);
        let events = std::mem::take(&mut st.pending_events);
        let frames = std::mem::take(&mut st.pending_frames);
        let at = st.durable_len;
        drop(st);
        let res = self
            .file
            .write_all_at(&buf, at)
            .and_then(|()| self.file.sync_data());
        let mut st = self.lock();
        st.flushing = false;
        match res {
            Ok(()) => {
                st.durable_len += buf.len() as u64;
                st.durable_events += events;
                for (id, first, offset) in index {
                    st.stream_frames
                        .entry(id)
                        .or_default()
                        .push((first, offset));
                }
                st.durable_batch = batch;
                st.stats.frames += frames;
                st.stats.flushes += 1;
                buf.clear();
                st.spare = buf;
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "event store write failed");
                st.failed = Some(e.to_string());
            }
        }
        self.flushed.notify_all();
        st
    }

    fn read_frame(&self, offset: u64, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: self.path.clone(),
            offset,
            reason,
        };
        let mut h = [0u8; FRAME_HEADER_LEN];
        self.file
            .read_exact_at(&mut h, offset)
            .map_err(|e| StoreError::io("read", &self.path, e))?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len > MAX_FRAME_LEN {
            return Err(corrupt(format!("length prefix {len} exceeds the limit")));
        }
        buf.resize(len, 0);
        self.file
            .read_exact_at(buf, offset + FRAME_HEADER_LEN as u64)
            .map_err(|e| StoreError::io("read", &self.path, e))?;
        if crc32c::crc32c(buf) != u32::from_le_bytes([h[4], h[5], h[6], h[7]]) {
            return Err(corrupt("CRC32C mismatch".into()));
        }
        Ok(())
    }
}

fn read_up_to(file: &dyn StoreFile, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            got => n += got,
        }
    }
    Ok(n)
}

impl EventStore for V2Store {
    fn format(&self) -> StoreFormat {
        StoreFormat::V2
    }

    fn append_batch(&self, events: &[VmEvent]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(self.head());
        }
        ENCODE_BUF.with(|cell| {
            let mut frame = cell.borrow_mut();
            frame.clear();
            encode_frame(events, &mut frame)?;
            let mut st = self.lock();
            if let Some(why) = &st.failed {
                return Err(StoreError::Failed(why.clone()));
            }
            st.heads.check_and_apply(events)?;
            let offset = st.end;
            let first_index = st.pending_index.len();
            for ev in events {
                if !st.pending_index[first_index..]
                    .iter()
                    .any(|(id, _, _)| *id == ev.vm_id)
                {
                    st.pending_index
                        .push((ev.vm_id.clone(), ev.sequence, offset));
                }
            }
            st.pending.extend_from_slice(&frame);
            st.end += frame.len() as u64;
            st.pending_events += events.len() as u64;
            st.pending_frames += 1;
            let my_batch = st.open_batch;
            loop {
                if st.durable_batch >= my_batch {
                    return Ok(st.durable_events);
                }
                if let Some(why) = &st.failed {
                    return Err(StoreError::Failed(why.clone()));
                }
                st = if st.flushing {
                    self.flushed
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner)
                } else {
                    self.flush_as_leader(st)
                };
            }
        })
    }

    fn read_stream(&self, vm_id: &VmId, from_sequence: u64) -> Result<Vec<VmEvent>, StoreError> {
        let offsets: Vec<u64> = {
            let st = self.lock();
            let Some(frames) = st.stream_frames.get(vm_id) else {
                return Ok(Vec::new());
            };
            let first = frames
                .partition_point(|&(seq, _)| seq <= from_sequence)
                .saturating_sub(1);
            frames[first..].iter().map(|&(_, off)| off).collect()
        };
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let mut decoder = EventDecoder::new();
        for offset in offsets {
            self.read_frame(offset, &mut buf)?;
            decode_payload(&buf, &mut decoder, |ev| {
                if ev.vm_id == *vm_id && ev.sequence >= from_sequence {
                    out.push(ev);
                }
                Ok(())
            })
            .map_err(|reason| StoreError::Corrupt {
                path: self.path.clone(),
                offset,
                reason,
            })?;
        }
        Ok(out)
    }

    fn read_all(&self) -> Result<EventIter<'_>, StoreError> {
        let end = self.lock().durable_len;
        Ok(Box::new(V2Iter {
            store: self,
            reader: FrameReader::new(&*self.file, HEADER_LEN as u64, end),
            decoder: EventDecoder::new(),
            frame: None,
            done: false,
        }))
    }

    fn head(&self) -> u64 {
        self.lock().durable_events
    }

    fn stream_head(&self, vm_id: &VmId) -> u64 {
        self.lock().heads.get(vm_id)
    }

    fn tail_recovery(&self) -> Option<&TailRecovery> {
        self.recovery.as_ref()
    }
}

/// The frame being decoded by a [`V2Iter`].
#[derive(Debug)]
struct OpenFrame {
    offset: u64,
    range: std::ops::Range<usize>,
    left: u32,
}

#[derive(Debug)]
struct V2Iter<'a> {
    store: &'a V2Store,
    reader: FrameReader<'a>,
    decoder: EventDecoder,
    frame: Option<OpenFrame>,
    done: bool,
}

impl V2Iter<'_> {
    fn corrupt(&mut self, offset: u64, reason: String) -> StoreError {
        self.done = true;
        StoreError::Corrupt {
            path: self.store.path.clone(),
            offset,
            reason,
        }
    }
}

impl Iterator for V2Iter<'_> {
    type Item = Result<VmEvent, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if let Some(frame) = &mut self.frame {
                if frame.left == 0 {
                    let (offset, trailing) = (frame.offset, frame.range.len());
                    self.frame = None;
                    if trailing != 0 {
                        return Some(Err(
                            self.corrupt(offset, format!("{trailing} bytes after the last event"))
                        ));
                    }
                    continue;
                }
                let mut bytes = self.reader.bytes(frame.range.clone());
                let before = bytes.len();
                let offset = frame.offset;
                match self.decoder.decode_next(&mut bytes) {
                    Ok(ev) => {
                        frame.range.start += before - bytes.len();
                        frame.left -= 1;
                        return Some(Ok(ev));
                    }
                    Err(e) => return Some(Err(self.corrupt(offset, e.to_string()))),
                }
            }
            match self.reader.next_frame() {
                Ok(Some((offset, range))) => {
                    match format::split_count(self.reader.bytes(range.clone())) {
                        Ok((left, _)) => {
                            self.frame = Some(OpenFrame {
                                offset,
                                range: range.start + 4..range.end,
                                left,
                            });
                        }
                        Err(e) => return Some(Err(self.corrupt(offset, e.to_string()))),
                    }
                }
                Ok(None) => self.done = true,
                Err(FrameError::Io(e)) => {
                    self.done = true;
                    return Some(Err(StoreError::io("read", &self.store.path, e)));
                }
                Err(
                    FrameError::Torn { offset, reason } | FrameError::Corrupt { offset, reason },
                ) => {
                    return Some(Err(self.corrupt(offset, reason)));
                }
            }
        }
        None
    }
}
