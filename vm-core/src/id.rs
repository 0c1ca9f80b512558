//! `VmId`: the validated name of a VM, which is also the key of its event stream;
//! `VcpuId`: a vCPU's index within its VM.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted VM id, in bytes.
pub const MAX_VM_ID_LEN: usize = 64;

/// Why a string is not a valid [`VmId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmIdError {
    /// The id was empty.
    #[error("vm id is empty")]
    Empty,
    /// The id was longer than [`MAX_VM_ID_LEN`] bytes.
    #[error("vm id is {len} bytes long, the limit is {MAX_VM_ID_LEN}")]
    TooLong {
        /// Length of the rejected id in bytes.
        len: usize,
    },
    /// The id contained a character outside `[A-Za-z0-9_.-]`.
    #[error("vm id contains {ch:?} at byte {index}; allowed are ASCII letters, digits, '-', '_' and '.'")]
    BadChar {
        /// The offending character.
        ch: char,
        /// Its byte index in the id.
        index: usize,
    },
    /// The id started with a '.' or '-' (reserved so ids are safe as file names and CLI args).
    #[error("vm id must start with a letter, digit or '_', not {ch:?}")]
    BadStart {
        /// The offending first character.
        ch: char,
    },
}

/// A vCPU index within its VM (the x86 APIC id, arm64 MPIDR affinity, riscv hart id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VcpuId(pub u32);

impl fmt::Display for VcpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vcpu{}", self.0)
    }
}

/// Identifier of a VM: 1 to 64 characters from `[A-Za-z0-9_.-]`, not starting with '.' or '-'.
///
/// Cheap to clone (shared string), so events and registries can hold it freely.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VmId(Arc<str>);

impl VmId {
    /// Validates `name` and wraps it as a `VmId`.
    pub fn new(name: &str) -> Result<Self, VmIdError> {
        validate(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// Generates a fresh id of the form `vm-<16 hex digits>`, unique within this host in practice.
    pub fn generate() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // splitmix64 over time, pid and a counter: distinct per call, spread over the id space.
        let mut z =
            nanos ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(Arc::from(format!("vm-{z:016x}").as_str()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate(name: &str) -> Result<(), VmIdError> {
    let Some(first) = name.chars().next() else {
        return Err(VmIdError::Empty);
    };
    if name.len() > MAX_VM_ID_LEN {
        return Err(VmIdError::TooLong { len: name.len() });
    }
    if let Some((index, ch)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(VmIdError::BadChar { ch, index });
    }
    if matches!(first, '.' | '-') {
        return Err(VmIdError::BadStart { ch: first });
    }
    Ok(())
}

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VmId({})", self.0)
    }
}

impl FromStr for VmId {
    type Err = VmIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl std::borrow::Borrow<str> for VmId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for VmId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for VmId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for VmId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["a", "web-1", "db_primary.eu", "_x", &"z".repeat(64)] {
            assert_eq!(VmId::new(ok).map(|id| id.to_string()).as_deref(), Ok(ok));
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(VmId::new(""), Err(VmIdError::Empty));
        assert_eq!(
            VmId::new(&"a".repeat(65)),
            Err(VmIdError::TooLong { len: 65 })
        );
        assert_eq!(
            VmId::new("a/b"),
            Err(VmIdError::BadChar { ch: '/', index: 1 })
        );
        assert_eq!(
            VmId::new("é"),
            Err(VmIdError::BadChar { ch: 'é', index: 0 })
        );
        assert_eq!(VmId::new("-rf"), Err(VmIdError::BadStart { ch: '-' }));
        assert_eq!(VmId::new(".."), Err(VmIdError::BadStart { ch: '.' }));
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = VmId::generate();
        let b = VmId::generate();
        assert_ne!(a, b);
        assert_eq!(VmId::new(a.as_str()).as_ref(), Ok(&a));
    }

    #[test]
    fn serde_validates() {
        let id: VmId = serde_json::from_str("\"web-1\"").unwrap();
        assert_eq!(id.as_str(), "web-1");
        let err = serde_json::from_str::<VmId>("\"a b\"").unwrap_err();
        assert!(err.to_string().contains("' '"), "{err}");
    }
}
