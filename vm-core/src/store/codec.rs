//! Binary codec of one event, tagged with its schema version so events can evolve.
//!
//! An encoded event is `u16 schema | u32 body_len | body` (little-endian). Schema 2 (current)
//! is a compact binary body; schema 1 is the legacy JSON object of the v1 journal, decoded
//! through the upcaster in [`super::legacy`].
//!
//! Schema 2 body: `u8 id_len | id | u64 sequence | u64 timestamp_ns | u8 kind | payload`, where
//! the payload is empty (started, paused, resumed, deleted), a stop reason (a `u8` code; a
//! triple fault adds its `u32` vCPU, a failure a `u8` vCPU flag, the `u32` vCPU if the flag is
//! 1, and its message), or a `u32`-length prefixed UTF-8 string (JSON of the config or device;
//! error text; device id). Codes only ever get added: journals written before stay readable.

use crate::config::{DeviceConfig, VmConfig};
use crate::event::{EventKind, Timestamp, VmEvent};
use crate::id::{VcpuId, VmId};
use crate::stop::StopReason;

use super::legacy;

/// The schema version new events are written with.
pub const CURRENT_SCHEMA: u16 = 2;
/// The legacy JSON schema of the v1 journal.
pub const LEGACY_JSON_SCHEMA: u16 = 1;
/// Bytes before an event body: schema version and body length.
pub const EVENT_HEADER_LEN: usize = 6;

/// Why bytes could not be decoded into an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside the event.
    #[error("event truncated: needed {needed} more bytes")]
    Truncated {
        /// Missing byte count.
        needed: usize,
    },
    /// The schema version is newer than this build or was never defined.
    #[error("unknown event schema version {0}")]
    UnknownSchema(u16),
    /// The kind tag is not defined in the schema.
    #[error("unknown event kind tag {0}")]
    UnknownKind(u8),
    /// A field held an invalid value.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Bytes were left over after the event body.
    #[error("{0} trailing bytes after the event body")]
    Trailing(usize),
}

fn invalid(field: &'static str, reason: impl std::fmt::Display) -> DecodeError {
    DecodeError::Invalid {
        field,
        reason: reason.to_string(),
    }
}

const TAG_CREATED: u8 = 0;
const TAG_STARTED: u8 = 1;
const TAG_PAUSED: u8 = 2;
const TAG_RESUMED: u8 = 3;
const TAG_STOPPED: u8 = 4;
const TAG_ATTACHED: u8 = 5;
const TAG_DETACHED: u8 = 6;
const TAG_FAILED: u8 = 7;
const TAG_DELETED: u8 = 8;

// Stop reason codes: fixed forever (journals written with them must replay).
const REASON_REQUESTED: u8 = 0;
const REASON_GUEST_SHUTDOWN: u8 = 1;
const REASON_GUEST_RESET: u8 = 2;
const REASON_HOST_SHUTDOWN: u8 = 3;
const REASON_UNKNOWN: u8 = 4;
const REASON_DAEMON_RESTARTED: u8 = 5;
const REASON_CTRL_ALT_DEL: u8 = 6;
const REASON_TRIPLE_FAULT: u8 = 7;
const REASON_FAILED: u8 = 8;

/// Appends a stop reason: its `u8` code, then for a triple fault the `u32`
/// vCPU, for a failure a `u8` flag (1: a `u32` vCPU follows) and the message.
fn put_reason(out: &mut Vec<u8>, r: &StopReason) {
    let code = match r {
        StopReason::Requested => REASON_REQUESTED,
        StopReason::GuestShutdown => REASON_GUEST_SHUTDOWN,
        StopReason::GuestReset => REASON_GUEST_RESET,
        StopReason::HostShutdown => REASON_HOST_SHUTDOWN,
        StopReason::Unknown => REASON_UNKNOWN,
        StopReason::DaemonRestarted => REASON_DAEMON_RESTARTED,
        StopReason::CtrlAltDel => REASON_CTRL_ALT_DEL,
        StopReason::TripleFault { .. } => REASON_TRIPLE_FAULT,
        StopReason::Failed { .. } => REASON_FAILED,
    };
    out.push(code);
    match r {
        StopReason::TripleFault { vcpu } => out.extend_from_slice(&vcpu.0.to_le_bytes()),
        StopReason::Failed { vcpu, message } => {
            match vcpu {
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&v.0.to_le_bytes());
                }
                None => out.push(0),
            }
            put_str(out, message.as_bytes());
        }
        _ => {}
    }
}

