//! AArch64 exception syndrome (`ESR_EL2`) decoding: the exception class and
//! the instruction-specific syndrome of the traps a hypervisor sees from an
//! EL1 guest (data aborts, WFI/WFE, HVC/SMC, trapped system-register access).
//! Pure functions over the 64-bit syndrome, so they are tested on any host;
//! the HVF backend feeds them `hv_vcpu_exit_t.exception.syndrome`.

use std::fmt;

/// Exception class `EC` (`ESR_ELx[31:26]`) values a hypervisor handles.
pub mod ec {
    /// Unknown reason (e.g. an undefined instruction trapped to EL2).
    pub const UNKNOWN: u8 = 0x00;
    /// Trapped WFI or WFE.
    pub const WFX: u8 = 0x01;
    /// HVC from AArch64.
    pub const HVC64: u8 = 0x16;
    /// SMC from AArch64.
    pub const SMC64: u8 = 0x17;
    /// Trapped MSR, MRS or system instruction from AArch64.
    pub const SYS64: u8 = 0x18;
    /// Instruction abort from a lower exception level.
    pub const IABT_LOWER: u8 = 0x20;
    /// Data abort from a lower exception level.
    pub const DABT_LOWER: u8 = 0x24;
    /// Software step from a lower exception level.
    pub const SOFTSTEP_LOWER: u8 = 0x32;
    /// Watchpoint from a lower exception level.
    pub const WATCHPT_LOWER: u8 = 0x34;
    /// BRK instruction from AArch64.
    pub const BRK64: u8 = 0x3c;
}

/// The exception class of a syndrome.
pub fn exception_class(esr: u64) -> u8 {
    ((esr >> 26) & 0x3f) as u8
}

/// The name of an exception class, for exits the VMM does not act on.
pub fn exception_class_name(class: u8) -> &'static str {
    match class {
        ec::UNKNOWN => "ESR_EC_UNKNOWN",
        ec::WFX => "ESR_EC_WFX",
        0x07 => "ESR_EC_FP_ASIMD",
        0x0e => "ESR_EC_ILLEGAL_STATE",
        0x11 => "ESR_EC_SVC32",
        0x15 => "ESR_EC_SVC64",
        ec::HVC64 => "ESR_EC_HVC64",
        ec::SMC64 => "ESR_EC_SMC64",
        ec::SYS64 => "ESR_EC_SYS64",
        0x19 => "ESR_EC_SVE",
        ec::IABT_LOWER => "ESR_EC_IABT_LOWER",
        0x22 => "ESR_EC_PC_ALIGNMENT",
        ec::DABT_LOWER => "ESR_EC_DABT_LOWER",
        0x26 => "ESR_EC_SP_ALIGNMENT",
        0x2c => "ESR_EC_FP_EXCEPTION",
        0x2f => "ESR_EC_SERROR",
        0x30 => "ESR_EC_BREAKPOINT_LOWER",
        ec::SOFTSTEP_LOWER => "ESR_EC_SOFTSTEP_LOWER",
        ec::WATCHPT_LOWER => "ESR_EC_WATCHPOINT_LOWER",
        ec::BRK64 => "ESR_EC_BRK64",
        _ => "ESR_EC_RESERVED",
    }
}

/// Byte length of the trapped instruction (`IL`: 4 for A64, 2 for a 16-bit T32 one).
pub fn instruction_length(esr: u64) -> u64 {
    if esr & (1 << 25) != 0 {
        4
    } else {
        2
    }
}

/// A general-purpose register number as it appears in a syndrome, where 31
/// means the zero register (`XZR`/`WZR`) for loads and stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arm64Reg(pub u8);

impl Arm64Reg {
    /// Whether this is the zero register.
    pub fn is_zero(self) -> bool {
        self.0 == 31
    }
}

impl fmt::Display for Arm64Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            f.write_str("xzr")
        } else {
            write!(f, "x{}", self.0)
        }
    }
}

