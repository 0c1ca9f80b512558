//! The PC's CMOS real-time clock (Motorola MC146818): an index port (0x70)
//! selects one of 128 bytes, the data port (0x71) reads or writes it.
//!
//! Bytes 0x00-0x09 are the time of day, read from the host's clock plus an
//! offset the guest sets by writing them; registers A-D (0x0a-0x0d) control
//! the format (BCD or binary, 12 or 24 hours, per register B) and report
//! the update cycle (register A's update-in-progress bit is set in the last
//! 244 µs of every second, as on the chip); 0x32 is the century (the FADT's
//! `century` field points there); the other bytes are plain CMOS RAM.
//!
//! Limits: no interrupt line (alarm, periodic and update-ended interrupts are
//! not raised and register C reads 0), so the firmware tables describe the
//! device without an IRQ; the daylight-saving bit is ignored.
//!
//! No rust-vmm crate models this chip (vm-superio's `Rtc` is the ARM PL031).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::BusDevice;

/// The index port; the data port follows it.
pub const CMOS_PORT_BASE: u64 = 0x70;
/// Index and data ports.
pub const CMOS_PORT_LEN: u64 = 2;
/// The CMOS byte holding the century (BCD or binary, as the time is).
pub const CENTURY_INDEX: u8 = 0x32;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const DAY_OF_WEEK: u8 = 0x06;
const DAY_OF_MONTH: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;

/// Register A: update in progress.
const A_UIP: u8 = 0x80;
/// Register A's power-on value: 32.768 kHz time base, 1.024 kHz rate.
const A_DEFAULT: u8 = 0x26;
/// Register B: updates stopped while the guest sets the time.
const B_SET: u8 = 0x80;
/// Register B: binary (not BCD) values.
const B_BINARY: u8 = 0x04;
/// Register B: 24-hour (not 12-hour) mode.
const B_24H: u8 = 0x02;
/// Register D: the RAM and time are valid (battery good).
const D_VRT: u8 = 0x80;
/// In 12-hour mode, the hour byte's PM flag.
const HOUR_PM: u8 = 0x80;
/// How long before each second's update the UIP bit is set (µs).
const UIP_LEAD_US: u32 = 244;

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number from [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl DateTime {
    fn from_unix(secs: i64) -> Self {
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let rem = secs.rem_euclid(86_400) as u32;
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }

    fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour * 3600 + self.minute * 60 + self.second)
    }

    /// 1 = Sunday, as the chip counts.
    fn day_of_week(self) -> u32 {
        // 1970-01-01 was a Thursday (5).
        (days_from_civil(self.year, self.month, self.day) + 4).rem_euclid(7) as u32 + 1
    }
}

fn to_bcd(v: u32) -> u8 {
    (((v / 10 % 10) << 4) | (v % 10)) as u8
}

fn from_bcd(v: u8) -> u32 {
    u32::from(v >> 4) * 10 + u32::from(v & 0x0f)
}

/// Where the RTC reads the host's time from; tests substitute a fixed clock.
pub trait Clock: Send + std::fmt::Debug {
    /// Seconds and nanoseconds since the Unix epoch.
    fn now(&self) -> (i64, u32);
}

/// The host's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostClock;

impl Clock for HostClock {
    fn now(&self) -> (i64, u32) {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (d.as_secs() as i64, d.subsec_nanos())
    }
}

/// The MC146818 CMOS RTC on the PIO bus at [`CMOS_PORT_BASE`].
#[derive(Debug)]
pub struct CmosRtc<C: Clock = HostClock> {
    clock: C,
    /// Guest time minus host time, in seconds (the guest set the clock).
    offset: i64,
    index: u8,
    ram: [u8; 128],
    /// While register B's SET bit is on: the time as the guest writes it.
    frozen: Option<DateTime>,
}

impl CmosRtc<HostClock> {
    /// An RTC showing the host's time (UTC), in BCD and 24-hour mode.
    pub fn new() -> Self {
        Self::with_clock(HostClock)
    }
}

impl Default for CmosRtc<HostClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock> CmosRtc<C> {
    /// An RTC reading `clock`.
    pub fn with_clock(clock: C) -> Self {
        let mut ram = [0u8; 128];
        ram[usize::from(REG_A)] = A_DEFAULT;
        ram[usize::from(REG_B)] = B_24H;
        ram[usize::from(REG_D)] = D_VRT;
        Self {
            clock,
            offset: 0,
            index: 0,
            ram,
            frozen: None,
        }
    }

    fn reg_b(&self) -> u8 {
        self.ram[usize::from(REG_B)]
    }

    fn now(&self) -> (DateTime, u32) {
        if let Some(t) = self.frozen {
            return (t, 0);
        }
        let (secs, nanos) = self.clock.now();
        (DateTime::from_unix(secs + self.offset), nanos)
    }