fn take_reason(c: &mut Cursor<'_>) -> Result<StopReason, DecodeError> {
    Ok(match c.u8()? {
        REASON_REQUESTED => StopReason::Requested,
        REASON_GUEST_SHUTDOWN => StopReason::GuestShutdown,
        REASON_GUEST_RESET => StopReason::GuestReset,
        REASON_HOST_SHUTDOWN => StopReason::HostShutdown,
        REASON_UNKNOWN => StopReason::Unknown,
        REASON_DAEMON_RESTARTED => StopReason::DaemonRestarted,
        REASON_CTRL_ALT_DEL => StopReason::CtrlAltDel,
        REASON_TRIPLE_FAULT => StopReason::TripleFault {
            vcpu: VcpuId(c.u32()?),
        },
        REASON_FAILED => {
            let vcpu = match c.u8()? {
                0 => None,
                1 => Some(VcpuId(c.u32()?)),
                other => return Err(invalid("stop reason vcpu flag", other)),
            };
            StopReason::Failed {
                vcpu,
                message: c.string("stop reason message")?,
            }
        }
        other => return Err(invalid("stop reason", format!("code {other}"))),
    })
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

/// Appends the current-schema encoding of `ev` (header included) to `out`.
pub fn encode_event(ev: &VmEvent, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let start = out.len();
    out.extend_from_slice(&CURRENT_SCHEMA.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // body length, patched below
    let id = ev.vm_id.as_str().as_bytes();
    // VmId guarantees at most 64 bytes.
    out.push(id.len() as u8);
    out.extend_from_slice(id);
    out.extend_from_slice(&ev.sequence.to_le_bytes());
    out.extend_from_slice(&ev.timestamp.0.to_le_bytes());
    match &ev.kind {
        EventKind::Created { config } => {
            out.push(TAG_CREATED);
            put_str(out, &serde_json::to_vec(config)?);
        }
        EventKind::Started => out.push(TAG_STARTED),
        EventKind::Paused => out.push(TAG_PAUSED),
        EventKind::Resumed => out.push(TAG_RESUMED),
        EventKind::Stopped { reason } => {
            out.push(TAG_STOPPED);
            put_reason(out, reason);
        }
        EventKind::DeviceAttached { device } => {
            out.push(TAG_ATTACHED);
            put_str(out, &serde_json::to_vec(device)?);
        }
        EventKind::DeviceDetached { device_id } => {
            out.push(TAG_DETACHED);
            put_str(out, device_id.as_bytes());
        }
        EventKind::Failed { error } => {
            out.push(TAG_FAILED);
            put_str(out, error.as_bytes());
        }
        EventKind::Deleted => out.push(TAG_DELETED),
    }
    let body_len = (out.len() - start - EVENT_HEADER_LEN) as u32;
    out[start + 2..start + EVENT_HEADER_LEN].copy_from_slice(&body_len.to_le_bytes());
    Ok(())
}

/// Appends a raw event with an explicit schema version (used to write legacy records).
pub fn encode_raw(schema: u16, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&schema.to_le_bytes());
    put_str(out, body);
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                needed: n - self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bytes32(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let b = self.bytes32()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|e| invalid(field, e))
    }
}

/// What [`EventDecoder::peek_next`] found.
#[derive(Debug)]
pub(crate) enum Peek<'a> {
    /// A current-schema event of stream `id` (not validated yet) at `sequence`.
    Current {
        /// The stream id's bytes as stored.
        id: &'a [u8],
        /// The event's sequence.
        sequence: u64,
    },
    /// An older-schema event, decoded and upcast (boxed: rare, and keeps `Peek` small).
    Decoded(Box<VmEvent>),
}

/// Decodes events one after another; remembers the last `VmId` so consecutive events of one
/// VM share its string instead of allocating a new one each.
#[derive(Debug, Default)]
pub struct EventDecoder {
    last_id: Option<VmId>,
}

impl EventDecoder {
    /// A decoder with an empty id cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes the event at the front of `input` and advances `input` past it.
    pub fn decode_next(&mut self, input: &mut &[u8]) -> Result<VmEvent, DecodeError> {
        let mut c = Cursor { buf: input };
        let h = c.take(2)?;
        let schema = u16::from_le_bytes([h[0], h[1]]);
        let body = c.bytes32()?;
        let ev = self.decode_body(schema, body)?;
        *input = c.buf;
        Ok(ev)
    }

