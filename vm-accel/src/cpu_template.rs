//! CPU templates: data-driven CPUID edits applied on top of what the
//! hypervisor supports, so a guest sees a CPU model the host can really run.
//!
//! The conservative template hides features a nested paravirtual KVM (such as
//! kvm_pvm) cannot emulate when it traps them (`cmpxchg16b`, `xsave`/`xrstor`,
//! AVX, ...). A template is what the VMM asks for: on those hosts
//! the nested KVM accepts the masked `KVM_SET_CPUID2` yet still shows the
//! guest some masked bits (XSAVE, POPCNT, AVX, SMAP were seen; CX16 is hidden),
//! so a Linux guest there also needs `clearcpuid=`/`noxsave` on its command line.

use std::borrow::Cow;

/// A CPUID output register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuidRegister {
    /// EAX.
    Eax,
    /// EBX.
    Ebx,
    /// ECX.
    Ecx,
    /// EDX.
    Edx,
}

/// One edit: in `leaf` (and `subleaf`, or every subleaf when `None`), clear
/// the bits of `clear`, then set the bits of `set`, in `register`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidEdit {
    /// What the edit is for (e.g. `"CX16"`), for logs.
    pub name: &'static str,
    /// CPUID function (EAX input).
    pub leaf: u32,
    /// CPUID index (ECX input), or all.
    pub subleaf: Option<u32>,
    /// The output register edited.
    pub register: CpuidRegister,
    /// Bits forced to 0.
    pub clear: u32,
    /// Bits forced to 1.
    pub set: u32,
}

const fn clear(
    name: &'static str,
    leaf: u32,
    subleaf: u32,
    register: CpuidRegister,
    bits: u32,
) -> CpuidEdit {
    CpuidEdit {
        name,
        leaf,
        subleaf: Some(subleaf),
        register,
        clear: bits,
        set: 0,
    }
}

const HYPERVISOR_BIT: CpuidEdit = CpuidEdit {
    name: "HYPERVISOR",
    leaf: 1,
    subleaf: None,
    register: CpuidRegister::Ecx,
    clear: 0,
    set: 1 << 31,
};

const DEFAULT_EDITS: &[CpuidEdit] = &[
    HYPERVISOR_BIT,
    // No nested virtualisation or SMX for guests.
    clear("VMX", 1, 0, CpuidRegister::Ecx, 1 << 5),
    clear("SMX", 1, 0, CpuidRegister::Ecx, 1 << 6),
];

const fn whole_register(name: &'static str, leaf: u32, register: CpuidRegister) -> CpuidEdit {
    CpuidEdit {
        name,
        leaf,
        subleaf: None,
        register,
        clear: u32::MAX,
        set: 0,
    }
}

const fn all_regs(name: &'static str, leaf: u32) -> [CpuidEdit; 4] {
    [
        whole_register(name, leaf, CpuidRegister::Eax),
        whole_register(name, leaf, CpuidRegister::Ebx),
        whole_register(name, leaf, CpuidRegister::Ecx),
        whole_register(name, leaf, CpuidRegister::Edx),
    ]
}

const XSAVE_LEAF: [CpuidEdit; 4] = all_regs("XSAVE state leaf", 0xd);

const CONSERVATIVE_EDITS: &[CpuidEdit] = &[
    HYPERVISOR_BIT,
    clear("VMX", 1, 0, CpuidRegister::Ecx, 1 << 5),
    clear("SMX", 1, 0, CpuidRegister::Ecx, 1 << 6),
    clear("CX16", 1, 0, CpuidRegister::Ecx, 1 << 13),
    clear("PCID", 1, 0, CpuidRegister::Ecx, 1 << 17),
    clear("POPCNT", 1, 0, CpuidRegister::Ecx, 1 << 23),
    clear("XSAVE", 1, 0, CpuidRegister::Ecx, 1 << 26),
    clear("OSXSAVE", 1, 0, CpuidRegister::Ecx, 1 << 27),
    clear("AVX", 1, 0, CpuidRegister::Ecx, 1 << 28),
    clear("F16C", 1, 0, CpuidRegister::Ecx, 1 << 29),
    clear("FMA", 1, 0, CpuidRegister::Ecx, 1 << 12),
    clear("MOVBE", 1, 0, CpuidRegister::Ecx, 1 << 22),
    // Leaf 7: AVX2, AVX-512*, SMAP, INVPCID, RTM/HLE, MPX; UMIP, PKU, AVX-512 VBMI/VNNI, ...
    clear(
        "leaf7 ebx: HLE AVX2 INVPCID RTM MPX AVX512 SMAP",
        7,
        0,
        CpuidRegister::Ebx,
        (1 << 4)
            | (1 << 5)
            | (1 << 10)
            | (1 << 11)
            | (1 << 14)
            | (1 << 16)
            | (1 << 17)
            | (1 << 20)
            | (1 << 21)
            | (1 << 26)
            | (1 << 27)
            | (1 << 28)
            | (1 << 30)
            | (1 << 31),
    ),
    clear(
        "leaf7 ecx: AVX512VBMI UMIP PKU OSPKE VAES VPCLMULQDQ AVX512*",
        7,
        0,
        CpuidRegister::Ecx,
        (1 << 1)
            | (1 << 2)
            | (1 << 3)
            | (1 << 4)
            | (1 << 6)
            | (1 << 9)
            | (1 << 10)
            | (1 << 11)
            | (1 << 12)
            | (1 << 14),
    ),
    clear(
        "leaf7 edx: AVX512 4VNNIW/4FMAPS, AMX",
        7,
        0,
        CpuidRegister::Edx,
        (1 << 2) | (1 << 3) | (1 << 22) | (1 << 24) | (1 << 25),
    ),
    XSAVE_LEAF[0],
    XSAVE_LEAF[1],
    XSAVE_LEAF[2],
    XSAVE_LEAF[3],
];

