//! The wire protocol between the daemon and a VM's `vm-service vmm` process.
//!
//! Both directions carry frames over a socketpair: a little-endian `u32`
//! length, then that many bytes of JSON. The daemon sends [`ToVmm`] (first a
//! `boot`, then numbered commands); the VMM process sends [`FromVmm`] (boot
//! result, replies, serial bytes, and a final `exited` before it ends).

use std::io::{Read, Write};

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use vm_core::config::VmConfig;

use crate::{ExecutorKind, StopReason};

/// Largest frame either side accepts, in bytes.
pub const MAX_FRAME: usize = 1 << 20;

/// A frame that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The socket failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix exceeds [`MAX_FRAME`].
    #[error("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge {
        /// The announced length.
        len: usize,
    },
    /// The frame is not the JSON message expected.
    #[error("malformed frame: {0}")]
    Json(#[from] serde_json::Error),
    /// The peer closed the socket in the middle of a frame.
    #[error("control socket closed inside a frame")]
    Truncated,
}

/// Daemon → VMM process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToVmm {
    /// Build and start this VM (always the first frame).
    Boot {
        /// The VM's configuration.
        config: VmConfig,
        /// How its vCPUs get threads.
        executor: ExecutorKind,
        /// Where its `switch` NICs join cross-process switch segments
        /// (absent: its switches stay inside the VMM process).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        switch_dir: Option<PathBuf>,
    },
    /// A numbered request; answered by [`FromVmm::Reply`] with the same id.
    Command {
        /// Request id, echoed in the reply.
        id: u64,
        /// What to do.
        command: VmmCommand,
    },
}

/// A request to a running VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmmCommand {
    /// Park every vCPU (returns once they are parked).
    Pause,
    /// Let parked vCPUs run again.
    Resume,
    /// Stop the VM; the process then reports `exited` and ends.
    Stop,
    /// The Ctrl-Alt-Del key combination (see [`crate::daemon`] for what it does here).
    CtrlAltDel,
    /// Report the run state and per-vCPU exit counts.
    Status,
    /// Write a snapshot of the paused VM (see [`crate::snapshot`]).
    Snapshot {
        /// Where the state file goes.
        snapshot_path: PathBuf,
        /// Where the memory file goes.
        mem_file_path: PathBuf,
    },
}

/// The VMM process's view of its VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmmStatus {
    /// `running`, `pausing`, `paused`, `stopping` or `stopped`.
    pub run_state: String,
    /// VM exits handled so far, per vCPU.
    pub exit_counts: Vec<u64>,
}

/// What was built, as reported after a successful boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootReport {
    /// The engine, e.g. `KVM`.
    pub engine: String,
    /// Why that engine was chosen.
    pub engine_reason: String,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest RAM in bytes.
    pub memory_bytes: u64,
    /// The kernel: a path or `built-in guest`.
    pub kernel: String,
}

/// VMM process → daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FromVmm {
    /// The VM was built and its vCPUs started.
    Booted {
        /// What was built.
        report: BootReport,
    },
    /// The VM could not be built or started; the process ends.
    BootFailed {
        /// Why.
        error: String,
    },
    /// The answer to command `id`.
    Reply {
        /// The command's id.
        id: u64,
        /// The status after the command, or why it failed.
        result: Result<VmmStatus, String>,
    },
    /// Bytes the guest wrote to its serial console.
    Serial {
        /// The bytes.
        data: Vec<u8>,
    },
    /// The VM stopped; the last frame before the process ends.
    Exited {
        /// Why it stopped.
        reason: StopReason,
    },
}

/// Encodes `msg` as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    let json = serde_json::to_vec(msg)?;
    if json.len() > MAX_FRAME {
        return Err(ProtocolError::TooLarge { len: json.len() });
    }
    let mut frame = Vec::with_capacity(4 + json.len());
    frame.extend_from_slice(&(json.len() as u32).to_le_bytes());
    frame.extend_from_slice(&json);
    Ok(frame)
}

/// Decodes one frame from the start of `bytes`; returns the message and the
/// bytes consumed, or `None` if `bytes` holds only part of a frame.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<(T, usize)>, ProtocolError> {
    let Some(prefix) = bytes.get(..4) else {
        return Ok(None);
    };
    let len = frame_len(prefix)?;
    let Some(body) = bytes.get(4..4 + len) else {
        return Ok(None);
    };
    Ok(Some((serde_json::from_slice(body)?, 4 + len)))
}

fn frame_len(prefix: &[u8]) -> Result<usize, ProtocolError> {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(prefix);
    let len = u32::from_le_bytes(raw) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge { len });
    }
    Ok(len)
}

/// Writes one frame (blocking).
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), ProtocolError> {
    w.write_all(&encode(msg)?)?;
    Ok(())
}

/// Reads one frame (blocking); `None` on a clean end of stream between frames.
pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> Result<Option<T>, ProtocolError> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut prefix[1..]).map_err(truncated)?;
    let mut body = vec![0u8; frame_len(&prefix)?];
    r.read_exact(&mut body).map_err(truncated)?;
    Ok(Some(serde_json::from_slice(&body)?))
}

/// Writes one frame.
pub async fn write_frame_async<T: Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    msg: &T,
) -> Result<(), ProtocolError> {
    w.write_all(&encode(msg)?).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame; `None` on a clean end of stream between frames.
pub async fn read_frame_async<T: DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
) -> Result<Option<T>, ProtocolError> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut prefix[1..]).await.map_err(truncated)?;
    let mut body = vec![0u8; frame_len(&prefix)?];
    r.read_exact(&mut body).await.map_err(truncated)?;
    Ok(Some(serde_json::from_slice(&body)?))
}

fn truncated(e: std::io::Error) -> ProtocolError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ProtocolError::Truncated
    } else {
        ProtocolError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_blocking_and_partial_decode() {
        let msgs = [
            FromVmm::Serial {
                data: b"hi\n".to_vec(),
            },
            FromVmm::Reply {
                id: 7,
                result: Err("no".into()),
            },
            FromVmm::Exited {
                reason: StopReason::GuestReset,
            },
            FromVmm::Exited {
                reason: StopReason::Failed {
                    vcpu: Some(vm_core::VcpuId(1)),
                    message: "KVM_RUN failed".into(),
                },
            },
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            write_frame(&mut wire, m).unwrap();
        }
        let mut r = &wire[..];
        for m in &msgs {
            assert_eq!(read_frame::<FromVmm>(&mut r).unwrap().as_ref(), Some(m));
        }
        assert!(read_frame::<FromVmm>(&mut r).unwrap().is_none());
        // Every strict prefix of a frame is "need more", never an error.
        let one = encode(&msgs[0]).unwrap();
        for cut in 0..one.len() {
            assert!(decode::<FromVmm>(&one[..cut]).unwrap().is_none());
        }
        let (m, used) = decode::<FromVmm>(&one).unwrap().unwrap();
        assert_eq!((m, used), (msgs[0].clone(), one.len()));
    }

    #[test]
    fn hostile_frames_are_errors() {
        let huge = (MAX_FRAME as u32 + 1).to_le_bytes();
        assert!(matches!(
            decode::<ToVmm>(&huge),
            Err(ProtocolError::TooLarge { .. })
        ));
        let mut cut = &[5u8, 0, 0, 0, b'{'][..];
        assert!(matches!(
            read_frame::<ToVmm>(&mut cut),
            Err(ProtocolError::Truncated)
        ));
        let bad = encode(&serde_json::json!({"type": "launch_missiles"})).unwrap();
        assert!(matches!(decode::<ToVmm>(&bad), Err(ProtocolError::Json(_))));
    }
}
