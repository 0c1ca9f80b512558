//! The Windows Hypervisor Platform ABI as plain data: exit-reason codes and
//! names, the bit layouts the C headers declare as bitfields (which the
//! `windows-sys` bindings expose as raw integers), segment attributes, and
//! the `WHV_E_*` error codes. The values are those of `WinHvPlatformDefs.h`;
//! everything here is pure and tested on any host.

use crate::cpu_template::CpuTemplate;
use crate::regs::X86Segment;

/// `WHV_RUN_VP_EXIT_REASON` values.
pub mod exit_reason {
    /// No exit.
    pub const NONE: i32 = 0;
    /// Guest access to unmapped or protected memory.
    pub const MEMORY_ACCESS: i32 = 1;
    /// `IN`/`OUT`/`INS`/`OUTS`.
    pub const X64_IO_PORT_ACCESS: i32 = 2;
    /// Triple fault or an unrecoverable guest state.
    pub const UNRECOVERABLE_EXCEPTION: i32 = 4;
    /// The register state is invalid.
    pub const INVALID_VP_REGISTER_VALUE: i32 = 5;
    /// A feature the hypervisor does not support.
    pub const UNSUPPORTED_FEATURE: i32 = 6;
    /// An interrupt window opened.
    pub const X64_INTERRUPT_WINDOW: i32 = 7;
    /// `HLT`.
    pub const X64_HALT: i32 = 8;
    /// APIC end of interrupt.
    pub const X64_APIC_EOI: i32 = 9;
    /// A SynIC SINT is deliverable.
    pub const SYNIC_SINT_DELIVERABLE: i32 = 10;
    /// `RDMSR`/`WRMSR` (when MSR exits are enabled).
    pub const X64_MSR_ACCESS: i32 = 0x1000;
    /// `CPUID` (when CPUID exits are enabled).
    pub const X64_CPUID: i32 = 0x1001;
    /// An exception in the exception bitmap.
    pub const EXCEPTION: i32 = 0x1002;
    /// `RDTSC`.
    pub const X64_RDTSC: i32 = 0x1003;
    /// APIC SMI trap.
    pub const X64_APIC_SMI_TRAP: i32 = 0x1004;
    /// Hypercall.
    pub const HYPERCALL: i32 = 0x1005;
    /// APIC INIT/SIPI trap.
    pub const X64_APIC_INIT_SIPI_TRAP: i32 = 0x1006;
    /// APIC write trap.
    pub const X64_APIC_WRITE_TRAP: i32 = 0x1007;
    /// `WHvCancelRunVirtualProcessor` was called.
    pub const CANCELED: i32 = 0x2001;
}

/// The header name of an exit reason.
pub fn exit_reason_name(reason: i32) -> &'static str {
    use exit_reason as e;
    match reason {
        e::NONE => "WHvRunVpExitReasonNone",
        e::MEMORY_ACCESS => "WHvRunVpExitReasonMemoryAccess",
        e::X64_IO_PORT_ACCESS => "WHvRunVpExitReasonX64IoPortAccess",
        e::UNRECOVERABLE_EXCEPTION => "WHvRunVpExitReasonUnrecoverableException",
        e::INVALID_VP_REGISTER_VALUE => "WHvRunVpExitReasonInvalidVpRegisterValue",
        e::UNSUPPORTED_FEATURE => "WHvRunVpExitReasonUnsupportedFeature",
        e::X64_INTERRUPT_WINDOW => "WHvRunVpExitReasonX64InterruptWindow",
        e::X64_HALT => "WHvRunVpExitReasonX64Halt",
        e::X64_APIC_EOI => "WHvRunVpExitReasonX64ApicEoi",
        e::SYNIC_SINT_DELIVERABLE => "WHvRunVpExitReasonSynicSintDeliverable",
        e::X64_MSR_ACCESS => "WHvRunVpExitReasonX64MsrAccess",
        e::X64_CPUID => "WHvRunVpExitReasonX64Cpuid",
        e::EXCEPTION => "WHvRunVpExitReasonException",
        e::X64_RDTSC => "WHvRunVpExitReasonX64Rdtsc",
        e::X64_APIC_SMI_TRAP => "WHvRunVpExitReasonX64ApicSmiTrap",
        e::HYPERCALL => "WHvRunVpExitReasonHypercall",
        e::X64_APIC_INIT_SIPI_TRAP => "WHvRunVpExitReasonX64ApicInitSipiTrap",
        e::X64_APIC_WRITE_TRAP => "WHvRunVpExitReasonX64ApicWriteTrap",
        e::CANCELED => "WHvRunVpExitReasonCanceled",
        _ => "WHvRunVpExitReason(unknown)",
    }
}

/// The `InstructionLength` field (bits 0..4) of `WHV_VP_EXIT_CONTEXT`'s bitfield byte.
pub fn instruction_length(bitfield: u8) -> u64 {
    u64::from(bitfield & 0xf)
}

/// `WHV_X64_VP_EXECUTION_STATE`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionState {
    /// Current privilege level.
    pub cpl: u8,
    /// `CR0.PE`.
    pub protected_mode: bool,
    /// `EFER.LMA`.
    pub long_mode_active: bool,
    /// An interrupt is pending delivery.
    pub interruption_pending: bool,
}

