//! Helpers of the load/store instructions: width extension and byte order.

/// Sign- or zero-extends the low `1 << size` bytes.
#[inline(always)]
pub fn extend(v: u64, size: u8, unsigned: bool) -> u64 {
    match (size, unsigned) {
        (0, false) => v as i8 as u64,
        (1, false) => v as i16 as u64,
        (2, false) => v as i32 as u64,
        (0, true) => v & 0xff,
        (1, true) => v & 0xffff,
        (2, true) => v & 0xffff_ffff,
        _ => v,
    }
}

/// The little-endian value of the first `1 << size` bytes of `buf`.
pub fn le_value(buf: [u8; 8], size: u8) -> u64 {
    let len = 1usize << size.min(3);
    buf[..len]
        .iter()
        .enumerate()
        .fold(0, |acc, (i, b)| acc | (u64::from(*b) << (8 * i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension() {
        assert_eq!(extend(0x80, 0, false), 0xffff_ffff_ffff_ff80);
        assert_eq!(extend(0xffff_8000, 1, true), 0x8000);
        assert_eq!(le_value([1, 2, 3, 4, 5, 6, 7, 8], 1), 0x0201);
    }
}