    /// A time field in the format register B selects.
    fn encode(&self, v: u32) -> u8 {
        if self.reg_b() & B_BINARY != 0 {
            v as u8
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u32 {
        if self.reg_b() & B_BINARY != 0 {
            u32::from(v)
        } else {
            from_bcd(v)
        }
    }

    fn encode_hour(&self, hour: u32) -> u8 {
        if self.reg_b() & B_24H != 0 {
            return self.encode(hour);
        }
        let h12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(h12) | if hour >= 12 { HOUR_PM } else { 0 }
    }

    fn decode_hour(&self, v: u8) -> u32 {
        if self.reg_b() & B_24H != 0 {
            return self.decode(v);
        }
        let h12 = self.decode(v & !HOUR_PM) % 12;
        h12 + if v & HOUR_PM != 0 { 12 } else { 0 }
    }

    fn read_register(&mut self, index: u8) -> u8 {
        let (t, nanos) = self.now();
        match index {
            SECONDS => self.encode(t.second),
            MINUTES => self.encode(t.minute),
            HOURS => self.encode_hour(t.hour),
            DAY_OF_WEEK => self.encode(t.day_of_week()),
            DAY_OF_MONTH => self.encode(t.day),
            MONTH => self.encode(t.month),
            YEAR => self.encode(t.year.rem_euclid(100) as u32),
            CENTURY_INDEX => self.encode(t.year.div_euclid(100).clamp(0, 99) as u32),
            REG_A => {
                let updating = self.frozen.is_none() && nanos >= 1_000_000_000 - UIP_LEAD_US * 1000;
                self.ram[usize::from(REG_A)] & !A_UIP | if updating { A_UIP } else { 0 }
            }
            // No interrupt sources: no flags to report (reading clears them).
            REG_C => 0,
            REG_D => D_VRT,
            _ => self.ram[usize::from(index)],
        }
    }

    fn write_register(&mut self, index: u8, value: u8) {
        let time_field = matches!(
            index,
            SECONDS | MINUTES | HOURS | DAY_OF_MONTH | MONTH | YEAR | CENTURY_INDEX
        );
        if time_field {
            let (mut t, _) = self.now();
            let v = self.decode(value);
            match index {
                SECONDS => t.second = v.min(59),
                MINUTES => t.minute = v.min(59),
                HOURS => t.hour = self.decode_hour(value).min(23),
                DAY_OF_MONTH => t.day = v.clamp(1, 31),
                MONTH => t.month = v.clamp(1, 12),
                YEAR => t.year = t.year.div_euclid(100) * 100 + i64::from(v.min(99)),
                _ => t.year = i64::from(v.min(99)) * 100 + t.year.rem_euclid(100),
            }
            self.set_time(t);
            return;
        }
        match index {
            // The update bit is read-only.
            REG_A => self.ram[usize::from(REG_A)] = value & !A_UIP,
            REG_B => {
                let was_set = self.reg_b() & B_SET != 0;
                let setting = value & B_SET != 0;
                if setting && !was_set {
                    self.frozen = Some(self.now().0);
                }
                self.ram[usize::from(REG_B)] = value;
                if !setting {
                    if let Some(t) = self.frozen.take() {
                        self.offset = t.to_unix() - self.clock.now().0;
                    }
                }
            }
            REG_C | REG_D | DAY_OF_WEEK => {}
            _ => self.ram[usize::from(index)] = value,
        }
    }

    /// Makes `t` the current time (kept frozen while SET is on).
    fn set_time(&mut self, t: DateTime) {
        // An impossible date (Feb 31) normalises through the day count.
        if self.frozen.is_some() {
            self.frozen = Some(t);
        } else {
            self.offset = t.to_unix() - self.clock.now().0;
        }
    }
}

/// Largest saved time (offset or frozen time) a restore accepts, in seconds:
/// ±10,000 years, far inside what the date arithmetic handles.
const MAX_SAVED_SECONDS: u64 = 10_000 * 366 * 86_400;

/// The RTC in a snapshot. The time is kept as the guest's offset from the
/// host's clock, so a restored guest's clock shows the host's time plus the
/// same offset (a battery-backed clock kept running while the VM was saved).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RtcState {
    /// Guest time minus host time, in seconds.
    pub offset: i64,
    /// The selected CMOS byte.
    pub index: u8,
    /// The 128 CMOS bytes.
    pub ram: Vec<u8>,
    /// While register B's SET bit is on: the time the guest is writing (Unix seconds).
    pub frozen: Option<i64>,
}

impl<C: Clock> CmosRtc<C> {
    /// The RTC's state.
    pub fn state(&self) -> RtcState {
        RtcState {
            offset: self.offset,
            index: self.index,
            ram: self.ram.to_vec(),
            frozen: self.frozen.map(DateTime::to_unix),
        }
    }