/// A data abort the hardware described fully (`ISV = 1`): one load or store
/// of 1, 2, 4 or 8 bytes between a register and the faulting address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataAbort {
    /// Access size in bytes (`SAS`).
    pub size: u8,
    /// A load sign-extends the value (`SSE`).
    pub sign_extend: bool,
    /// The register transferred (`SRT`).
    pub reg: Arm64Reg,
    /// The register is 64 bits wide (`SF`); otherwise a load writes `Wn` and zeroes the top half.
    pub sixty_four: bool,
    /// It was a store (`WnR`).
    pub write: bool,
    /// Instruction length in bytes, for advancing the PC.
    pub instruction_len: u64,
}

/// Why a data abort cannot be turned into an MMIO access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataAbortError {
    /// The syndrome is not a data abort from the guest.
    #[error("syndrome {esr:#x} is exception class {class:#x}, not a data abort from a lower EL")]
    NotDataAbort {
        /// The syndrome.
        esr: u64,
        /// Its class.
        class: u8,
    },
    /// `ISV = 0`: the instruction (load/store pair, writeback, SIMD register
    /// ...) is not described by the syndrome and would need an emulator.
    #[error(
        "data abort syndrome {esr:#x} has no valid instruction syndrome (ISV=0): \
         the guest used a load/store form (pair, writeback, SIMD) that cannot be emulated from the syndrome"
    )]
    NoValidSyndrome {
        /// The syndrome.
        esr: u64,
    },
    /// A stage-1 page-table walk faulted (`S1PTW`): not an MMIO access.
    #[error("data abort syndrome {esr:#x} faulted on a stage-1 page-table walk")]
    PageTableWalk {
        /// The syndrome.
        esr: u64,
    },
}

/// Decodes a data abort (`EC = 0x24`) into its access.
pub fn decode_data_abort(esr: u64) -> Result<DataAbort, DataAbortError> {
    let class = exception_class(esr);
    if class != ec::DABT_LOWER {
        return Err(DataAbortError::NotDataAbort { esr, class });
    }
    if esr & (1 << 24) == 0 {
        return Err(DataAbortError::NoValidSyndrome { esr });
    }
    if esr & (1 << 7) != 0 {
        return Err(DataAbortError::PageTableWalk { esr });
    }
    Ok(DataAbort {
        size: 1 << ((esr >> 22) & 0x3),
        sign_extend: esr & (1 << 21) != 0,
        reg: Arm64Reg(((esr >> 16) & 0x1f) as u8),
        sixty_four: esr & (1 << 15) != 0,
        write: esr & (1 << 6) != 0,
        instruction_len: instruction_length(esr),
    })
}

impl DataAbort {
    /// The bytes a store writes, taken from the source register's value
    /// (`value` is ignored for the zero register).
    pub fn store_bytes(&self, value: u64) -> [u8; 8] {
        let value = if self.reg.is_zero() { 0 } else { value };
        value.to_le_bytes()
    }

    /// The value a load leaves in the destination register, from the `size`
    /// little-endian bytes read: sign-extended when `SSE`, and truncated to 32
    /// bits (upper half zero) when the register is `Wn`.
    pub fn load_value(&self, data: &[u8]) -> u64 {
        let size = usize::from(self.size).min(8).min(data.len());
        let mut bytes = [0u8; 8];
        bytes[..size].copy_from_slice(&data[..size]);
        let raw = u64::from_le_bytes(bytes);
        let bits = (size * 8) as u32;
        let value = if self.sign_extend && bits > 0 && bits < 64 {
            let shift = 64 - bits;
            (((raw << shift) as i64) >> shift) as u64
        } else {
            raw
        };
        if self.sixty_four {
            value
        } else {
            value & 0xffff_ffff
        }
    }
}

/// A trapped WFI or WFE (`EC = 0x01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitKind {
    /// Wait for interrupt: the vCPU is idle.
    Wfi,
    /// Wait for event: a spin-wait hint; resume at once.
    Wfe,
}

/// Which wait instruction a WFx syndrome reports (`TI`, `ISS[1:0]`).
pub fn wait_kind(esr: u64) -> WaitKind {
    if esr.trailing_zeros() >= 2 {
        WaitKind::Wfi
    } else {
        WaitKind::Wfe
    }
}

/// The 16-bit immediate of a trapped HVC or SMC (`ISS[15:0]`).
pub fn call_immediate(esr: u64) -> u16 {
    (esr & 0xffff) as u16
}

