//! `HvfVm`: the process's one Hypervisor.framework VM — memory mapping,
//! the optional in-kernel GIC, ioevents, PSCI power state and vCPU creation.

use super::ffi::{self, GicApi};
use super::vcpu::HvfVcpu;
use super::{check, GIC_DISTRIBUTOR_BASE, GIC_REDISTRIBUTOR_BASE};
use crate::decode::hvf_abi::{describe_status, memory_flags, SPI_BASE};
use crate::error::AccelError;
use crate::ioevent_table::IoEventTable;
use crate::irqfd_relay::IrqfdRelay;
use crate::memory::MemorySlots;
use crate::notifier::EventNotifier;
use crate::psci::PsciPower;
use crate::regs::GuestArch;
use crate::vcpu::{Vcpu, VcpuId};
use crate::vm::{IoEventAddress, IoEventMatch, IrqLine, Vm, VmOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use vm_memory::{GuestAddress, GuestMemoryRegion, GuestRegionMmap};

/// Whether this process currently holds its (only) HVF VM.
static VM_EXISTS: AtomicBool = AtomicBool::new(false);

/// Whether a VM created by this crate is alive in this process.
pub(super) fn vm_exists() -> bool {
    VM_EXISTS.load(Ordering::SeqCst)
}

/// Upper bound on mapped regions (HVF has no slot limit; this bounds the table).
const MAX_REGIONS: u32 = 1024;

#[derive(Debug)]
struct Regions {
    table: MemorySlots,
    keep_alive: BTreeMap<u64, Arc<GuestRegionMmap>>,
}

/// What an HVF VM's vCPUs share with it. Dropping the last reference
/// destroys the VM, after every vCPU (which hold references) is gone.
#[derive(Debug)]
pub(super) struct VmShared {
    pub(super) vcpu_count: u32,
    pub(super) psci: Arc<PsciPower>,
    pub(super) ioevents: IoEventTable,
    irqfds: IrqfdRelay,
    gic: Option<GicApi>,
    regions: Mutex<Regions>,
    created: Mutex<BTreeSet<u32>>,
}

impl VmShared {
    fn regions(&self) -> MutexGuard<'_, Regions> {
        self.regions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for VmShared {
    fn drop(&mut self) {
        // No relay may raise a line of a destroyed VM.
        self.irqfds.clear();
        // SAFETY: every vCPU holds an `Arc<VmShared>`, so none is left; the
        // mapped regions are released below, after the VM that used them.
        let code = unsafe { ffi::hv_vm_destroy() };
        if code != 0 {
            tracing::warn!(error = %describe_status(code), "hv_vm_destroy failed");
        }
        VM_EXISTS.store(false, Ordering::SeqCst);
    }
}

/// A Hypervisor.framework VM (one per process).
#[derive(Debug)]
pub struct HvfVm {
    shared: Arc<VmShared>,
}

fn host_page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(16384)
}

impl HvfVm {
    pub(super) fn new(config: &VmOptions, max_vcpus: u32) -> Result<Self, AccelError> {
        if config.vcpu_count == 0 || config.vcpu_count > max_vcpus {
            return Err(AccelError::InvalidConfig {
                reason: format!(
                    "vcpu_count {} is outside 1..={max_vcpus} (hv_vm_get_max_vcpu_count)",
                    config.vcpu_count
                ),
            });
        }
        if VM_EXISTS.swap(true, Ordering::SeqCst) {
            return Err(AccelError::InvalidConfig {
                reason: "Hypervisor.framework allows one VM per process and this process \
                         already has one: drop it (and its vCPUs) first"
                    .to_owned(),
            });
        }
        // SAFETY: a null config asks for the default VM configuration.
        if let Err(e) = check("hv_vm_create", unsafe {
            ffi::hv_vm_create(std::ptr::null_mut())
        }) {
            VM_EXISTS.store(false, Ordering::SeqCst);
            return Err(e);
        }
        // `in_kernel_irqchip: false` leaves interrupt delivery to the VMM.
        let gic = if config.in_kernel_irqchip {
            GicApi::lookup()
        } else {
            None
        };
        if let Some(api) = &gic {
            if let Err((op, code)) = api.create_gic(GIC_DISTRIBUTOR_BASE, GIC_REDISTRIBUTOR_BASE) {
                // SAFETY: the VM was created above and has no vCPUs.
                unsafe { ffi::hv_vm_destroy() };
                VM_EXISTS.store(false, Ordering::SeqCst);
                return Err(AccelError::hypervisor(
                    op,
                    std::io::Error::other(describe_status(code)),
                ));
            }
        } else {
            tracing::info!("no in-kernel GIC (macOS < 15): interrupt lines are unavailable");
        }
        tracing::debug!(
            vcpus = config.vcpu_count,
            gic = gic.is_some(),
            "HVF VM created"
        );
        // From here on, dropping the shared state destroys the VM.
        Ok(Self {
            shared: Arc::new(VmShared {
                vcpu_count: config.vcpu_count,
                psci: Arc::new(PsciPower::new(config.vcpu_count)),
                ioevents: IoEventTable::default(),
                irqfds: IrqfdRelay::default(),
                gic,
                regions: Mutex::new(Regions {
                    table: MemorySlots::new(MAX_REGIONS, host_page_size()),
                    keep_alive: BTreeMap::new(),
                }),
                created: Mutex::new(BTreeSet::new()),
            }),
        })
    }

    /// Whether the in-kernel GICv3 (macOS 15+) was created for this VM.
    pub fn has_gic(&self) -> bool {
        self.shared.gic.is_some()
    }

    /// Creates vCPU `id` as the concrete HVF type (see [`Vm::create_vcpu`]);
    /// the hardware vCPU is made by its first `run()` on the running thread.
    pub fn create_hvf_vcpu(&self, id: VcpuId) -> Result<HvfVcpu, AccelError> {
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
        if !created.insert(id.0) {
            return Err(AccelError::VcpuExists { id: id.0 });
        }
        Ok(HvfVcpu::new(Arc::clone(&self.shared), id))
    }
}

/// Drives SPI `irq` (INTID `irq + 32`) of the in-kernel GIC.
fn set_spi(gic: Option<&GicApi>, irq: IrqLine, active: bool) -> Result<(), AccelError> {
    let Some(gic) = gic else {
        return Err(AccelError::Unsupported {
            what: "interrupt lines without the in-kernel GIC (needs macOS 15 or later)",
            backend: "HVF",
        });
    };
    let intid = irq
        .0
        .checked_add(SPI_BASE)
        .ok_or(AccelError::InvalidConfig {
            reason: format!("{irq} is beyond the GIC's SPI range"),
        })?;
    // SAFETY: `set_spi` is hv_gic_set_spi, callable from any thread once the
    // GIC exists (it is created with the VM, before any vCPU).
    check("hv_gic_set_spi", unsafe { (gic.set_spi)(intid, active) })
}

impl Vm for HvfVm {
    fn arch(&self) -> GuestArch {
        GuestArch::Arm64
    }

    fn map_region(&self, region: Arc<GuestRegionMmap>) -> Result<(), AccelError> {
        let guest_addr = region.start_addr().0;
        let size = region.len();
        let host_addr = region.as_ptr() as u64;
        let len = usize::try_from(size).map_err(|_| AccelError::RegionSize {
            addr: guest_addr,
            size,
        })?;
        let mut regions = self.shared.regions();
        regions.table.insert(guest_addr, size, host_addr)?;
        // SAFETY: [host_addr, host_addr + size) is the mapping of `region`, kept
        // alive in `keep_alive` until it is unmapped from the VM (or the VM dies).
        let mapped = check("hv_vm_map", unsafe {
            ffi::hv_vm_map(
                region.as_ptr().cast(),
                guest_addr,
                len,
                memory_flags::READ | memory_flags::WRITE | memory_flags::EXEC,
            )
        });
        if let Err(e) = mapped {
            let _ = regions.table.remove(guest_addr);
            return Err(e);
        }
        regions.keep_alive.insert(guest_addr, region);
        tracing::debug!(guest_addr, size, "HVF memory region mapped");
        Ok(())
    }

    fn unmap_region(&self, guest_addr: GuestAddress) -> Result<(), AccelError> {
        let mut regions = self.shared.regions();
        let slot = *regions
            .table
            .iter()
            .find(|s| s.guest_addr == guest_addr.0)
            .ok_or(AccelError::RegionNotMapped { addr: guest_addr.0 })?;
        let len = usize::try_from(slot.size).map_err(|_| AccelError::RegionSize {
            addr: slot.guest_addr,
            size: slot.size,
        })?;
        // SAFETY: unmapping a range this VM mapped; the host memory stays valid.
        check("hv_vm_unmap", unsafe {
            ffi::hv_vm_unmap(slot.guest_addr, len)
        })?;
        regions.table.remove(guest_addr.0)?;
        regions.keep_alive.remove(&guest_addr.0);
        Ok(())
    }

    fn create_vcpu(&self, id: VcpuId) -> Result<Box<dyn Vcpu>, AccelError> {
        Ok(Box::new(self.create_hvf_vcpu(id)?))
    }

    fn set_irq_line(&self, irq: IrqLine, active: bool) -> Result<(), AccelError> {
        set_spi(self.shared.gic.as_ref(), irq, active)
    }

    fn register_irqfd(&self, notifier: &EventNotifier, irq: IrqLine) -> Result<(), AccelError> {
        let gic = self.shared.gic;
        // Fail now, not in the relay thread, when there is no GIC.
        if gic.is_none() {
            return set_spi(None, irq, false);
        }
        self.shared.irqfds.register(
            notifier,
            irq,
            Arc::new(move |irq, level| set_spi(gic.as_ref(), irq, level)),
        )
    }

    fn unregister_irqfd(&self, _notifier: &EventNotifier, irq: IrqLine) -> Result<(), AccelError> {
        self.shared.irqfds.unregister(irq)
    }

    fn register_ioeventfd(
        &self,
        notifier: &EventNotifier,
        addr: IoEventAddress,
        matching: IoEventMatch,
    ) -> Result<(), AccelError> {
        if let IoEventAddress::Pio(_) = addr {
            return Err(AccelError::Unsupported {
                what: "port I/O ioevents (arm64 has no I/O ports)",
                backend: "HVF",
            });
        }
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
