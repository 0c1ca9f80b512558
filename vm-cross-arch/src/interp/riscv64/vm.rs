//! The software engine as a `vm_accel` backend: [`SoftwareAccelerator`]
//! creates [`RiscvVm`]s whose vCPUs are [`RiscvVcpu`]s. Interrupt lines go to
//! the PLIC; an irqfd is served by a thread that waits on the notifier.
//!
//! Limits: guest memory must be mapped before vCPUs are created (harts take
//! a snapshot of the RAM layout); ioeventfds are not offered (MMIO writes
//! exit to the VMM instead).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vm_accel::{
    AccelError, Accelerator, AcceleratorKind, EventNotifier, GuestAddress, GuestArch,
    GuestRegionMmap, IoEventAddress, IoEventMatch, IrqLine, MemorySlots, Vcpu, VcpuId, Vm,
    VmOptions,
};
use vm_memory::GuestMemoryRegion;

use super::hart::Hart;
use super::machine::{InternalDevices, Machine};
use super::memory::{Ram, RamRegion};
use super::vcpu::RiscvVcpu;
use crate::platform::riscv64::layout;

/// The riscv64 interpreter as an accelerator.
#[derive(Debug, Default, Clone, Copy)]
pub struct SoftwareAccelerator;

impl Accelerator for SoftwareAccelerator {
    fn kind(&self) -> AcceleratorKind {
        AcceleratorKind::Software
    }

    fn guest_arch(&self) -> GuestArch {
        GuestArch::Riscv64
    }

    fn max_vcpus(&self) -> u32 {
        layout::MAX_VCPUS
    }

    fn create_vm(&self, config: &VmOptions) -> Result<Arc<dyn Vm>, AccelError> {
        Ok(Arc::new(RiscvVm::new(config.vcpu_count)?))
    }
}

/// The devices of the platform's layout that the engine serves itself.
pub fn platform_devices() -> InternalDevices {
    InternalDevices {
        clint: (layout::CLINT.start.0, layout::CLINT.size),
        plic: (layout::PLIC.start.0, layout::PLIC.size),
        syscon: Some((layout::SYSCON.start.0, layout::SYSCON.size)),
        uart: Some(layout::UART.start.0),
    }
}

#[derive(Debug)]
struct IrqFd {
    irq: u32,
    notifier: EventNotifier,
    stop: Arc<AtomicBool>,
}

/// A riscv64 VM run by the interpreter.
#[derive(Debug)]
pub struct RiscvVm {
    machine: Arc<Machine>,
    vcpus: u32,
    created: Mutex<Vec<bool>>,
    slots: Mutex<MemorySlots>,
    regions: Mutex<Vec<RamRegion>>,
    irqfds: Mutex<Vec<IrqFd>>,
}

fn poisoned(what: &'static str) -> AccelError {
    AccelError::Unsupported {
        what,
        backend: "software (a lock was poisoned)",
    }
}

impl RiscvVm {
    /// A VM with `vcpus` harts on the platform's layout.
    pub fn new(vcpus: u32) -> Result<Self, AccelError> {
        Self::with_devices(vcpus, platform_devices())
    }

    /// A VM with `vcpus` harts and the given engine-internal devices.
    pub fn with_devices(vcpus: u32, devices: InternalDevices) -> Result<Self, AccelError> {
        if vcpus == 0 || vcpus > layout::MAX_VCPUS {
            return Err(AccelError::InvalidConfig {
                reason: format!(
                    "{vcpus} harts requested; the software engine runs 1..={}",
                    layout::MAX_VCPUS
                ),
            });
        }
        Ok(Self {
            machine: Arc::new(Machine::new(
                vcpus,
                u64::from(layout::TIMEBASE_HZ),
                layout::PLIC_SOURCES,
                devices,
            )),
            vcpus,
            created: Mutex::new(vec![false; vcpus as usize]),
            slots: Mutex::new(MemorySlots::new(64, 4096)),
            regions: Mutex::new(Vec::new()),
            irqfds: Mutex::new(Vec::new()),
        })
    }

    /// The shared machine (CLINT, PLIC, signals).
    pub fn machine(&self) -> &Arc<Machine> {
        &self.machine
    }

    /// Creates hart `id` as a concrete [`RiscvVcpu`].
    pub fn create_riscv_vcpu(&self, id: VcpuId) -> Result<RiscvVcpu, AccelError> {
        if id.0 >= self.vcpus {
            return Err(AccelError::VcpuIdOutOfRange {
                id: id.0,
                limit: self.vcpus,
            });
        }
        let mut created = self.created.lock().map_err(|_| poisoned("vCPU creation"))?;
        if created[id.0 as usize] {
            return Err(AccelError::VcpuExists { id: id.0 });
        }
        let signal = self
            .machine
            .signal(id.0)
            .cloned()
            .ok_or(AccelError::VcpuIdOutOfRange {
                id: id.0,
                limit: self.vcpus,
            })?;
        created[id.0 as usize] = true;
        let hart = Hart::new(id.0, self.machine.clone(), signal.clone());
        Ok(RiscvVcpu::new(hart, signal))
    }

