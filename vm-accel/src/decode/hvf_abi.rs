//! Hypervisor.framework (Apple silicon) ABI as plain data: `hv_return_t`
//! codes with what they mean for a user, exit reasons, and the `hv_reg_t`
//! numbers of the core registers. The values are those of the macOS SDK
//! headers (`hv_error.h`, `hv_vcpu_types.h`); tested on any host.

/// `hv_return_t` values.
pub mod status {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// Unspecified error.
    pub const ERROR: i32 = 0xfae9_4001_u32 as i32;
    /// The resource is busy (e.g. a VM already exists in this process).
    pub const BUSY: i32 = 0xfae9_4002_u32 as i32;
    /// An argument was invalid.
    pub const BAD_ARGUMENT: i32 = 0xfae9_4003_u32 as i32;
    /// The guest state is illegal.
    pub const ILLEGAL_GUEST_STATE: i32 = 0xfae9_4004_u32 as i32;
    /// Out of resources.
    pub const NO_RESOURCES: i32 = 0xfae9_4005_u32 as i32;
    /// No VM or vCPU available (or the hardware lacks virtualisation).
    pub const NO_DEVICE: i32 = 0xfae9_4006_u32 as i32;
    /// Denied: usually the `com.apple.security.hypervisor` entitlement is missing.
    pub const DENIED: i32 = 0xfae9_4007_u32 as i32;
    /// Fault.
    pub const FAULT: i32 = 0xfae9_4008_u32 as i32;
    /// Unsupported operation.
    pub const UNSUPPORTED: i32 = 0xfae9_400f_u32 as i32;
}

/// The SDK name of an `hv_return_t`.
pub fn status_name(code: i32) -> &'static str {
    match code {
        status::SUCCESS => "HV_SUCCESS",
        status::ERROR => "HV_ERROR",
        status::BUSY => "HV_BUSY",
        status::BAD_ARGUMENT => "HV_BAD_ARGUMENT",
        status::ILLEGAL_GUEST_STATE => "HV_ILLEGAL_GUEST_STATE",
        status::NO_RESOURCES => "HV_NO_RESOURCES",
        status::NO_DEVICE => "HV_NO_DEVICE",
        status::DENIED => "HV_DENIED",
        status::FAULT => "HV_FAULT",
        status::UNSUPPORTED => "HV_UNSUPPORTED",
        _ => "hv_return_t(unknown)",
    }
}

/// The text of an `hv_return_t` error, with a hint for the common causes.
pub fn describe_status(code: i32) -> String {
    let hint = match code {
        status::DENIED => {
            ": the process lacks the com.apple.security.hypervisor entitlement \
             (sign the binary: codesign --sign - --entitlements hvf.entitlements --force <binary>)"
        }
        status::NO_DEVICE => {
            ": this Mac or VM offers no hardware virtualisation to Hypervisor.framework"
        }
        status::BUSY => ": a VM already exists in this process (Hypervisor.framework allows one)",
        _ => "",
    };
    format!("{} ({:#010x}){hint}", status_name(code), code as u32)
}

/// `hv_exit_reason_t` values.
pub mod exit_reason {
    /// `hv_vcpus_exit` was called for the vCPU.
    pub const CANCELED: u32 = 0;
    /// A synchronous exception to EL2: see the syndrome.
    pub const EXCEPTION: u32 = 1;
    /// The virtual timer fired; it stays masked until the VMM unmasks it.
    pub const VTIMER_ACTIVATED: u32 = 2;
    /// An unexpected exit.
    pub const UNKNOWN: u32 = 3;
}

/// The SDK name of an exit reason.
pub fn exit_reason_name(reason: u32) -> &'static str {
    match reason {
        exit_reason::CANCELED => "HV_EXIT_REASON_CANCELED",
        exit_reason::EXCEPTION => "HV_EXIT_REASON_EXCEPTION",
        exit_reason::VTIMER_ACTIVATED => "HV_EXIT_REASON_VTIMER_ACTIVATED",
        exit_reason::UNKNOWN => "HV_EXIT_REASON_UNKNOWN",
        _ => "HV_EXIT_REASON(unknown)",
    }
}

/// `hv_reg_t` numbers: `HV_REG_X0 + n` for X0..X30, then these.
pub mod reg {
    /// `HV_REG_X0`.
    pub const X0: u32 = 0;
    /// `HV_REG_PC`.
    pub const PC: u32 = 31;
    /// `HV_REG_FPCR`.
    pub const FPCR: u32 = 32;
    /// `HV_REG_FPSR`.
    pub const FPSR: u32 = 33;
    /// `HV_REG_CPSR` (PSTATE).
    pub const CPSR: u32 = 34;
}

/// `hv_memory_flags_t` bits.
pub mod memory_flags {
    /// Readable.
    pub const READ: u64 = 1 << 0;
    /// Writable.
    pub const WRITE: u64 = 1 << 1;
    /// Executable.
    pub const EXEC: u64 = 1 << 2;
}

/// `hv_interrupt_type_t::HV_INTERRUPT_TYPE_IRQ`.
pub const INTERRUPT_IRQ: u32 = 0;

/// PSTATE for entering a kernel at EL1h with D, A, I and F masked.
pub const PSTATE_EL1H_MASKED: u64 = 0x3c5;

/// INTID of the EL1 virtual timer PPI (as device trees describe it: PPI 11).
pub const VTIMER_INTID: u32 = 27;

/// First SPI INTID: `IrqLine(n)` is INTID `n + 32`.
pub const SPI_BASE: u32 = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_named_with_hints() {
        let denied = describe_status(status::DENIED);
        assert!(denied.starts_with("HV_DENIED (0xfae94007)"), "{denied}");
        assert!(denied.contains("com.apple.security.hypervisor"), "{denied}");
        assert_eq!(
            describe_status(status::BAD_ARGUMENT),
            "HV_BAD_ARGUMENT (0xfae94003)"
        );
        assert_eq!(status_name(12345), "hv_return_t(unknown)");
    }

    #[test]
    fn exit_reasons_are_named() {
        assert_eq!(exit_reason_name(0), "HV_EXIT_REASON_CANCELED");
        assert_eq!(exit_reason_name(2), "HV_EXIT_REASON_VTIMER_ACTIVATED");
        assert_eq!(exit_reason_name(9), "HV_EXIT_REASON(unknown)");
    }
}
