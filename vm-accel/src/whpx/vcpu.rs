//! `WhpxVcpu`: the `WHvRunVirtualProcessor` loop — MMIO and port I/O
//! decoded and completed in userspace, CPUID through the CPU template,
//! halt/shutdown/cancel — plus register access, boot state and the kick.

use super::api;
use super::kick::WhpxKick;
use super::regs::VpRegisters;
use super::vm::PartitionShared;
use crate::boot::BootState;
use crate::decode::whpx_abi::{
    self as abi, exit_reason, instruction_length, io_port_access_info, memory_access_info,
    MemoryAccessType,
};
use crate::error::AccelError;
use crate::exit::{InstructionBytes, InternalError, InternalErrorKind, VcpuExit};
use crate::kick::KickHandle;
use crate::regs::{GuestArch, Registers, X86_64SpecialRegisters};
use crate::vcpu::{Vcpu, VcpuId};
use crate::vm::IoEventAddress;
use crate::x86_emulator::mmio::{decode_mmio, DecodedMmio, MmioAccess};
use crate::x86_emulator::port_io::{complete_in, decode_string_io, out_data, Segment, StringIo};
use crate::x86_emulator::x86_bitness;
use std::sync::Arc;
use windows_sys::Win32::System::Hypervisor::{
    WHvRegisterInternalActivityState, WHvTranslateGvaFlagValidateRead,
    WHvTranslateGvaFlagValidateWrite, WHvTranslateGvaResultSuccess, WHvX64RegisterCs,
    WHvX64RegisterFs, WHvX64RegisterGs, WHvX64RegisterRax, WHvX64RegisterRbx, WHvX64RegisterRcx,
    WHvX64RegisterRdx, WHvX64RegisterRip, WHvX64RegisterSs, WHV_REGISTER_VALUE,
    WHV_RUN_VP_EXIT_CONTEXT, WHV_TRANSLATE_GVA_RESULT, WHV_VP_EXIT_CONTEXT,
    WHV_X64_IO_PORT_ACCESS_CONTEXT,
};

const PAGE: u64 = 4096;

/// An access the VMM completes before the next run.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Mmio(DecodedMmio),
    PortIn { size: u8, len: u64 },
    StringIn { io: StringIo, gva: u64 },
}

/// A decoded exit, before it borrows the data buffer.
enum Step {
    IoIn { port: u16, size: usize },
    IoOut { port: u16, size: usize },
    MmioRead { addr: u64, size: usize },
    MmioWrite { addr: u64, size: usize },
    Exit(VcpuExit<'static>),
}

/// A WHPX virtual processor.
#[derive(Debug)]
pub struct WhpxVcpu {
    id: VcpuId,
    vm: Arc<PartitionShared>,
    regs: VpRegisters,
    kick: Arc<WhpxKick>,
    pending: Option<Pending>,
    data: [u8; 8],
}

fn emulation_failure(rip: u64, bytes: &[u8], data: Vec<u64>) -> Step {
    Step::Exit(VcpuExit::InternalError(InternalError {
        kind: InternalErrorKind::Emulation,
        data,
        pc: Some(rip),
        pc_phys: None,
        instruction: Some(InstructionBytes::new(bytes)),
        detail: None,
    }))
}

/// The linear address of the instruction an exit reports (CS.base + RIP;
/// long mode ignores CS.base).
fn linear_ip(vp: &WHV_VP_EXIT_CONTEXT) -> u64 {
    if bitness(vp) == 64 {
        vp.Rip
    } else {
        vp.Cs.Base.wrapping_add(vp.Rip)
    }
}

fn bitness(vp: &WHV_VP_EXIT_CONTEXT) -> u32 {
    // SAFETY: both unions are plain integers in every variant.
    let (state, cs) = unsafe { (vp.ExecutionState.AsUINT16, vp.Cs.Anonymous.Attributes) };
    let state = abi::execution_state(state);
    x86_bitness(
        state.long_mode_active,
        cs & (1 << 13) != 0,
        cs & (1 << 14) != 0,
    )
}

impl WhpxVcpu {
    pub(super) fn new(vm: Arc<PartitionShared>, id: VcpuId) -> Result<Self, AccelError> {
        // SAFETY: plain arguments on a set-up partition.
        api::check("WHvCreateVirtualProcessor", unsafe {
            (vm.api.WHvCreateVirtualProcessor)(vm.handle, id.0, 0)
        })?;
        let regs = VpRegisters {
            api: vm.api,
            partition: vm.handle,
            index: id.0,
        };
        let kick = Arc::new(WhpxKick::new(Arc::downgrade(&vm), id.0));
        tracing::debug!(vcpu = id.0, "WHPX virtual processor created");
        Ok(Self {
            id,
            vm,
            regs,
            kick,
            pending: None,
            data: [0; 8],
        })
    }

