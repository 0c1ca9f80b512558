//! `KvmVm`: memory slots, interrupt lines, irqfd/ioeventfd and vCPU creation.

use super::{arch, vcpu::KvmVcpu};
use crate::error::AccelError;
use crate::memory::MemorySlots;
use crate::notifier::EventNotifier;
use crate::regs::GuestArch;
use crate::state::VmState;
use crate::vcpu::{Vcpu, VcpuId};
use crate::vm::{IoEventAddress, IoEventMatch, IrqLine, Vm, VmOptions};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{NoDatamatch, VmFd};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap};

/// Memory book-keeping: validated slots and the regions they keep alive.
#[derive(Debug)]
struct SlotState {
    table: MemorySlots,
    regions: BTreeMap<u32, Arc<GuestRegionMmap>>,
}

/// What a VM's vCPUs share with it.
#[derive(Debug)]
pub(super) struct VmShared {
    pub(super) fd: VmFd,
    /// One past the highest vCPU id creatable.
    pub(super) vcpu_limit: u32,
    pub(super) run_size: usize,
    // riscv64 keeps no VM-wide state yet; the field is shared by every arch.
    #[cfg_attr(target_arch = "riscv64", allow(dead_code))]
    pub(super) arch: arch::VmArch,
    slots: Mutex<SlotState>,
    /// All mapped regions as one `GuestMemoryMmap` (None when empty), for
    /// backend accesses: boot tables, instruction fetch on internal errors.
    memory: RwLock<Option<GuestMemoryMmap>>,
    created: Mutex<BTreeSet<u32>>,
}

impl VmShared {
    /// A snapshot of the mapped guest memory.
    pub(super) fn memory(&self) -> Option<GuestMemoryMmap> {
        self.memory
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads `len` bytes of guest-physical memory, if mapped.
    pub(super) fn read_phys(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        use vm_memory::Bytes;
        let memory = self.memory()?;
        let mut bytes = vec![0u8; len];
        memory.read_slice(&mut bytes, GuestAddress(addr)).ok()?;
        Some(bytes)
    }

    fn slots(&self) -> MutexGuard<'_, SlotState> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refresh_memory(&self, state: &SlotState) {
        let mut regions: Vec<_> = state.regions.values().cloned().collect();
        regions.sort_by_key(|r| r.start_addr());
        let memory = GuestMemoryMmap::from_arc_regions(regions).ok();
        *self.memory.write().unwrap_or_else(PoisonError::into_inner) = memory;
    }
}

/// A KVM virtual machine.
#[derive(Debug)]
pub struct KvmVm {
    shared: Arc<VmShared>,
}

impl KvmVm {
    pub(super) fn new(
        kvm: &kvm_ioctls::Kvm,
        config: &VmOptions,
        max_vcpus: u32,
    ) -> Result<Self, AccelError> {
        if config.vcpu_count == 0 || config.vcpu_count > max_vcpus {
            return Err(AccelError::InvalidConfig {
                reason: format!(
                    "vcpu_count {} is outside 1..={max_vcpus} (KVM_CAP_MAX_VCPUS)",
                    config.vcpu_count
                ),
            });
        }
        let fd = kvm
            .create_vm()
            .map_err(|e| AccelError::hypervisor("KVM_CREATE_VM", e))?;
        let vm_arch = arch::VmArch::new(kvm, &fd, config)?;
        let max_id = u32::try_from(kvm.get_max_vcpu_id()).unwrap_or(u32::MAX);
        let page_size = super::host_page_size();
        let max_slots = u32::try_from(kvm.get_nr_memslots()).unwrap_or(u32::MAX);
        tracing::debug!(
            vcpus = config.vcpu_count,
            max_slots,
            template = %config.cpu_template.name,
            "KVM VM created"
        );
        Ok(Self {
            shared: Arc::new(VmShared {
                run_size: fd.run_size(),
                fd,
                vcpu_limit: config.vcpu_count.min(max_id),
                arch: vm_arch,
                slots: Mutex::new(SlotState {
                    table: MemorySlots::new(max_slots, page_size),
                    regions: BTreeMap::new(),
                }),
                memory: RwLock::new(None),
                created: Mutex::new(BTreeSet::new()),
            }),
        })
    }

    /// The VM file descriptor, for KVM features this crate does not wrap.
    pub fn vm_fd(&self) -> &VmFd {
        &self.shared.fd
    }

    fn set_slot(
        &self,
        slot: u32,
        guest_addr: u64,
        size: u64,
        host_addr: u64,
    ) -> Result<(), AccelError> {
        let region = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: guest_addr,
            memory_size: size,
            userspace_addr: host_addr,
        };
        // SAFETY: for a non-zero size, [host_addr, host_addr + size) is the mapping of
        // a `GuestRegionMmap` whose `Arc` is stored in `SlotState::regions` until this
        // slot is deleted (size 0), so the memory outlives its use by the guest.
        unsafe { self.shared.fd.set_user_memory_region(region) }
            .map_err(|e| AccelError::hypervisor("KVM_SET_USER_MEMORY_REGION", e))
    }
}

