//! The `Vm` trait: a VM's guest memory, interrupt lines, notifiers and vCPUs.

use crate::cpu_template::CpuTemplate;
use crate::error::AccelError;
use crate::notifier::EventNotifier;
use crate::regs::GuestArch;
use crate::state::VmState;
use crate::vcpu::{Vcpu, VcpuId};
use std::fmt;
use std::sync::Arc;
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap};

/// How a VM is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmOptions {
    /// Number of vCPUs; ids `0..vcpu_count` may be created.
    pub vcpu_count: u32,
    /// The CPU model x86 vCPUs show the guest.
    pub cpu_template: CpuTemplate,
    /// Emulate the interrupt controllers in the hypervisor (x86: PIC, IOAPIC,
    /// LAPIC and PIT). With them, `hlt` waits there for an interrupt and never
    /// exits to the VMM; without them, `hlt` returns [`VcpuExit::Halt`] and IRQ
    /// lines and irqfds are unavailable.
    ///
    /// [`VcpuExit::Halt`]: crate::VcpuExit::Halt
    pub in_kernel_irqchip: bool,
}

impl Default for VmOptions {
    fn default() -> Self {
        Self {
            vcpu_count: 1,
            cpu_template: CpuTemplate::host_default(),
            in_kernel_irqchip: true,
        }
    }
}

/// An interrupt line (GSI): an IOAPIC/PIC pin on x86, an SPI on arm64, a PLIC/APLIC source on riscv64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IrqLine(pub u32);

impl fmt::Display for IrqLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "irq {}", self.0)
    }
}

/// The address an ioeventfd watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoEventAddress {
    /// An I/O port (x86).
    Pio(u16),
    /// A guest physical MMIO address.
    Mmio(u64),
}

/// Which written values an ioeventfd fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoEventMatch {
    /// Any write, any size.
    Any,
    /// 1-byte writes of this value.
    U8(u8),
    /// 2-byte writes of this value.
    U16(u16),
    /// 4-byte writes of this value.
    U32(u32),
    /// 8-byte writes of this value.
    U64(u64),
}

/// A virtual machine created by an [`Accelerator`](crate::Accelerator).
///
/// Shared between the VMM's threads (`Arc<dyn Vm>`): device threads raise
/// interrupts while vCPU threads run.
pub trait Vm: Send + Sync + fmt::Debug {
    /// The guest architecture of this VM's vCPUs.
    fn arch(&self) -> GuestArch;

    /// Maps one region at its guest address. The VM keeps the region alive
    /// until it is unmapped or the VM is dropped.
    fn map_region(&self, region: Arc<GuestRegionMmap>) -> Result<(), AccelError>;

    /// Removes the region that starts at `guest_addr`.
    fn unmap_region(&self, guest_addr: GuestAddress) -> Result<(), AccelError>;

    /// Maps every region of `memory`.
    fn map_memory(&self, memory: &GuestMemoryMmap) -> Result<(), AccelError> {
        use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
        for region in memory.iter() {
            // `GuestMemoryMmap` stores `Arc`s; rebuilding one shares the mapping.
            let shared = GuestRegionMmap::with_arc(region.get_mmap(), region.start_addr()).ok_or(
                AccelError::RegionSize {
                    addr: region.start_addr().0,
                    size: region.len(),
                },
            )?;
            self.map_region(Arc::new(shared))?;
        }
        Ok(())
    }

    /// Creates vCPU `id` (`0..VmOptions::vcpu_count`).
    fn create_vcpu(&self, id: VcpuId) -> Result<Box<dyn Vcpu>, AccelError>;

    /// Drives an interrupt line high (`true`) or low.
    fn set_irq_line(&self, irq: IrqLine, active: bool) -> Result<(), AccelError>;

    /// Makes `notifier.notify()` raise `irq` without a VMM round trip (KVM irqfd).
    fn register_irqfd(&self, notifier: &EventNotifier, irq: IrqLine) -> Result<(), AccelError>;

    /// Undoes [`Vm::register_irqfd`].
    fn unregister_irqfd(&self, notifier: &EventNotifier, irq: IrqLine) -> Result<(), AccelError>;

    /// Makes a guest write to `addr` matching `matching` signal `notifier`
    /// instead of exiting to the VMM (KVM ioeventfd).
    fn register_ioeventfd(
        &self,
        notifier: &EventNotifier,
        addr: IoEventAddress,
        matching: IoEventMatch,
    ) -> Result<(), AccelError>;

    /// Undoes [`Vm::register_ioeventfd`].
    fn unregister_ioeventfd(
        &self,
        notifier: &EventNotifier,
        addr: IoEventAddress,
        matching: IoEventMatch,
    ) -> Result<(), AccelError>;

    /// Saves the VM-wide state the hypervisor holds (x86 KVM: PICs, IOAPIC,
    /// PIT, kvmclock). Every vCPU must be paused. Guest memory and device
    /// models are saved by their owners. Engines without snapshot support
    /// return [`AccelError::StateUnsupported`].
    fn save_state(&self) -> Result<VmState, AccelError> {
        Err(AccelError::StateUnsupported {
            what: "saving VM state",
            engine: format!("this {} VM's engine", self.arch()),
        })
    }

    /// Restores a state from [`Vm::save_state`] into this VM, normally a fresh
    /// one created with the same [`VmOptions`], before its vCPUs' states.
    fn restore_state(&self, state: &VmState) -> Result<(), AccelError> {
        Err(AccelError::StateUnsupported {
            what: "restoring VM state",
            engine: format!(
                "this {} VM's engine (state from {})",
                self.arch(),
                state.engine()
            ),
        })
    }
}