    /// Translates a guest-virtual address for a read or write.
    fn translate(&self, gva: u64, write: bool) -> Result<u64, AccelError> {
        let flags = if write {
            WHvTranslateGvaFlagValidateWrite
        } else {
            WHvTranslateGvaFlagValidateRead
        };
        let mut result = WHV_TRANSLATE_GVA_RESULT::default();
        let mut gpa = 0u64;
        // SAFETY: both out-pointers are valid.
        api::check("WHvTranslateGva", unsafe {
            (self.vm.api.WHvTranslateGva)(
                self.vm.handle,
                self.id.0,
                gva,
                flags,
                &raw mut result,
                &raw mut gpa,
            )
        })?;
        if result.ResultCode != WHvTranslateGvaResultSuccess {
            return Err(AccelError::GuestMemory {
                addr: gva,
                len: 1,
                reason: format!(
                    "guest-virtual address does not translate (WHV_TRANSLATE_GVA_RESULT_CODE {})",
                    result.ResultCode
                ),
            });
        }
        Ok(gpa)
    }

    /// Copies between guest-virtual memory and `buf`, page by page.
    fn access_virt(&self, gva: u64, buf: &mut [u8], write: bool) -> Result<(), AccelError> {
        let mut done = 0usize;
        while done < buf.len() {
            let addr = gva.wrapping_add(done as u64);
            let in_page = (PAGE - (addr % PAGE)) as usize;
            let chunk = in_page.min(buf.len() - done);
            let gpa = self.translate(addr, write)?;
            let part = &mut buf[done..done + chunk];
            if write {
                self.vm.write_phys(gpa, part)?;
            } else {
                self.vm.read_phys(gpa, part)?;
            }
            done += chunk;
        }
        Ok(())
    }

    /// The instruction at CS:RIP, for exits that carry no instruction bytes.
    fn fetch_instruction(&self, vp: &WHV_VP_EXIT_CONTEXT) -> ([u8; 16], usize) {
        let mut bytes = [0u8; 16];
        let rip = linear_ip(vp);
        // Fetch up to 15 bytes, settling for what lies on the first page if the next is unmapped.
        let first = ((PAGE - rip % PAGE) as usize).min(15);
        if self.access_virt(rip, &mut bytes[..first], false).is_err() {
            return (bytes, 0);
        }
        let more = self.access_virt(rip + first as u64, &mut bytes[first..15], false);
        (bytes, if more.is_ok() { 15 } else { first })
    }

    fn set_rip(&self, rip: u64) -> Result<(), AccelError> {
        self.regs.set64(WHvX64RegisterRip, rip)
    }

    /// Completes the access the VMM filled in during the last exit.
    fn complete_pending(&mut self) -> Result<(), AccelError> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let mut regs = self.regs.gprs()?;
        match pending {
            Pending::Mmio(decoded) => decoded.complete(&mut regs, &self.data),
            Pending::PortIn { size, len } => {
                complete_in(&mut regs, size, &self.data);
                regs.rip = regs.rip.wrapping_add(len);
            }
            Pending::StringIn { io, gva } => {
                let mut element = self.data;
                self.access_virt(gva, &mut element[..usize::from(io.size)], true)?;
                io.step(&mut regs);
            }
        }
        self.regs.set_gprs(&regs)
    }