fn datamatch_register(
    fd: &VmFd,
    notifier: &EventNotifier,
    addr: &kvm_ioctls::IoEventAddress,
    matching: IoEventMatch,
    register: bool,
) -> Result<(), kvm_ioctls::Error> {
    let evt = notifier.as_event_fd();
    macro_rules! call {
        ($m:expr) => {
            if register {
                fd.register_ioevent(evt, addr, $m)
            } else {
                fd.unregister_ioevent(evt, addr, $m)
            }
        };
    }
    match matching {
        IoEventMatch::Any => call!(NoDatamatch),
        IoEventMatch::U8(v) => call!(v),
        IoEventMatch::U16(v) => call!(v),
        IoEventMatch::U32(v) => call!(v),
        IoEventMatch::U64(v) => call!(v),
    }
}

fn kvm_io_address(addr: IoEventAddress) -> kvm_ioctls::IoEventAddress {
    match addr {
        IoEventAddress::Pio(port) => kvm_ioctls::IoEventAddress::Pio(u64::from(port)),
        IoEventAddress::Mmio(gpa) => kvm_ioctls::IoEventAddress::Mmio(gpa),
    }
}

impl Vm for KvmVm {
    fn arch(&self) -> GuestArch {
        arch::GUEST_ARCH
    }

    fn map_region(&self, region: Arc<GuestRegionMmap>) -> Result<(), AccelError> {
        let guest_addr = region.start_addr().0;
        let size = region.len();
        let host_addr = region.as_ptr() as u64;
        let mut state = self.shared.slots();
        let slot = state.table.insert(guest_addr, size, host_addr)?;
        if let Err(e) = self.set_slot(slot.slot, guest_addr, size, host_addr) {
            let _ = state.table.remove(guest_addr);
            return Err(e);
        }
        state.regions.insert(slot.slot, region);
        self.shared.refresh_memory(&state);
        tracing::debug!(slot = slot.slot, guest_addr, size, "memory region mapped");
        Ok(())
    }

    fn unmap_region(&self, guest_addr: GuestAddress) -> Result<(), AccelError> {
        let mut state = self.shared.slots();
        let slot = *state
            .table
            .iter()
            .find(|s| s.guest_addr == guest_addr.0)
            .ok_or(AccelError::RegionNotMapped { addr: guest_addr.0 })?;
        self.set_slot(slot.slot, slot.guest_addr, 0, slot.host_addr)?;
        state.table.remove(guest_addr.0)?;
        state.regions.remove(&slot.slot);
        self.shared.refresh_memory(&state);
        Ok(())
    }

    fn create_vcpu(&self, id: VcpuId) -> Result<Box<dyn Vcpu>, AccelError> {
        Ok(Box::new(self.create_kvm_vcpu(id)?))
    }

    fn set_irq_line(&self, irq: IrqLine, active: bool) -> Result<(), AccelError> {
        self.shared
            .fd
            .set_irq_line(arch::irq_line_number(irq), active)
            .map_err(|e| AccelError::hypervisor("KVM_IRQ_LINE", e))
    }

    fn register_irqfd(&self, notifier: &EventNotifier, irq: IrqLine) -> Result<(), AccelError> {
        self.shared
            .fd
            .register_irqfd(notifier.as_event_fd(), irq.0)
            .map_err(|e| AccelError::hypervisor("KVM_IRQFD", e))
    }

    fn unregister_irqfd(&self, notifier: &EventNotifier, irq: IrqLine) -> Result<(), AccelError> {
        self.shared
            .fd
            .unregister_irqfd(notifier.as_event_fd(), irq.0)
            .map_err(|e| AccelError::hypervisor("KVM_IRQFD (deassign)", e))
    }

    fn register_ioeventfd(
        &self,
        notifier: &EventNotifier,
        addr: IoEventAddress,
        matching: IoEventMatch,
    ) -> Result<(), AccelError> {
        datamatch_register(
            &self.shared.fd,
            notifier,
            &kvm_io_address(addr),
            matching,
            true,
        )
        .map_err(|e| AccelError::hypervisor("KVM_IOEVENTFD", e))
    }

    fn unregister_ioeventfd(
        &self,
        notifier: &EventNotifier,
        addr: IoEventAddress,
        matching: IoEventMatch,
    ) -> Result<(), AccelError> {
        datamatch_register(
            &self.shared.fd,
            notifier,
            &kvm_io_address(addr),
            matching,
            false,
        )
        .map_err(|e| AccelError::hypervisor("KVM_IOEVENTFD (deassign)", e))
    }

    fn save_state(&self) -> Result<VmState, AccelError> {
        arch::save_vm_state(&self.shared)
    }

    fn restore_state(&self, state: &VmState) -> Result<(), AccelError> {
        arch::restore_vm_state(&self.shared, state)
    }
}

impl KvmVm {
    /// Creates vCPU `id` as the concrete KVM type (see [`Vm::create_vcpu`]).
    pub fn create_kvm_vcpu(&self, id: VcpuId) -> Result<KvmVcpu, AccelError> {
        if id.0 >= self.shared.vcpu_limit {
            return Err(AccelError::VcpuIdOutOfRange {
                id: id.0,
                limit: self.shared.vcpu_limit,
            });
        }
        let mut created = self
            .shared
            .created
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if created.contains(&id.0) {
            return Err(AccelError::VcpuExists { id: id.0 });
        }
        let vcpu = KvmVcpu::new(Arc::clone(&self.shared), id)?;
        created.insert(id.0);
        Ok(vcpu)
    }
}
