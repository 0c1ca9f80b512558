//! Guest CPUID: `KVM_GET_SUPPORTED_CPUID` filtered through a [`CpuTemplate`],
//! then per-vCPU topology fields (APIC ids).

use crate::cpu_template::CpuTemplate;
use crate::error::AccelError;
use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_MAX_CPUID_ENTRIES};

/// The VM-wide CPUID: supported by KVM, edited by the template.
pub(super) fn vm_cpuid(kvm: &kvm_ioctls::Kvm, template: &CpuTemplate) -> Result<CpuId, AccelError> {
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| AccelError::hypervisor("KVM_GET_SUPPORTED_CPUID", e))?;
    for entry in cpuid.as_mut_slice() {
        apply_template(template, entry);
    }
    Ok(cpuid)
}

fn apply_template(template: &CpuTemplate, entry: &mut kvm_cpuid_entry2) {
    let mut regs = [entry.eax, entry.ebx, entry.ecx, entry.edx];
    template.apply(entry.function, entry.index, &mut regs);
    [entry.eax, entry.ebx, entry.ecx, entry.edx] = regs;
}

/// Leaf 1 EBX[31:24]: initial APIC id.
const LEAF1_APIC_ID_SHIFT: u32 = 24;

/// Per-vCPU CPUID: the VM's with this vCPU's APIC id in leaves 1, 0xB and 0x1F.
pub(super) fn vcpu_cpuid(vm_cpuid: &CpuId, apic_id: u32) -> CpuId {
    let mut cpuid = vm_cpuid.clone();
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            1 => {
                entry.ebx = (entry.ebx & 0x00ff_ffff) | ((apic_id & 0xff) << LEAF1_APIC_ID_SHIFT);
            }
            0xb | 0x1f => entry.edx = apic_id,
            _ => {}
        }
    }
    cpuid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: regs[0],
            ebx: regs[1],
            ecx: regs[2],
            edx: regs[3],
            ..kvm_cpuid_entry2::default()
        }
    }

    #[test]
    fn conservative_template_filters_the_supported_cpuid() {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            test_prerequisites::prerequisite_missing("/dev/kvm cannot be opened");
            return;
        };
        let cpuid = vm_cpuid(&kvm, &CpuTemplate::conservative()).unwrap();
        let find = |function: u32, index: u32| {
            cpuid
                .as_slice()
                .iter()
                .find(|e| e.function == function && e.index == index)
                .copied()
        };
        let leaf1 = find(1, 0).expect("leaf 1");
        for bit in [13, 23, 26, 27, 28] {
            assert_eq!(leaf1.ecx & (1 << bit), 0, "leaf 1 ecx bit {bit}");
        }
        assert_ne!(leaf1.ecx & (1 << 31), 0, "hypervisor bit");
        for e in cpuid.as_slice().iter().filter(|e| e.function == 0xd) {
            assert_eq!([e.eax, e.ebx, e.ecx, e.edx], [0; 4], "leaf 0xd.{}", e.index);
        }
        if let Some(leaf7) = find(7, 0) {
            assert_eq!(leaf7.ebx & (1 << 20), 0, "SMAP");
        }
    }

    #[test]
    fn template_edits_and_apic_ids_land_in_the_entries() {
        let mut e = entry(1, 0, [0, 0x00ab_cdef, 1 << 13, 0]);
        apply_template(&CpuTemplate::conservative(), &mut e);
        assert_eq!(e.ecx & (1 << 13), 0);
        let cpuid = CpuId::from_entries(&[e, entry(0xb, 0, [0; 4])]).unwrap();
        let v = vcpu_cpuid(&cpuid, 3);
        assert_eq!(v.as_slice()[0].ebx, 0x03ab_cdef);
        assert_eq!(v.as_slice()[1].edx, 3);
    }
}