    fn memory_access(&mut self, ctx: &WHV_RUN_VP_EXIT_CONTEXT) -> Result<Option<Step>, AccelError> {
        // SAFETY: the exit reason says this union member is filled; plain data.
        let mem = unsafe { ctx.Anonymous.MemoryAccess };
        // SAFETY: the access-info union is a plain u32 in every variant.
        let info = memory_access_info(unsafe { mem.AccessInfo.AsUINT32 }).ok_or_else(|| {
            AccelError::MalformedExit {
                backend: "WHPX",
                detail: "memory access exit with a reserved access type".to_owned(),
            }
        })?;
        if info.access == MemoryAccessType::Execute {
            return Ok(Some(Step::Exit(VcpuExit::MemoryFault {
                gpa: mem.Gpa,
                size: 1,
                flags: 0,
            })));
        }
        let regs = self.regs.gprs()?;
        let count = usize::from(mem.InstructionByteCount).min(16);
        let (bytes, count) = if count == 0 {
            self.fetch_instruction(&ctx.VpContext)
        } else {
            (mem.InstructionBytes, count)
        };
        let decoded = match decode_mmio(&bytes[..count], bitness(&ctx.VpContext), &regs) {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::warn!(vcpu = self.id.0, %error, "MMIO instruction not emulated");
                return Ok(Some(emulation_failure(
                    regs.rip,
                    &bytes[..count],
                    vec![mem.Gpa],
                )));
            }
        };
        match decoded.access {
            MmioAccess::Write { size, data } => {
                let size = usize::from(size);
                self.data = data;
                self.set_rip(regs.rip.wrapping_add(decoded.len))?;
                if self
                    .vm
                    .ioevents
                    .signal(IoEventAddress::Mmio(mem.Gpa), &data[..size])
                {
                    return Ok(None);
                }
                Ok(Some(Step::MmioWrite {
                    addr: mem.Gpa,
                    size,
                }))
            }
            MmioAccess::Read { size, .. } => {
                self.data = [0; 8];
                self.pending = Some(Pending::Mmio(decoded));
                Ok(Some(Step::MmioRead {
                    addr: mem.Gpa,
                    size: usize::from(size),
                }))
            }
        }
    }

    /// The linear base of a string instruction's segment.
    fn segment_base(
        &self,
        segment: Segment,
        long_mode: bool,
        io: &WHV_X64_IO_PORT_ACCESS_CONTEXT,
    ) -> Result<u64, AccelError> {
        Ok(match segment {
            Segment::Fs => self.regs.segment_base(WHvX64RegisterFs)?,
            Segment::Gs => self.regs.segment_base(WHvX64RegisterGs)?,
            // Long mode ignores the other segments' bases.
            _ if long_mode => 0,
            Segment::Es => io.Es.Base,
            Segment::Ds => io.Ds.Base,
            Segment::Cs => self.regs.segment_base(WHvX64RegisterCs)?,
            Segment::Ss => self.regs.segment_base(WHvX64RegisterSs)?,
        })
    }

    fn port_io(&mut self, ctx: &WHV_RUN_VP_EXIT_CONTEXT) -> Result<Option<Step>, AccelError> {
        // SAFETY: the exit reason says this union member is filled; plain data.
        let io = unsafe { ctx.Anonymous.IoPortAccess };
        // SAFETY: the access-info union is a plain u32 in every variant.
        let bits = unsafe { io.AccessInfo.AsUINT32 };
        let info = io_port_access_info(bits).ok_or_else(|| AccelError::MalformedExit {
            backend: "WHPX",
            detail: format!("port I/O exit with access info {bits:#x} (size not 1, 2 or 4)"),
        })?;
        let port = io.PortNumber;
        let size = usize::from(info.size);
        if !info.string {
            let len = instruction_length(ctx.VpContext._bitfield);
            if !info.write {
                self.data = [0; 8];
                self.pending = Some(Pending::PortIn {
                    size: info.size,
                    len,
                });
                return Ok(Some(Step::IoIn { port, size }));
            }
            self.data[..4].copy_from_slice(&out_data(io.Rax, info.size));
            self.set_rip(ctx.VpContext.Rip.wrapping_add(len))?;
            if self
                .vm
                .ioevents
                .signal(IoEventAddress::Pio(port), &self.data[..size])
            {
                return Ok(None);
            }
            return Ok(Some(Step::IoOut { port, size }));
        }
        let count = usize::from(io.InstructionByteCount).min(16);
        let bits = bitness(&ctx.VpContext);
        let sio = match decode_string_io(&io.InstructionBytes[..count], bits) {
            Ok(sio) => sio,
            Err(error) => {
                tracing::warn!(vcpu = self.id.0, %error, "string port I/O not decoded");
                let rip = ctx.VpContext.Rip;
                return Ok(Some(emulation_failure(
                    rip,
                    &io.InstructionBytes[..count],
                    vec![],
                )));
            }
        };
        let mut regs = self.regs.gprs()?;
        if sio.remaining(&regs) == 0 {
            sio.skip(&mut regs);
            self.set_rip(regs.rip)?;
            return Ok(None);
        }
        let gva = self
            .segment_base(sio.segment, bits == 64, &io)?
            .wrapping_add(sio.offset(&regs));
        if sio.input {
            self.data = [0; 8];
            self.pending = Some(Pending::StringIn { io: sio, gva });
            return Ok(Some(Step::IoIn { port, size }));
        }
        let mut element = [0u8; 8];
        self.access_virt(gva, &mut element[..size], false)?;
        self.data = element;
        sio.step(&mut regs);
        self.regs.set_gprs(&regs)?;
        if self
            .vm
            .ioevents
            .signal(IoEventAddress::Pio(port), &self.data[..size])
        {
            return Ok(None);
        }
        Ok(Some(Step::IoOut { port, size }))
    }

    /// Answers a trapped CPUID with the hypervisor's result edited by the CPU template.
    fn cpuid(&self, ctx: &WHV_RUN_VP_EXIT_CONTEXT) -> Result<(), AccelError> {
        // SAFETY: the exit reason says this union member is filled; plain data.
        let c = unsafe { ctx.Anonymous.CpuidAccess };
        let (leaf, subleaf) = (c.Rax as u32, c.Rcx as u32);
        let mut out = [
            c.DefaultResultRax as u32,
            c.DefaultResultRbx as u32,
            c.DefaultResultRcx as u32,
            c.DefaultResultRdx as u32,
        ];
        self.vm.cpu_template.apply(leaf, subleaf, &mut out);
        let rip = ctx
            .VpContext
            .Rip
            .wrapping_add(instruction_length(ctx.VpContext._bitfield));
        let names = [
            WHvX64RegisterRax,
            WHvX64RegisterRbx,
            WHvX64RegisterRcx,
            WHvX64RegisterRdx,
            WHvX64RegisterRip,
        ];
        let values = [
            u64::from(out[0]),
            u64::from(out[1]),
            u64::from(out[2]),
            u64::from(out[3]),
            rip,
        ]
        .map(|v| WHV_REGISTER_VALUE { Reg64: v });
        self.regs.set(&names, &values)
    }

    /// Runs until an exit for the VMM.
    fn step(&mut self) -> Result<Step, AccelError> {
        self.complete_pending()?;
        loop {
            if self.kick.take() {
                return Ok(Step::Exit(VcpuExit::Interrupted));
            }
            let mut ctx = WHV_RUN_VP_EXIT_CONTEXT::default();
            // SAFETY: `ctx` is a writable WHV_RUN_VP_EXIT_CONTEXT of the size passed.
            api::check("WHvRunVirtualProcessor", unsafe {
                (self.vm.api.WHvRunVirtualProcessor)(
                    self.vm.handle,
                    self.id.0,
                    (&raw mut ctx).cast(),
                    std::mem::size_of::<WHV_RUN_VP_EXIT_CONTEXT>() as u32,
                )
            })?;
            let step = match ctx.ExitReason {
                exit_reason::MEMORY_ACCESS => self.memory_access(&ctx)?,
                exit_reason::X64_IO_PORT_ACCESS => self.port_io(&ctx)?,
                exit_reason::X64_CPUID => {
                    self.cpuid(&ctx)?;
                    None
                }
                exit_reason::X64_HALT => Some(Step::Exit(VcpuExit::Halt)),
                exit_reason::UNRECOVERABLE_EXCEPTION => Some(Step::Exit(VcpuExit::Shutdown)),
                exit_reason::CANCELED => {
                    self.kick.take();
                    Some(Step::Exit(VcpuExit::Interrupted))
                }
                exit_reason::X64_APIC_EOI => {
                    // SAFETY: the exit reason says this member is filled; plain data.
                    let vector = unsafe { ctx.Anonymous.ApicEoi.InterruptVector };
                    Some(Step::Exit(VcpuExit::IoapicEoi {
                        vector: (vector & 0xff) as u8,
                    }))
                }
                reason @ (exit_reason::INVALID_VP_REGISTER_VALUE
                | exit_reason::UNSUPPORTED_FEATURE) => {
                    Some(Step::Exit(VcpuExit::InternalError(InternalError {
                        kind: InternalErrorKind::UnexpectedExitReason,
                        data: vec![reason as u64],
                        pc: Some(ctx.VpContext.Rip),
                        pc_phys: None,
                        detail: None,
                        instruction: None,
                    })))
                }
                other => Some(Step::Exit(VcpuExit::Other {
                    name: abi::exit_reason_name(other),
                    code: other as u32,
                })),
            };
            if let Some(step) = step {
                return Ok(step);
            }
        }
    }
}

