//! `WhpxVm`: a WHPX partition — properties, GPA mapping, ioevents, interrupt
//! requests and virtual-processor creation.

use super::api::{self, Api};
use super::vcpu::WhpxVcpu;
use crate::cpu_template::CpuTemplate;
use crate::decode::whpx_abi::{cpuid_exit_leaves, describe_hresult, interrupt_control_bits};
use crate::error::AccelError;
use crate::ioevent_table::IoEventTable;
use crate::memory::MemorySlots;
use crate::notifier::EventNotifier;
use crate::regs::GuestArch;
use crate::vcpu::{Vcpu, VcpuId};
use crate::vm::{IoEventAddress, IoEventMatch, IrqLine, Vm, VmOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::c_void;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap};
use windows_sys::Win32::System::Hypervisor::{
    WHvMapGpaRangeFlagExecute, WHvMapGpaRangeFlagRead, WHvMapGpaRangeFlagWrite,
    WHvPartitionPropertyCodeCpuidExitList, WHvPartitionPropertyCodeExtendedVmExits,
    WHvPartitionPropertyCodeLocalApicEmulationMode, WHvPartitionPropertyCodeProcessorCount,
    WHvX64InterruptTypeFixed, WHvX64LocalApicEmulationModeXApic, WHV_INTERRUPT_CONTROL,
    WHV_PARTITION_HANDLE,
};

/// `WHV_EXTENDED_VM_EXITS.X64CpuidExit`.
const EXTENDED_EXIT_CPUID: u64 = 1 << 0;
/// Bound on the mapped-region table (WHPX has no slot limit).
const MAX_REGIONS: u32 = 1024;
const PAGE_SIZE: u64 = 4096;

#[derive(Debug)]
struct Regions {
    table: MemorySlots,
    keep_alive: BTreeMap<u64, Arc<GuestRegionMmap>>,
}

/// What a partition's virtual processors share with it; dropping the last
/// reference deletes the partition (after its processors, which hold references).
#[derive(Debug)]
pub(super) struct PartitionShared {
    pub(super) api: &'static Api,
    pub(super) handle: WHV_PARTITION_HANDLE,
    pub(super) vcpu_count: u32,
    pub(super) cpu_template: CpuTemplate,
    pub(super) ioevents: IoEventTable,
    regions: Mutex<Regions>,
    memory: RwLock<Option<GuestMemoryMmap>>,
    created: Mutex<BTreeSet<u32>>,
}

impl Drop for PartitionShared {
    fn drop(&mut self) {
        // SAFETY: no virtual processor is left (each holds an Arc to this); the
        // mapped host memory is released after, with the fields.
        let hr = unsafe { (self.api.WHvDeletePartition)(self.handle) };
        if hr < 0 {
            tracing::warn!(error = %describe_hresult(hr), "WHvDeletePartition failed");
        }
    }
}

impl PartitionShared {
    fn regions(&self) -> MutexGuard<'_, Regions> {
        self.regions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refresh_memory(&self, regions: &Regions) {
        let mut list: Vec<_> = regions.keep_alive.values().cloned().collect();
        list.sort_by_key(|r| r.start_addr());
        let memory = GuestMemoryMmap::from_arc_regions(list).ok();
        *self.memory.write().unwrap_or_else(PoisonError::into_inner) = memory;
    }

