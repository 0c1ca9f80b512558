//! The SiFive test device used as syscon: a 32-bit write of `0x5555` powers
//! off (pass), `0x3333 | code << 16` powers off with a failure code, `0x7777`
//! resets.

use super::read_le;

/// What a syscon write asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysconEvent {
    /// Power off (`FINISHER_PASS`).
    PowerOff,
    /// Power off reporting failure `code` (`FINISHER_FAIL`).
    Fail(u16),
    /// Reset (`FINISHER_RESET`).
    Reset,
}

/// The syscon register block.
#[derive(Debug, Default, Clone, Copy)]
pub struct Syscon;

impl Syscon {
    /// Decodes a write at `offset`; `None` for anything that is not a request.
    pub fn decode_write(offset: u64, data: &[u8]) -> Option<SysconEvent> {
        if offset != 0 || data.len() < 4 {
            return None;
        }
        let value = read_le(data) as u32;
        match value & 0xffff {
            0x5555 => Some(SysconEvent::PowerOff),
            0x3333 => Some(SysconEvent::Fail((value >> 16) as u16)),
            0x7777 => Some(SysconEvent::Reset),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_finisher_values() {
        assert_eq!(
            Syscon::decode_write(0, &0x5555u32.to_le_bytes()),
            Some(SysconEvent::PowerOff)
        );
        assert_eq!(
            Syscon::decode_write(0, &0x7777u32.to_le_bytes()),
            Some(SysconEvent::Reset)
        );
        assert_eq!(
            Syscon::decode_write(0, &0x0003_3333u32.to_le_bytes()),
            Some(SysconEvent::Fail(3))
        );
        assert_eq!(Syscon::decode_write(0, &0x1234u32.to_le_bytes()), None);
        assert_eq!(Syscon::decode_write(4, &0x5555u32.to_le_bytes()), None);
        assert_eq!(Syscon::decode_write(0, &[0x55]), None);
    }
}
