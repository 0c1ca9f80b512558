//! x86-64 register state: general registers and the special (system) registers.

/// x86-64 general-purpose registers, RIP and RFLAGS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)] // The field names are the architectural register names.
pub struct X86_64Registers {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

/// A segment register with its hidden descriptor cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct X86Segment {
    /// Base address.
    pub base: u64,
    /// Limit in bytes (already scaled by granularity).
    pub limit: u32,
    /// Selector.
    pub selector: u16,
    /// Descriptor type (4 bits).
    pub segment_type: u8,
    /// Present.
    pub present: bool,
    /// Descriptor privilege level (0..=3).
    pub dpl: u8,
    /// Default operation size (32-bit when set).
    pub db: bool,
    /// Code/data (true) or system (false) descriptor.
    pub s: bool,
    /// 64-bit code segment.
    pub l: bool,
    /// Granularity (limit in 4 KiB units when set).
    pub g: bool,
    /// Available for software.
    pub avl: bool,
    /// The register holds no usable segment.
    pub unusable: bool,
}

/// A descriptor-table register (GDTR, IDTR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct X86DescriptorTable {
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes, minus one.
    pub limit: u16,
}

/// x86-64 system registers: segments, descriptor tables, control registers, EFER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)] // The field names are the architectural register names.
pub struct X86_64SpecialRegisters {
    pub cs: X86Segment,
    pub ds: X86Segment,
    pub es: X86Segment,
    pub fs: X86Segment,
    pub gs: X86Segment,
    pub ss: X86Segment,
    pub tr: X86Segment,
    pub ldt: X86Segment,
    pub gdt: X86DescriptorTable,
    pub idt: X86DescriptorTable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub apic_base: u64,
}