/// A named CPU model: the CPUID edits applied to the hypervisor-supported CPUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuTemplate {
    /// Template name (`"default"`, `"conservative"`, or a user's).
    pub name: Cow<'static, str>,
    /// The edits, applied in order.
    pub edits: Cow<'static, [CpuidEdit]>,
}

impl Default for CpuTemplate {
    fn default() -> Self {
        Self::host_default()
    }
}

impl CpuTemplate {
    /// What the hypervisor supports, with the hypervisor bit set and VMX/SMX hidden.
    pub const fn host_default() -> Self {
        Self {
            name: Cow::Borrowed("default"),
            edits: Cow::Borrowed(DEFAULT_EDITS),
        }
    }

    /// Hides features nested/emulating hypervisors often cannot emulate when they
    /// trap: CX16, XSAVE (and leaf 0xD), AVX/AVX2/AVX-512, POPCNT, MOVBE, SMAP, UMIP, PKU, ...
    pub const fn conservative() -> Self {
        Self {
            name: Cow::Borrowed("conservative"),
            edits: Cow::Borrowed(CONSERVATIVE_EDITS),
        }
    }

    /// A built-in template by name.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "default" => Some(Self::host_default()),
            "conservative" => Some(Self::conservative()),
            _ => None,
        }
    }

    /// Applies the edits that match `leaf`/`subleaf` to `regs` (`[eax, ebx, ecx, edx]`).
    pub fn apply(&self, leaf: u32, subleaf: u32, regs: &mut [u32; 4]) {
        for edit in self.edits.iter() {
            if edit.leaf != leaf || edit.subleaf.is_some_and(|s| s != subleaf) {
                continue;
            }
            let reg = &mut regs[match edit.register {
                CpuidRegister::Eax => 0,
                CpuidRegister::Ebx => 1,
                CpuidRegister::Ecx => 2,
                CpuidRegister::Edx => 3,
            }];
            *reg = (*reg & !edit.clear) | edit.set;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conservative_hides_cx16_and_xsave_default_keeps_them() {
        let host = [0, 0, (1 << 13) | (1 << 26) | (1 << 0), 0];
        let mut regs = host;
        CpuTemplate::conservative().apply(1, 0, &mut regs);
        assert_eq!(regs[2] & (1 << 13), 0, "CX16 hidden");
        assert_eq!(regs[2] & (1 << 26), 0, "XSAVE hidden");
        assert_eq!(regs[2] & 1, 1, "SSE3 kept");
        assert_ne!(regs[2] & (1 << 31), 0, "hypervisor bit set");
        let mut regs = host;
        CpuTemplate::host_default().apply(1, 0, &mut regs);
        assert_ne!(regs[2] & (1 << 13), 0);
        assert_ne!(regs[2] & (1 << 26), 0);
    }

    #[test]
    fn subleaf_wildcard_clears_every_xsave_subleaf() {
        for subleaf in [0, 1, 2, 9] {
            let mut regs = [0xffff_ffff; 4];
            CpuTemplate::conservative().apply(0xd, subleaf, &mut regs);
            assert_eq!(regs, [0; 4]);
        }
        let mut regs = [0xffff_ffff; 4];
        CpuTemplate::conservative().apply(0x8000_0001, 0, &mut regs);
        assert_eq!(regs, [0xffff_ffff; 4], "unrelated leaf untouched");
    }

    #[test]
    fn templates_by_name() {
        assert_eq!(
            CpuTemplate::by_name("conservative"),
            Some(CpuTemplate::conservative())
        );
        assert_eq!(
            CpuTemplate::by_name("default"),
            Some(CpuTemplate::default())
        );
        assert!(CpuTemplate::by_name("skylake").is_none());
    }
}