/// A system register as `(op0, op1, CRn, CRm, op2)`, packed the way
/// Hypervisor.framework's `hv_sys_reg_t` and the `MRS`/`MSR` encodings do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SysReg {
    /// op0 (2 or 3 for the registers here).
    pub op0: u8,
    /// op1.
    pub op1: u8,
    /// CRn.
    pub crn: u8,
    /// CRm.
    pub crm: u8,
    /// op2.
    pub op2: u8,
}

impl SysReg {
    /// A register from its encoding fields.
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Self {
        Self {
            op0,
            op1,
            crn,
            crm,
            op2,
        }
    }

    /// The `hv_sys_reg_t` value: `op0 << 14 | op1 << 11 | CRn << 7 | CRm << 3 | op2`.
    pub const fn hv_encoding(self) -> u16 {
        ((self.op0 as u16 & 0x3) << 14)
            | ((self.op1 as u16 & 0x7) << 11)
            | ((self.crn as u16 & 0xf) << 7)
            | ((self.crm as u16 & 0xf) << 3)
            | (self.op2 as u16 & 0x7)
    }
}

impl fmt::Display for SysReg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "S{}_{}_C{}_C{}_{}",
            self.op0, self.op1, self.crn, self.crm, self.op2
        )
    }
}

/// System registers the backends read or write.
pub mod sysreg {
    use super::SysReg;
    /// `SP_EL0`.
    pub const SP_EL0: SysReg = SysReg::new(3, 0, 4, 1, 0);
    /// `SP_EL1`.
    pub const SP_EL1: SysReg = SysReg::new(3, 4, 4, 1, 0);
    /// `ELR_EL1`.
    pub const ELR_EL1: SysReg = SysReg::new(3, 0, 4, 0, 1);
    /// `SCTLR_EL1`.
    pub const SCTLR_EL1: SysReg = SysReg::new(3, 0, 1, 0, 0);
    /// `MPIDR_EL1`.
    pub const MPIDR_EL1: SysReg = SysReg::new(3, 0, 0, 0, 5);
}

/// A trapped `MRS`/`MSR` (`EC = 0x18`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysRegAccess {
    /// The register accessed.
    pub reg: SysReg,
    /// The general-purpose register transferred (`Rt`; 31 = `XZR`).
    pub rt: Arm64Reg,
    /// `MRS` (a read into `rt`) rather than `MSR`.
    pub read: bool,
}