    /// Reads the stream position of the event at the front of `input` without decoding its
    /// payload (current schema), or decodes it fully (older schemas); advances `input`.
    pub(crate) fn peek_next<'a>(&mut self, input: &mut &'a [u8]) -> Result<Peek<'a>, DecodeError> {
        let mut c = Cursor { buf: input };
        let h = c.take(2)?;
        let schema = u16::from_le_bytes([h[0], h[1]]);
        let body = c.bytes32()?;
        *input = c.buf;
        if schema != CURRENT_SCHEMA {
            return self
                .decode_body(schema, body)
                .map(|ev| Peek::Decoded(Box::new(ev)));
        }
        let mut b = Cursor { buf: body };
        let id_len = b.u8()? as usize;
        let id = b.take(id_len)?;
        let sequence = b.u64()?;
        Ok(Peek::Current { id, sequence })
    }

    /// Decodes exactly one event; bytes left after it are an error.
    pub fn decode_one(&mut self, mut input: &[u8]) -> Result<VmEvent, DecodeError> {
        let ev = self.decode_next(&mut input)?;
        if input.is_empty() {
            Ok(ev)
        } else {
            Err(DecodeError::Trailing(input.len()))
        }
    }

    /// Decodes a body of the given schema version, upcasting old versions.
    pub fn decode_body(&mut self, schema: u16, body: &[u8]) -> Result<VmEvent, DecodeError> {
        match schema {
            CURRENT_SCHEMA => self.decode_current(body),
            LEGACY_JSON_SCHEMA => legacy::upcast_json(body),
            other => Err(DecodeError::UnknownSchema(other)),
        }
    }

    fn vm_id(&mut self, raw: &[u8]) -> Result<VmId, DecodeError> {
        if let Some(last) = &self.last_id {
            if last.as_str().as_bytes() == raw {
                return Ok(last.clone());
            }
        }
        let s = std::str::from_utf8(raw).map_err(|e| invalid("vm_id", e))?;
        let id = VmId::new(s).map_err(|e| invalid("vm_id", e))?;
        self.last_id = Some(id.clone());
        Ok(id)
    }

    fn decode_current(&mut self, body: &[u8]) -> Result<VmEvent, DecodeError> {
        let mut c = Cursor { buf: body };
        let id_len = c.u8()? as usize;
        let vm_id = self.vm_id(c.take(id_len)?)?;
        let sequence = c.u64()?;
        let timestamp = Timestamp(c.u64()?);
        let kind = match c.u8()? {
            TAG_CREATED => {
                let config: Box<VmConfig> =
                    serde_json::from_slice(c.bytes32()?).map_err(|e| invalid("config", e))?;
                EventKind::Created { config }
            }
            TAG_STARTED => EventKind::Started,
            TAG_PAUSED => EventKind::Paused,
            TAG_RESUMED => EventKind::Resumed,
            TAG_STOPPED => EventKind::Stopped {
                reason: take_reason(&mut c)?,
            },
            TAG_ATTACHED => {
                let device: Box<DeviceConfig> =
                    serde_json::from_slice(c.bytes32()?).map_err(|e| invalid("device", e))?;
                EventKind::DeviceAttached { device }
            }
            TAG_DETACHED => EventKind::DeviceDetached {
                device_id: c.string("device_id")?,
            },
            TAG_FAILED => EventKind::Failed {
                error: c.string("error")?,
            },
            TAG_DELETED => EventKind::Deleted,
            other => return Err(DecodeError::UnknownKind(other)),
        };
        if !c.buf.is_empty() {
            return Err(DecodeError::Trailing(c.buf.len()));
        }
        if sequence == 0 {
            return Err(invalid("sequence", "0 (sequences start at 1)"));
        }
        Ok(VmEvent {
            vm_id,
            sequence,
            timestamp,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NetBackendConfig, NetConfig};

    fn samples() -> Vec<VmEvent> {
        let id = VmId::new("vm-a").unwrap();
        let kinds = vec![
            EventKind::created(VmConfig::default()),
            EventKind::Started,
            EventKind::Paused,
            EventKind::Resumed,
            EventKind::device_attached(DeviceConfig::Net(NetConfig {
                id: "eth0".into(),
                backend: NetBackendConfig::Virtual {
                    switch: "sw".into(),
                },
                mac: None,
            })),
            EventKind::DeviceDetached {
                device_id: "eth0".into(),
            },
            EventKind::Stopped {
                reason: StopReason::GuestReset,
            },
            EventKind::Failed {
                error: "ünïcode error".into(),
            },
            EventKind::Stopped {
                reason: StopReason::DaemonRestarted,
            },
            EventKind::Deleted,
            EventKind::Stopped {
                reason: StopReason::CtrlAltDel,
            },
            EventKind::Stopped {
                reason: StopReason::TripleFault { vcpu: VcpuId(3) },
            },
            EventKind::Stopped {
                reason: StopReason::Failed {
                    vcpu: Some(VcpuId(1)),
                    message: "KVM_RUN failed".into(),
                },
            },
            EventKind::Stopped {
                reason: StopReason::Failed {
                    vcpu: None,
                    message: String::new(),
                },
            },
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| VmEvent {
                vm_id: id.clone(),
                sequence: i as u64 + 1,
                timestamp: Timestamp(1_700_000_000_000_000_000 + i as u64),
                kind,
            })
            .collect()
    }

    #[test]
    fn round_trip_every_kind() {
        let mut buf = Vec::new();
        for ev in samples() {
            encode_event(&ev, &mut buf).unwrap();
        }
        let mut input = &buf[..];
        let mut dec = EventDecoder::new();
        for ev in samples() {
            assert_eq!(dec.decode_next(&mut input).unwrap(), ev);
        }
        assert!(input.is_empty());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for ev in samples() {
            let mut buf = Vec::new();
            encode_event(&ev, &mut buf).unwrap();
            for cut in 0..buf.len() {
                assert!(
                    EventDecoder::new().decode_one(&buf[..cut]).is_err(),
                    "cut {cut}"
                );
            }
            buf.push(0);
            assert!(EventDecoder::new().decode_one(&buf).is_err());
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let mut buf = Vec::new();
        encode_event(&samples()[6], &mut buf).unwrap();
        let last = buf.len() - 1;
        buf[last] = 99; // stop reason
        assert_eq!(
            EventDecoder::new().decode_one(&buf),
            Err(invalid("stop reason", "code 99"))
        );
        buf[0] = 9; // schema
        assert_eq!(
            EventDecoder::new().decode_one(&buf),
            Err(DecodeError::UnknownSchema(9))
        );
        let mut buf = Vec::new();
        encode_event(&samples()[1], &mut buf).unwrap();
        let tag = buf.len() - 1;
        buf[tag] = 200;
        assert_eq!(
            EventDecoder::new().decode_one(&buf),
            Err(DecodeError::UnknownKind(200))
        );
        buf[tag] = TAG_STARTED;
        buf[7] = b'/'; // first byte of the id
        assert!(matches!(
            EventDecoder::new().decode_one(&buf),
            Err(DecodeError::Invalid { field: "vm_id", .. })
        ));
    }

    /// Bytes written by builds from before the stop reason carried data
    /// (one `u8` code per `stopped` event) still decode to the same reasons.
    #[test]
    fn old_stop_reason_records_still_decode() {
        let record = |code: u8| -> Vec<u8> {
            let mut body = vec![1, b'a'];
            body.extend_from_slice(&7u64.to_le_bytes());
            body.extend_from_slice(&5_000_000u64.to_le_bytes());
            body.extend_from_slice(&[TAG_STOPPED, code]);
            let mut rec = vec![2, 0];
            rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
            rec.extend_from_slice(&body);
            rec
        };
        // The exact bytes of `stopped`/`guest_shutdown`, sequence 7, vm `a`.
        assert_eq!(
            record(1),
            [
                2, 0, 20, 0, 0, 0, 1, b'a', 7, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x4b, 0x4c, 0, 0, 0, 0,
                0, 4, 1
            ]
        );
        let old = [
            (0, StopReason::Requested),
            (1, StopReason::GuestShutdown),
            (2, StopReason::GuestReset),
            (3, StopReason::HostShutdown),
            (4, StopReason::Unknown),
            (5, StopReason::DaemonRestarted),
        ];
        for (code, reason) in old {
            let ev = EventDecoder::new().decode_one(&record(code)).unwrap();
            assert_eq!(
                ev.kind,
                EventKind::Stopped {
                    reason: reason.clone()
                }
            );
            assert_eq!(ev.sequence, 7);
            // ... and the current encoder writes them the same way.
            let mut again = Vec::new();
            encode_event(&ev, &mut again).unwrap();
            assert_eq!(again, record(code), "{reason:?}");
        }
        let mut bad_flag = record(REASON_FAILED);
        bad_flag.push(7);
        bad_flag[2] += 1;
        assert!(matches!(
            EventDecoder::new().decode_one(&bad_flag),
            Err(DecodeError::Invalid {
                field: "stop reason vcpu flag",
                ..
            })
        ));
    }

    #[test]
    fn huge_inner_length_does_not_allocate() {
        let mut buf = Vec::new();
        encode_raw(CURRENT_SCHEMA, &[], &mut buf);
        buf[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            EventDecoder::new().decode_one(&buf),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