    /// Checks `state` and, only if all of it fits, makes it this RTC's state.
    pub fn restore(&mut self, state: &RtcState) -> Result<(), crate::state::StateError> {
        let ram: [u8; 128] =
            state
                .ram
                .as_slice()
                .try_into()
                .map_err(|_| crate::state::StateError::Size {
                    device: "CMOS RTC",
                    what: "CMOS bytes",
                    expected: 128,
                    found: state.ram.len(),
                })?;
        if state.index > 0x7f {
            return Err(crate::state::StateError::Invalid {
                device: "CMOS RTC",
                reason: format!("CMOS index {:#x} is past the 128 bytes", state.index),
            });
        }
        if state.offset.unsigned_abs() > MAX_SAVED_SECONDS
            || state
                .frozen
                .is_some_and(|t| t.unsigned_abs() > MAX_SAVED_SECONDS)
        {
            return Err(crate::state::StateError::Invalid {
                device: "CMOS RTC",
                reason: "the saved time is more than 10,000 years away".into(),
            });
        }
        self.offset = state.offset;
        self.index = state.index;
        self.ram = ram;
        self.frozen = state.frozen.map(DateTime::from_unix);
        Ok(())
    }
}

impl<C: Clock> BusDevice for CmosRtc<C> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let Some(first) = data.first_mut() else {
            return;
        };
        // The index port reads back as floating on a PC.
        if offset != 0 {
            *first = self.read_register(self.index);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        match offset {
            // Bit 7 of the index port masks NMIs on a PC; there are none here.
            0 => self.index = value & 0x7f,
            _ => self.write_register(self.index, value),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn state_round_trips_and_a_short_or_wild_state_is_refused() {
        let clock = FixedClock::default();
        clock.set(1_709_211_909, 0);
        let mut rtc = CmosRtc::with_clock(clock.clone());
        rtc.write(0, &[0x40]);
        rtc.write(1, &[0xa5]);
        rtc.write(0, &[REG_B]);
        rtc.write(1, &[B_24H | B_SET]);
        let state = rtc.state();
        let mut restored = CmosRtc::with_clock(clock);
        restored.restore(&state).unwrap();
        assert_eq!(restored.state(), state);
        let mut short = state.clone();
        short.ram.pop();
        assert!(restored.restore(&short).is_err());
        let mut wild = state.clone();
        wild.offset = i64::MAX;
        assert!(restored.restore(&wild).is_err());
        let mut index = state;
        index.index = 0x80;
        assert!(restored.restore(&index).is_err());
    }

    /// A clock the test moves by hand.
    #[derive(Debug, Default, Clone)]
    struct FixedClock(Arc<(AtomicI64, AtomicU32)>);

    impl FixedClock {
        fn set(&self, secs: i64, nanos: u32) {
            self.0 .0.store(secs, Ordering::Relaxed);
            self.0 .1.store(nanos, Ordering::Relaxed);
        }
    }

    impl Clock for FixedClock {
        fn now(&self) -> (i64, u32) {
            (
                self.0 .0.load(Ordering::Relaxed),
                self.0 .1.load(Ordering::Relaxed),
            )
        }
    }

    /// 2024-02-29 13:05:09 UTC, a Thursday.
    const LEAP_DAY: i64 = 1_709_211_909;

    fn rtc() -> (CmosRtc<FixedClock>, FixedClock) {
        let clock = FixedClock::default();
        clock.set(LEAP_DAY, 0);
        (CmosRtc::with_clock(clock.clone()), clock)
    }

    fn get(rtc: &mut CmosRtc<FixedClock>, index: u8) -> u8 {
        rtc.write(0, &[index]);
        let mut v = [0u8];
        rtc.read(1, &mut v);
        v[0]
    }

    fn set(rtc: &mut CmosRtc<FixedClock>, index: u8, value: u8) {
        rtc.write(0, &[index]);
        rtc.write(1, &[value]);
    }

    #[test]
    fn calendar_conversions_round_trip() {
        for secs in [0, LEAP_DAY, 951_782_400, 4_102_444_799, -86_400] {
            assert_eq!(DateTime::from_unix(secs).to_unix(), secs);
        }
        let t = DateTime::from_unix(LEAP_DAY);
        assert_eq!((t.year, t.month, t.day), (2024, 2, 29));
        assert_eq!((t.hour, t.minute, t.second), (13, 5, 9));
        assert_eq!(t.day_of_week(), 5, "a Thursday");
        assert_eq!(DateTime::from_unix(0).day_of_week(), 5);
    }

    #[test]
    fn time_reads_in_bcd_24h_by_default() {
        let (mut rtc, _) = rtc();
        assert_eq!(get(&mut rtc, SECONDS), 0x09);
        assert_eq!(get(&mut rtc, MINUTES), 0x05);
        assert_eq!(get(&mut rtc, HOURS), 0x13);
        assert_eq!(get(&mut rtc, DAY_OF_WEEK), 0x05);
        assert_eq!(get(&mut rtc, DAY_OF_MONTH), 0x29);
        assert_eq!(get(&mut rtc, MONTH), 0x02);
        assert_eq!(get(&mut rtc, YEAR), 0x24);
        assert_eq!(get(&mut rtc, CENTURY_INDEX), 0x20);
        assert_eq!(get(&mut rtc, REG_D), D_VRT);
        // NMI-mask bit on the index port is ignored.
        assert_eq!(get(&mut rtc, 0x80 | MONTH), 0x02);
    }

    #[test]
    fn binary_and_12_hour_modes_follow_register_b() {
        let (mut rtc, _) = rtc();
        set(&mut rtc, REG_B, B_BINARY);
        assert_eq!(get(&mut rtc, HOURS), 1 | HOUR_PM, "1 PM, binary, 12-hour");
        assert_eq!(get(&mut rtc, YEAR), 24);
        set(&mut rtc, REG_B, 0);
        assert_eq!(get(&mut rtc, HOURS), 0x01 | HOUR_PM, "1 PM, BCD, 12-hour");
        set(&mut rtc, REG_B, B_24H | B_BINARY);
        assert_eq!(get(&mut rtc, HOURS), 13);
    }

    #[test]
    fn update_in_progress_in_the_last_244_us_of_a_second() {
        let (mut rtc, clock) = rtc();
        assert_eq!(get(&mut rtc, REG_A), A_DEFAULT);
        clock.set(LEAP_DAY, 999_800_000);
        assert_eq!(get(&mut rtc, REG_A), A_DEFAULT | A_UIP);
        clock.set(LEAP_DAY + 1, 1_000);
        assert_eq!(get(&mut rtc, REG_A), A_DEFAULT);
        assert_eq!(get(&mut rtc, SECONDS), 0x10);
        // The guest cannot set UIP.
        set(&mut rtc, REG_A, 0xa6);
        assert_eq!(get(&mut rtc, REG_A), A_DEFAULT);
        assert_eq!(get(&mut rtc, REG_C), 0);
    }

    #[test]
    fn guest_sets_the_time_under_the_set_bit() {
        let (mut rtc, clock) = rtc();
        set(&mut rtc, REG_B, B_24H | B_SET);
        set(&mut rtc, YEAR, 0x99);
        set(&mut rtc, CENTURY_INDEX, 0x19);
        set(&mut rtc, MONTH, 0x12);
        set(&mut rtc, DAY_OF_MONTH, 0x31);
        set(&mut rtc, HOURS, 0x23);
        set(&mut rtc, MINUTES, 0x59);
        set(&mut rtc, SECONDS, 0x58);
        // Frozen while SET is on, even as the host clock moves.
        clock.set(LEAP_DAY + 100, 0);
        assert_eq!(get(&mut rtc, SECONDS), 0x58);
        set(&mut rtc, REG_B, B_24H);
        clock.set(LEAP_DAY + 103, 0);
        assert_eq!(get(&mut rtc, SECONDS), 0x01);
        assert_eq!(get(&mut rtc, MINUTES), 0x00);
        assert_eq!(get(&mut rtc, YEAR), 0x00);
        assert_eq!(get(&mut rtc, CENTURY_INDEX), 0x20);
        assert_eq!(get(&mut rtc, MONTH), 0x01);
    }

    #[test]
    fn cmos_ram_keeps_what_the_guest_writes() {
        let (mut rtc, _) = rtc();
        for index in [0x0e, 0x10, 0x31, 0x33, 0x7f] {
            set(&mut rtc, index, index ^ 0x5a);
        }
        for index in [0x0e, 0x10, 0x31, 0x33, 0x7f] {
            assert_eq!(get(&mut rtc, index), index ^ 0x5a);
        }
        let mut v = [0u8; 2];
        rtc.read(0, &mut v);
        assert_eq!(v, [0xff, 0xff], "the index port floats");
    }

    #[test]
    fn hostile_values_do_not_panic() {
        let (mut rtc, _) = rtc();
        for index in 0..=0xffu8 {
            for value in [0x00, 0x7f, 0x80, 0xff] {
                set(&mut rtc, index, value);
                let _ = get(&mut rtc, index);
            }
        }
        rtc.write(1, &[]);
        rtc.read(1, &mut []);
    }
}