/// Decodes a trapped system-register access, or `None` for another class.
pub fn decode_sysreg_access(esr: u64) -> Option<SysRegAccess> {
    if exception_class(esr) != ec::SYS64 {
        return None;
    }
    let field = |shift: u32, bits: u32| ((esr >> shift) & ((1 << bits) - 1)) as u8;
    Some(SysRegAccess {
        reg: SysReg::new(
            field(20, 2),
            field(14, 3),
            field(10, 4),
            field(1, 4),
            field(17, 3),
        ),
        rt: Arm64Reg(field(5, 5)),
        read: esr & 1 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a data-abort syndrome from its fields.
    fn dabt(sas: u64, sse: bool, srt: u64, sf: bool, wnr: bool) -> u64 {
        (u64::from(ec::DABT_LOWER) << 26)
            | (1 << 25)
            | (1 << 24)
            | (sas << 22)
            | (u64::from(sse) << 21)
            | (srt << 16)
            | (u64::from(sf) << 15)
            | (u64::from(wnr) << 6)
    }

    #[test]
    fn data_abort_store_word_from_w3() {
        // str w3, [x0]
        let abort = decode_data_abort(dabt(2, false, 3, false, true)).unwrap();
        assert_eq!(abort.size, 4);
        assert!(abort.write);
        assert_eq!(abort.reg, Arm64Reg(3));
        assert!(!abort.sixty_four);
        assert_eq!(abort.instruction_len, 4);
        assert_eq!(
            &abort.store_bytes(0x1122_3344_5566_7788)[..4],
            &[0x88, 0x77, 0x66, 0x55]
        );
    }

    #[test]
    fn store_from_zero_register_writes_zeroes() {
        let abort = decode_data_abort(dabt(3, false, 31, true, true)).unwrap();
        assert!(abort.reg.is_zero());
        assert_eq!(abort.store_bytes(u64::MAX), [0; 8]);
        assert_eq!(abort.reg.to_string(), "xzr");
    }

    #[test]
    fn signed_byte_load_extends_to_w_or_x() {
        // ldrsb x5, [x1] reading 0x80
        let x = decode_data_abort(dabt(0, true, 5, true, false)).unwrap();
        assert!(!x.write);
        assert_eq!(x.load_value(&[0x80]), 0xffff_ffff_ffff_ff80);
        // ldrsb w5, [x1]: upper 32 bits are zero
        let w = decode_data_abort(dabt(0, true, 5, false, false)).unwrap();
        assert_eq!(w.load_value(&[0x80]), 0xffff_ff80);
        // ldrh w5: zero-extended
        let h = decode_data_abort(dabt(1, false, 5, false, false)).unwrap();
        assert_eq!(h.load_value(&[0x34, 0x92]), 0x9234);
        // ldr x5: full width
        let d = decode_data_abort(dabt(3, false, 5, true, false)).unwrap();
        assert_eq!(
            d.load_value(&[1, 2, 3, 4, 5, 6, 7, 0x88]),
            0x8807_0605_0403_0201
        );
    }

    #[test]
    fn short_data_buffer_does_not_panic() {
        let d = decode_data_abort(dabt(3, false, 5, true, false)).unwrap();
        assert_eq!(d.load_value(&[0xff]), 0xff);
        assert_eq!(d.load_value(&[]), 0);
    }

    #[test]
    fn abort_without_syndrome_or_wrong_class_is_refused() {
        let no_isv = dabt(2, false, 3, false, true) & !(1 << 24);
        assert_eq!(
            decode_data_abort(no_isv),
            Err(DataAbortError::NoValidSyndrome { esr: no_isv })
        );
        let walk = dabt(2, false, 3, false, false) | (1 << 7);
        assert!(matches!(
            decode_data_abort(walk),
            Err(DataAbortError::PageTableWalk { .. })
        ));
        let hvc = u64::from(ec::HVC64) << 26;
        let err = decode_data_abort(hvc).unwrap_err();
        assert!(err.to_string().contains("0x16"), "{err}");
    }

    #[test]
    fn wfi_wfe_and_call_immediates() {
        let wfi = (u64::from(ec::WFX) << 26) | (1 << 25);
        assert_eq!(exception_class(wfi), ec::WFX);
        assert_eq!(wait_kind(wfi), WaitKind::Wfi);
        assert_eq!(wait_kind(wfi | 1), WaitKind::Wfe);
        let hvc = (u64::from(ec::HVC64) << 26) | (1 << 25) | 0x4711;
        assert_eq!(call_immediate(hvc), 0x4711);
        assert_eq!(exception_class_name(exception_class(hvc)), "ESR_EC_HVC64");
        assert_eq!(exception_class_name(0x3b), "ESR_EC_RESERVED");
    }

    #[test]
    fn hv_sys_reg_encodings_match_the_framework_constants() {
        // Values of HV_SYS_REG_* in <Hypervisor/hv_vcpu_types.h>.
        assert_eq!(sysreg::SP_EL0.hv_encoding(), 0xc208);
        assert_eq!(sysreg::SP_EL1.hv_encoding(), 0xe208);
        assert_eq!(sysreg::ELR_EL1.hv_encoding(), 0xc201);
        assert_eq!(sysreg::SCTLR_EL1.hv_encoding(), 0xc080);
        assert_eq!(sysreg::MPIDR_EL1.hv_encoding(), 0xc005);
    }

    #[test]
    fn sysreg_trap_decodes_register_and_direction() {
        // mrs x2, MPIDR_EL1: op0=3 op2=5 op1=0 CRn=0 Rt=2 CRm=0 read
        let esr = (u64::from(ec::SYS64) << 26) | (1 << 25) | (3 << 20) | (5 << 17) | (2 << 5) | 1;
        let access = decode_sysreg_access(esr).unwrap();
        assert_eq!(access.reg, sysreg::MPIDR_EL1);
        assert_eq!(access.rt, Arm64Reg(2));
        assert!(access.read);
        assert_eq!(access.reg.to_string(), "S3_0_C0_C0_5");
        assert!(decode_sysreg_access(u64::from(ec::WFX) << 26).is_none());
    }
}