    fn publish_ram(&self, regions: &[RamRegion]) -> Result<(), AccelError> {
        let mut sorted = regions.to_vec();
        // The biggest region first: the instruction cache covers it.
        sorted.sort_by_key(|r| std::cmp::Reverse(r.size));
        *self
            .machine
            .ram
            .lock()
            .map_err(|_| poisoned("memory map"))? = Ram::new(sorted);
        Ok(())
    }
}

impl Vm for RiscvVm {
    fn arch(&self) -> GuestArch {
        GuestArch::Riscv64
    }

    fn map_region(&self, region: Arc<GuestRegionMmap>) -> Result<(), AccelError> {
        let host = region.as_ptr() as u64;
        self.slots
            .lock()
            .map_err(|_| poisoned("memory map"))?
            .insert(region.start_addr().0, region.len(), host)?;
        let mut regions = self.regions.lock().map_err(|_| poisoned("memory map"))?;
        regions.push(RamRegion::new(region));
        self.publish_ram(&regions)
    }

    fn unmap_region(&self, guest_addr: GuestAddress) -> Result<(), AccelError> {
        self.slots
            .lock()
            .map_err(|_| poisoned("memory map"))?
            .remove(guest_addr.0)?;
        let mut regions = self.regions.lock().map_err(|_| poisoned("memory map"))?;
        regions.retain(|r| r.base != guest_addr.0);
        self.publish_ram(&regions)
    }

    fn create_vcpu(&self, id: VcpuId) -> Result<Box<dyn Vcpu>, AccelError> {
        Ok(Box::new(self.create_riscv_vcpu(id)?))
    }

    fn set_irq_line(&self, irq: IrqLine, active: bool) -> Result<(), AccelError> {
        self.machine.plic.set_level(irq.0, active);
        Ok(())
    }

    fn register_irqfd(&self, notifier: &EventNotifier, irq: IrqLine) -> Result<(), AccelError> {
        let waiter = notifier
            .try_clone()
            .map_err(|e| AccelError::hypervisor("cloning an irqfd notifier", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let plic = self.machine.plic.clone();
        let thread_stop = stop.clone();
        let line = irq.0;
        std::thread::Builder::new()
            .name(format!("irqfd-{line}"))
            .spawn(move || {
                let role = vm_core::thread_role::ThreadRole::IrqRelay;
                if let Err(error) = vm_core::thread_role::enter(role) {
                    tracing::error!(irq = line, %error, "irqfd thread not confined; it stops");
                    return;
                }
                loop {
                    match waiter.wait() {
                        Ok(_) if !thread_stop.load(Ordering::Acquire) => plic.raise(line),
                        _ => break,
                    }
                }
            })
            .map_err(|e| AccelError::hypervisor("spawning the irqfd thread", e))?;
        let keep = notifier
            .try_clone()
            .map_err(|e| AccelError::hypervisor("cloning an irqfd notifier", e))?;
        self.irqfds
            .lock()
            .map_err(|_| poisoned("irqfd table"))?
            .push(IrqFd {
                irq: line,
                notifier: keep,
                stop,
            });
        Ok(())
    }

    fn unregister_irqfd(&self, notifier: &EventNotifier, irq: IrqLine) -> Result<(), AccelError> {
        let _ = notifier;
        let mut fds = self.irqfds.lock().map_err(|_| poisoned("irqfd table"))?;
        let Some(pos) = fds.iter().position(|f| f.irq == irq.0) else {
            return Err(AccelError::InvalidConfig {
                reason: format!("no irqfd is registered for {irq}"),
            });
        };
        let fd = fds.swap_remove(pos);
        fd.stop.store(true, Ordering::Release);
        let _ = fd.notifier.notify();
        Ok(())
    }

    fn register_ioeventfd(
        &self,
        _notifier: &EventNotifier,
        _addr: IoEventAddress,
        _matching: IoEventMatch,
    ) -> Result<(), AccelError> {
        Err(AccelError::Unsupported {
            what: "ioeventfd",
            backend: "software riscv64",
        })
    }

    fn unregister_ioeventfd(
        &self,
        _notifier: &EventNotifier,
        _addr: IoEventAddress,
        _matching: IoEventMatch,
    ) -> Result<(), AccelError> {
        Err(AccelError::Unsupported {
            what: "ioeventfd",
            backend: "software riscv64",
        })
    }
}

impl Drop for RiscvVm {
    fn drop(&mut self) {
        if let Ok(fds) = self.irqfds.lock() {
            for fd in fds.iter() {
                fd.stop.store(true, Ordering::Release);
                let _ = fd.notifier.notify();
            }
        }
    }
}