/// Decodes the 16-bit `WHV_X64_VP_EXECUTION_STATE`.
pub fn execution_state(bits: u16) -> ExecutionState {
    ExecutionState {
        cpl: (bits & 0x3) as u8,
        protected_mode: bits & (1 << 2) != 0,
        long_mode_active: bits & (1 << 4) != 0,
        interruption_pending: bits & (1 << 6) != 0,
    }
}

/// `WHV_X64_IO_PORT_ACCESS_INFO`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoPortAccessInfo {
    /// `OUT`/`OUTS`.
    pub write: bool,
    /// Access size: 1, 2 or 4.
    pub size: u8,
    /// `INS`/`OUTS`.
    pub string: bool,
    /// `REP` prefix.
    pub rep: bool,
}

/// Decodes the 32-bit `WHV_X64_IO_PORT_ACCESS_INFO`; `None` if the access
/// size is not 1, 2 or 4.
pub fn io_port_access_info(bits: u32) -> Option<IoPortAccessInfo> {
    let size = ((bits >> 1) & 0x7) as u8;
    matches!(size, 1 | 2 | 4).then_some(IoPortAccessInfo {
        write: bits & 1 != 0,
        size,
        string: bits & (1 << 4) != 0,
        rep: bits & (1 << 5) != 0,
    })
}

/// The kind of a guest memory access (`WHV_MEMORY_ACCESS_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryAccessType {
    /// Read.
    Read,
    /// Write.
    Write,
    /// Instruction fetch.
    Execute,
}

/// `WHV_MEMORY_ACCESS_INFO`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryAccessInfo {
    /// What the guest did.
    pub access: MemoryAccessType,
    /// No GPA range is mapped there (MMIO) rather than a protection fault.
    pub gpa_unmapped: bool,
    /// The `Gva` field is valid.
    pub gva_valid: bool,
}

/// Decodes the 32-bit `WHV_MEMORY_ACCESS_INFO`; `None` for a reserved access type.
pub fn memory_access_info(bits: u32) -> Option<MemoryAccessInfo> {
    let access = match bits & 0x3 {
        0 => MemoryAccessType::Read,
        1 => MemoryAccessType::Write,
        2 => MemoryAccessType::Execute,
        _ => return None,
    };
    Some(MemoryAccessInfo {
        access,
        gpa_unmapped: bits & (1 << 2) != 0,
        gva_valid: bits & (1 << 3) != 0,
    })
}

/// Packs an [`X86Segment`]'s flags into `WHV_X64_SEGMENT_REGISTER.Attributes`
/// (type:4, S:1, DPL:2, P:1, reserved:4, AVL:1, L:1, D/B:1, G:1).
pub fn segment_attributes(seg: &X86Segment) -> u16 {
    u16::from(seg.segment_type & 0xf)
        | (u16::from(seg.s) << 4)
        | (u16::from(seg.dpl & 0x3) << 5)
        | (u16::from(seg.present) << 7)
        | (u16::from(seg.avl) << 12)
        | (u16::from(seg.l) << 13)
        | (u16::from(seg.db) << 14)
        | (u16::from(seg.g) << 15)
}

/// Builds an [`X86Segment`] from WHPX's base, limit, selector and attributes.
/// A segment that is not present is reported unusable.
pub fn segment_from_whpx(base: u64, limit: u32, selector: u16, attributes: u16) -> X86Segment {
    let present = attributes & (1 << 7) != 0;
    X86Segment {
        base,
        limit,
        selector,
        segment_type: (attributes & 0xf) as u8,
        s: attributes & (1 << 4) != 0,
        dpl: ((attributes >> 5) & 0x3) as u8,
        present,
        avl: attributes & (1 << 12) != 0,
        l: attributes & (1 << 13) != 0,
        db: attributes & (1 << 14) != 0,
        g: attributes & (1 << 15) != 0,
        unusable: !present,
    }
}

/// `WHV_INTERRUPT_CONTROL`'s first 64-bit word: type (bits 0..8),
/// destination mode (8..12), trigger mode (12..16).
pub fn interrupt_control_bits(kind: u8, logical_destination: bool, level_triggered: bool) -> u64 {
    u64::from(kind) | (u64::from(logical_destination) << 8) | (u64::from(level_triggered) << 12)
}