impl Vcpu for WhpxVcpu {
    fn id(&self) -> VcpuId {
        self.id
    }

    fn arch(&self) -> GuestArch {
        GuestArch::X86_64
    }

    fn run(&mut self) -> Result<VcpuExit<'_>, AccelError> {
        Ok(match self.step()? {
            Step::IoIn { port, size } => VcpuExit::IoIn {
                port,
                data: &mut self.data[..size],
            },
            Step::IoOut { port, size } => VcpuExit::IoOut {
                port,
                data: &self.data[..size],
            },
            Step::MmioRead { addr, size } => VcpuExit::MmioRead {
                addr,
                data: &mut self.data[..size],
            },
            Step::MmioWrite { addr, size } => VcpuExit::MmioWrite {
                addr,
                data: &self.data[..size],
            },
            Step::Exit(exit) => exit,
        })
    }

    fn kick_handle(&self) -> KickHandle {
        KickHandle::new(self.kick.clone())
    }

    fn registers(&self) -> Result<Registers, AccelError> {
        self.regs.gprs().map(Registers::X86_64)
    }

    fn set_registers(&mut self, regs: &Registers) -> Result<(), AccelError> {
        let Registers::X86_64(gprs) = regs else {
            return Err(AccelError::ArchMismatch {
                what: "registers",
                given: regs.arch(),
                vcpu: GuestArch::X86_64,
            });
        };
        self.regs.set_gprs(gprs)
    }

    fn x86_64_special_registers(&self) -> Result<X86_64SpecialRegisters, AccelError> {
        self.regs.sregs()
    }

    fn set_x86_64_special_registers(
        &mut self,
        sregs: &X86_64SpecialRegisters,
    ) -> Result<(), AccelError> {
        self.regs.set_sregs(sregs)
    }

    fn apply_boot_state(&mut self, boot: &BootState) -> Result<(), AccelError> {
        match *boot {
            BootState::X86_64Linux {
                ref regs,
                ref system,
            } => {
                let sregs = system.apply_to(self.regs.sregs()?);
                self.regs.set_sregs(&sregs)?;
                self.regs.set_gprs(regs)
            }
            // WHvRegisterInternalActivityState.StartupSuspend: wait for INIT/SIPI.
            BootState::Secondary {
                arch: GuestArch::X86_64,
            } => self.regs.set64(WHvRegisterInternalActivityState, 1),
            other => Err(AccelError::ArchMismatch {
                what: "boot state",
                given: other.arch(),
                vcpu: GuestArch::X86_64,
            }),
        }
    }
}

impl Drop for WhpxVcpu {
    fn drop(&mut self) {
        // SAFETY: this processor is not running (we hold it mutably) and its
        // partition is alive (`self.vm`).
        let hr = unsafe { (self.vm.api.WHvDeleteVirtualProcessor)(self.vm.handle, self.id.0) };
        if hr < 0 {
            tracing::warn!(vcpu = self.id.0, error = %abi::describe_hresult(hr), "WHvDeleteVirtualProcessor failed");
        }
    }
}