    /// A snapshot of the mapped guest memory.
    pub(super) fn memory(&self) -> Option<GuestMemoryMmap> {
        self.memory
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads guest-physical memory.
    pub(super) fn read_phys(&self, gpa: u64, buf: &mut [u8]) -> Result<(), AccelError> {
        let memory = self.memory();
        let result = memory.as_ref().map(|m| {
            m.read_slice(buf, GuestAddress(gpa))
                .map_err(|e| e.to_string())
        });
        match result {
            Some(Ok(())) => Ok(()),
            Some(Err(reason)) => Err(guest_memory_error(gpa, buf.len(), reason)),
            None => Err(guest_memory_error(
                gpa,
                buf.len(),
                "no memory is mapped".to_owned(),
            )),
        }
    }

    /// Writes guest-physical memory.
    pub(super) fn write_phys(&self, gpa: u64, buf: &[u8]) -> Result<(), AccelError> {
        let memory = self.memory();
        let result = memory.as_ref().map(|m| {
            m.write_slice(buf, GuestAddress(gpa))
                .map_err(|e| e.to_string())
        });
        match result {
            Some(Ok(())) => Ok(()),
            Some(Err(reason)) => Err(guest_memory_error(gpa, buf.len(), reason)),
            None => Err(guest_memory_error(
                gpa,
                buf.len(),
                "no memory is mapped".to_owned(),
            )),
        }
    }
}

fn guest_memory_error(addr: u64, len: usize, reason: String) -> AccelError {
    AccelError::GuestMemory {
        addr,
        len: len as u64,
        reason,
    }
}

/// A WHPX partition.
#[derive(Debug)]
pub struct WhpxVm {
    shared: Arc<PartitionShared>,
}

fn set_property<T>(
    api: &Api,
    partition: WHV_PARTITION_HANDLE,
    op: &'static str,
    code: i32,
    value: &[T],
) -> Result<(), AccelError> {
    // SAFETY: `value` is a live slice whose byte size is passed; WHPX copies it.
    api::check(op, unsafe {
        (api.WHvSetPartitionProperty)(
            partition,
            code,
            value.as_ptr().cast::<c_void>(),
            std::mem::size_of_val(value) as u32,
        )
    })
}

impl WhpxVm {
    pub(super) fn new(
        config: &VmOptions,
        max_vcpus: u32,
        apic_emulation: bool,
    ) -> Result<Self, AccelError> {
        if config.vcpu_count == 0 || config.vcpu_count > max_vcpus {
            return Err(AccelError::InvalidConfig {
                reason: format!(
                    "vcpu_count {} is outside 1..={max_vcpus}",
                    config.vcpu_count
                ),
            });
        }
        let api = api::api()?;
        let mut handle: WHV_PARTITION_HANDLE = 0;
        // SAFETY: `handle` is a valid out-pointer.
        api::check("WHvCreatePartition", unsafe {
            (api.WHvCreatePartition)(&raw mut handle)
        })?;
        // From here on, dropping `shared` deletes the partition.
        let shared = PartitionShared {
            api,
            handle,
            vcpu_count: config.vcpu_count,
            cpu_template: config.cpu_template.clone(),
            ioevents: IoEventTable::default(),
            regions: Mutex::new(Regions {
                table: MemorySlots::new(MAX_REGIONS, PAGE_SIZE),
                keep_alive: BTreeMap::new(),
            }),
            memory: RwLock::new(None),
            created: Mutex::new(BTreeSet::new()),
        };
        set_property(
            api,
            handle,
            "WHvSetPartitionProperty(ProcessorCount)",
            WHvPartitionPropertyCodeProcessorCount,
            &[config.vcpu_count],
        )?;
        if apic_emulation {
            set_property(
                api,
                handle,
                "WHvSetPartitionProperty(LocalApicEmulationMode)",
                WHvPartitionPropertyCodeLocalApicEmulationMode,
                &[WHvX64LocalApicEmulationModeXApic],
            )?;
        }
        // CPU templates are applied on CPUID exits for the leaves they edit.
        let leaves = cpuid_exit_leaves(&config.cpu_template);
        if !leaves.is_empty() {
            set_property(
                api,
                handle,
                "WHvSetPartitionProperty(ExtendedVmExits)",
                WHvPartitionPropertyCodeExtendedVmExits,
                &[EXTENDED_EXIT_CPUID],
            )?;
            set_property(
                api,
                handle,
                "WHvSetPartitionProperty(CpuidExitList)",
                WHvPartitionPropertyCodeCpuidExitList,
                &leaves,
            )?;
        }
        // SAFETY: the partition was created above and is configured.
        api::check("WHvSetupPartition", unsafe {
            (api.WHvSetupPartition)(handle)
        })?;
        tracing::debug!(
            vcpus = config.vcpu_count,
            apic_emulation,
            template = %config.cpu_template.name,
            "WHPX partition created"
        );
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Delivers interrupt `vector` to the local APIC with id `apic_id`
    /// (fixed, edge-triggered, physical destination): what a userspace
    /// IOAPIC or MSI does on WHPX. Needs the emulated local APIC.
    pub fn request_interrupt(&self, vector: u8, apic_id: u32) -> Result<(), AccelError> {
        let control = WHV_INTERRUPT_CONTROL {
            _bitfield: interrupt_control_bits(WHvX64InterruptTypeFixed as u8, false, false),
            Destination: apic_id,
            Vector: u32::from(vector),
        };
        // SAFETY: `control` is a valid WHV_INTERRUPT_CONTROL of the size passed.
        api::check("WHvRequestInterrupt", unsafe {
            (self.shared.api.WHvRequestInterrupt)(
                self.shared.handle,
                &raw const control,
                std::mem::size_of::<WHV_INTERRUPT_CONTROL>() as u32,
            )
        })
    }

    /// Creates vCPU `id` as the concrete WHPX type (see [`Vm::create_vcpu`]).
    pub fn create_whpx_vcpu(&self, id: VcpuId) -> Result<WhpxVcpu, AccelError> {
        if id.0 >= self.shared.vcpu_count {
            return Err(AccelError::VcpuIdOutOfRange {
                id: id.0,
                limit: self.shared.vcpu_count,
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
        let vcpu = WhpxVcpu::new(Arc::clone(&self.shared), id)?;
        created.insert(id.0);
        Ok(vcpu)
    }
}

impl Vm for WhpxVm {
    fn arch(&self) -> GuestArch {
        GuestArch::X86_64
    }

    fn map_region(&self, region: Arc<GuestRegionMmap>) -> Result<(), AccelError> {
        let guest_addr = region.start_addr().0;
        let size = region.len();
        let mut regions = self.shared.regions();
        regions
            .table
            .insert(guest_addr, size, region.as_ptr() as u64)?;
        // SAFETY: the host range is `region`'s mapping, kept alive in `keep_alive`
        // until unmapped from the partition (or the partition is deleted).
        let mapped = api::check("WHvMapGpaRange", unsafe {
            (self.shared.api.WHvMapGpaRange)(
                self.shared.handle,
                region.as_ptr().cast::<c_void>(),
                guest_addr,
                size,
                WHvMapGpaRangeFlagRead | WHvMapGpaRangeFlagWrite | WHvMapGpaRangeFlagExecute,
            )
        });
        if let Err(e) = mapped {
            let _ = regions.table.remove(guest_addr);
            return Err(e);
        }
        regions.keep_alive.insert(guest_addr, region);
        self.shared.refresh_memory(&regions);
        tracing::debug!(guest_addr, size, "WHPX GPA range mapped");
        Ok(())
    }

    fn unmap_region(&self, guest_addr: GuestAddress) -> Result<(), AccelError> {
        let mut regions = self.shared.regions();
        let slot = *regions
            .table
            .iter()
            .find(|s| s.guest_addr == guest_addr.0)
            .ok_or(AccelError::RegionNotMapped { addr: guest_addr.0 })?;
        // SAFETY: unmapping a range this partition mapped; host memory stays valid.
        api::check("WHvUnmapGpaRange", unsafe {
            (self.shared.api.WHvUnmapGpaRange)(self.shared.handle, slot.guest_addr, slot.size)
        })?;
        regions.table.remove(guest_addr.0)?;
        regions.keep_alive.remove(&guest_addr.0);
        self.shared.refresh_memory(&regions);
        Ok(())
    }

    fn create_vcpu(&self, id: VcpuId) -> Result<Box<dyn Vcpu>, AccelError> {
        Ok(Box::new(self.create_whpx_vcpu(id)?))
    }

    fn set_irq_line(&self, irq: IrqLine, active: bool) -> Result<(), AccelError> {
        let _ = (irq, active);
        Err(AccelError::Unsupported {
            what: "GSI interrupt lines (WHPX has no IOAPIC/PIC; route the line in a userspace \
                   IOAPIC and call WhpxVm::request_interrupt)",
            backend: "WHPX",
        })
    }

    fn register_irqfd(&self, notifier: &EventNotifier, irq: IrqLine) -> Result<(), AccelError> {
        let _ = notifier;
        self.set_irq_line(irq, true)
    }

    fn unregister_irqfd(&self, notifier: &EventNotifier, irq: IrqLine) -> Result<(), AccelError> {
        self.register_irqfd(notifier, irq)
    }

    fn register_ioeventfd(
        &self,
        notifier: &EventNotifier,
        addr: IoEventAddress,
        matching: IoEventMatch,
    ) -> Result<(), AccelError> {
        self.shared.ioevents.register(notifier, addr, matching)
    }

    fn unregister_ioeventfd(
        &self,
        _notifier: &EventNotifier,
        addr: IoEventAddress,
        matching: IoEventMatch,
    ) -> Result<(), AccelError> {
        self.shared.ioevents.unregister(addr, matching)
    }
}