/// Names the `WHV_E_*` and common Win32 `HRESULT`s WHPX returns.
pub fn hresult_name(hr: i32) -> Option<&'static str> {
    Some(match hr as u32 {
        0x8037_0300 => "WHV_E_UNKNOWN_CAPABILITY",
        0x8037_0301 => "WHV_E_INSUFFICIENT_BUFFER",
        0x8037_0302 => "WHV_E_UNKNOWN_PROPERTY",
        0x8037_0303 => "WHV_E_UNSUPPORTED_HYPERVISOR_CONFIG",
        0x8037_0304 => "WHV_E_INVALID_PARTITION_CONFIG",
        0x8037_0305 => "WHV_E_GPA_RANGE_NOT_FOUND",
        0x8037_0306 => "WHV_E_VP_ALREADY_EXISTS",
        0x8037_0307 => "WHV_E_VP_DOES_NOT_EXIST",
        0x8037_0308 => "WHV_E_INVALID_VP_STATE",
        0x8037_0309 => "WHV_E_INVALID_VP_REGISTER_NAME",
        0x8037_0310 => "WHV_E_UNSUPPORTED_PROCESSOR_CONFIG",
        0x8007_0005 => "E_ACCESSDENIED",
        0x8007_000e => "E_OUTOFMEMORY",
        0x8007_0057 => "E_INVALIDARG",
        0x8000_4005 => "E_FAIL",
        0x8007_007e => "ERROR_MOD_NOT_FOUND (WinHvPlatform.dll missing)",
        _ => return None,
    })
}

/// A readable description of an `HRESULT`: its name when known, and the hex code.
pub fn describe_hresult(hr: i32) -> String {
    match hresult_name(hr) {
        Some(name) => format!("{name} ({:#010x})", hr as u32),
        None => format!("HRESULT {:#010x}", hr as u32),
    }
}

/// The CPUID leaves `template` edits, sorted and unique: the partition's
/// `CpuidExitList`, so only those leaves trap to the VMM.
pub fn cpuid_exit_leaves(template: &CpuTemplate) -> Vec<u32> {
    let mut leaves: Vec<u32> = template.edits.iter().map(|e| e.leaf).collect();
    leaves.sort_unstable();
    leaves.dedup();
    leaves
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_exit_list_covers_each_edited_leaf_once() {
        let template = CpuTemplate::conservative();
        let leaves = cpuid_exit_leaves(&template);
        assert!(leaves.windows(2).all(|w| w[0] < w[1]), "{leaves:?}");
        for edit in template.edits.iter() {
            assert!(leaves.contains(&edit.leaf), "leaf {:#x} missing", edit.leaf);
        }
        assert!(leaves.contains(&1), "the default edits touch leaf 1");
        let empty = CpuTemplate {
            name: "none".into(),
            edits: Vec::new().into(),
        };
        assert!(cpuid_exit_leaves(&empty).is_empty());
    }

    #[test]
    fn exit_reasons_are_named() {
        assert_eq!(exit_reason_name(2), "WHvRunVpExitReasonX64IoPortAccess");
        assert_eq!(exit_reason_name(0x2001), "WHvRunVpExitReasonCanceled");
        assert_eq!(exit_reason_name(8), "WHvRunVpExitReasonX64Halt");
        assert_eq!(exit_reason_name(77), "WHvRunVpExitReason(unknown)");
    }

    #[test]
    fn io_port_info_bits() {
        // write, 2 bytes, string, rep
        let info = io_port_access_info(1 | (2 << 1) | (1 << 4) | (1 << 5)).unwrap();
        assert_eq!(
            info,
            IoPortAccessInfo {
                write: true,
                size: 2,
                string: true,
                rep: true
            }
        );
        let read = io_port_access_info(4 << 1).unwrap();
        assert!(!read.write && read.size == 4 && !read.string);
        assert!(io_port_access_info(3 << 1).is_none(), "size 3 is invalid");
        assert!(io_port_access_info(0).is_none());
    }

    #[test]
    fn memory_access_info_bits() {
        let info = memory_access_info(1 | (1 << 2) | (1 << 3)).unwrap();
        assert_eq!(info.access, MemoryAccessType::Write);
        assert!(info.gpa_unmapped && info.gva_valid);
        assert_eq!(
            memory_access_info(2).unwrap().access,
            MemoryAccessType::Execute
        );
        assert!(memory_access_info(3).is_none());
    }

    #[test]
    fn execution_state_and_instruction_length() {
        let state = execution_state(0x3 | (1 << 2) | (1 << 4));
        assert_eq!(state.cpl, 3);
        assert!(state.protected_mode && state.long_mode_active && !state.interruption_pending);
        assert_eq!(instruction_length(0xa2), 2);
    }

    #[test]
    fn segment_attributes_round_trip() {
        // A flat 64-bit code segment: type 0xb, S, P, L, G.
        let code = X86Segment {
            base: 0,
            limit: u32::MAX,
            selector: 8,
            segment_type: 0xb,
            present: true,
            dpl: 0,
            db: false,
            s: true,
            l: true,
            g: true,
            avl: false,
            unusable: false,
        };
        let attrs = segment_attributes(&code);
        assert_eq!(attrs, 0xa09b);
        let back = segment_from_whpx(code.base, code.limit, code.selector, attrs);
        assert_eq!(back, code);
        let absent = segment_from_whpx(0, 0, 0, 0);
        assert!(absent.unusable && !absent.present);
    }

    #[test]
    fn hresults_are_described() {
        assert_eq!(
            describe_hresult(0x8037_0306_u32 as i32),
            "WHV_E_VP_ALREADY_EXISTS (0x80370306)"
        );
        assert_eq!(describe_hresult(0x1234), "HRESULT 0x00001234");
        assert_eq!(interrupt_control_bits(0, false, true), 1 << 12);
    }
}
