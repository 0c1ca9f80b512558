//! The allow lists, one per thread kind, found by running the real workloads
//! under `strace -ff` (built-in guest on KVM, the riscv64 Debian guest with a
//! virtual-switch NIC, the daemon's `vmm` children, Firecracker mode) and by
//! level-1 runs of the test suites.
//!
//! Each kind compiles to two BPF programs: the allow list (anything else:
//! kill or trap), and a small "deny softly" program that makes `clone3`
//! fail with `ENOSYS` (glibc then falls back to `clone`, whose flags a filter
//! can read) and, on vCPU and I/O threads, `openat` fail with `ENOENT`
//! (glibc's malloc opens `/proc/sys/vm/overcommit_memory` once, and copes).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::sandbox::{SeccompLevel, ThreadKind};

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// The KVM ioctls the VMM thread issues while building a VM (system, VM and
/// vCPU set-up).
#[cfg(target_arch = "x86_64")]
const KVM_SETUP_IOCTLS: &[u64] = &[
    0xae00,      // KVM_GET_API_VERSION
    0xae01,      // KVM_CREATE_VM
    0xc004_ae02, // KVM_GET_MSR_INDEX_LIST (the MSRs a snapshot saves)
    0xae03,      // KVM_CHECK_EXTENSION
    0xae04,      // KVM_GET_VCPU_MMAP_SIZE
    0xc008_ae05, // KVM_GET_SUPPORTED_CPUID
    0xae41,      // KVM_CREATE_VCPU
    0x4020_ae46, // KVM_SET_USER_MEMORY_REGION
    0xae47,      // KVM_SET_TSS_ADDR
    0x4008_ae48, // KVM_SET_IDENTITY_MAP_ADDR
    0xae60,      // KVM_CREATE_IRQCHIP
    0x4020_ae76, // KVM_IRQFD
    0x4040_ae77, // KVM_CREATE_PIT2
    0x4008_ae89, // KVM_SET_MSRS
    0x4008_ae90, // KVM_SET_CPUID2
    0x4004_ae99, // KVM_SET_MP_STATE
    0x4400_ae8f, // KVM_SET_LAPIC
    // Snapshots: the VM's state saved (snapshot thread) and restored (build).
    0xc208_ae62, // KVM_GET_IRQCHIP
    0x8208_ae63, // KVM_SET_IRQCHIP
    0x8070_ae9f, // KVM_GET_PIT2
    0x4070_aea0, // KVM_SET_PIT2
    0x8030_ae7c, // KVM_GET_CLOCK
    0x4030_ae7b, // KVM_SET_CLOCK
    0xaea2,      // KVM_SET_TSC_KHZ
    0x4080_aea2, // KVM_SET_DEBUGREGS
    0x4188_aea7, // KVM_SET_XCRS
    0x4048_ae9b, // KVM_SET_GUEST_DEBUG (the gdb stub runs the vCPUs on this thread)
];

/// The KVM ioctls a vCPU thread issues: `KVM_RUN` and what exit handling and
/// the emulation fallback need (registers, translation, event injection).
#[cfg(target_arch = "x86_64")]
const KVM_VCPU_IOCTLS: &[u64] = &[
    0xae80,      // KVM_RUN
    0x8090_ae81, // KVM_GET_REGS
    0x4090_ae82, // KVM_SET_REGS
    0x8138_ae83, // KVM_GET_SREGS
    0x4138_ae84, // KVM_SET_SREGS
    0xc018_ae85, // KVM_TRANSLATE
    0x81a0_ae8c, // KVM_GET_FPU
    0x41a0_ae8d, // KVM_SET_FPU
    0x8004_ae98, // KVM_GET_MP_STATE
    0x4004_ae99, // KVM_SET_MP_STATE
    0x8040_ae9f, // KVM_GET_VCPU_EVENTS
    0x4040_aea0, // KVM_SET_VCPU_EVENTS
    0x8188_aea6, // KVM_GET_XCRS
    0x9000_aea4, // KVM_GET_XSAVE (the fallback writes XMM registers through it)
    0x5000_aea5, // KVM_SET_XSAVE
    0x9000_aecf, // KVM_GET_XSAVE2
    // A snapshot saves each vCPU on its own thread.
    0xc008_ae91, // KVM_GET_CPUID2
    0xaea3,      // KVM_GET_TSC_KHZ
    0x8080_aea1, // KVM_GET_DEBUGREGS
    0x8400_ae8e, // KVM_GET_LAPIC
    0xc008_ae88, // KVM_GET_MSRS
];

/// Raising a level-triggered interrupt line from a device (any thread).
#[cfg(target_arch = "x86_64")]
const KVM_IRQ_IOCTLS: &[u64] = &[
    0x4008_ae61, // KVM_IRQ_LINE
    0xc008_ae67, // KVM_IRQ_LINE_STATUS
];

// Other hosts: the KVM numbers depend on struct sizes per architecture; until
// they are listed, any KVM ioctl (type 0xAE) passes there.
#[cfg(not(target_arch = "x86_64"))]
const KVM_SETUP_IOCTLS: &[u64] = &[];
#[cfg(not(target_arch = "x86_64"))]
const KVM_VCPU_IOCTLS: &[u64] = &[];
#[cfg(not(target_arch = "x86_64"))]
const KVM_IRQ_IOCTLS: &[u64] = &[];

/// TAP set-up (vm-device's `virtio/net/tap.rs`).
const TUN_IOCTLS: &[u64] = &[
    0x4004_54ca, // TUNSETIFF
    0x4004_54d0, // TUNSETOFFLOAD
    0x4004_54d8, // TUNSETVNETHDRSZ
];

/// The guest's driver acknowledging offload features (a vCPU's MMIO write).
const TUN_FEATURE_IOCTLS: &[u64] = &[
    0x4004_54d0, // TUNSETOFFLOAD
];

/// Descriptor and terminal ioctls glibc and std issue.
const FD_IOCTLS: &[u64] = &[libc::FIONBIO, libc::FIOCLEX, libc::TCGETS, libc::TIOCGWINSZ];

/// A condition on the low 32 bits of argument `arg`: every argument filtered
/// here is an `int` (or, for `clone`, has its flags there), and the kernel
/// does not promise what the upper half of an `int` register holds.
fn cond(
    arg: u8,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(conditions)
}

/// `ioctl` with one of `requests` (compared as the 32-bit value the kernel uses).
fn ioctl_rules(requests: &[&[u64]]) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let mut rules = Vec::new();
    for &r in requests.iter().copied().flatten() {
        rules.push(rule(vec![SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            r,
        )?])?);
    }
    if cfg!(not(target_arch = "x86_64")) {
        rules.push(rule(vec![SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(0xff00),
            0xae00,
        )?])?);
    }
    Ok(rules)
}

/// `mmap`/`mprotect` without `PROT_EXEC` (argument 2).
fn no_exec() -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    Ok(vec![rule(vec![cond(
        2,
        SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
        0,
    )?])?])
}

/// `mmap`/`mprotect` with `PROT_EXEC` or `PROT_WRITE` (argument 2), never
/// both: code a translator writes is made executable only once it is no
/// longer writable (W^X).
fn write_xor_exec() -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    Ok(vec![
        rule(vec![cond(
            2,
            SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
            0,
        )?])?,
        rule(vec![cond(
            2,
            SeccompCmpOp::MaskedEq(libc::PROT_WRITE as u64),
            0,
        )?])?,
    ])
}

/// `prctl` for thread names only (std names threads; the SIGSYS handler reads it).
fn prctl_names() -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    Ok(vec![
        rule(vec![cond(0, SeccompCmpOp::Eq, libc::PR_SET_NAME as u64)?])?,
        rule(vec![cond(0, SeccompCmpOp::Eq, libc::PR_GET_NAME as u64)?])?,
    ])
}

fn allow(rules: &mut Rules, syscalls: &[i64]) {
    for &nr in syscalls {
        rules.insert(nr, Vec::new());
    }
}

/// What any thread needs to live and end: memory (never executable),
/// futexes, signal returns, time, `read`/`write` on descriptors it already
/// has (eventfds, stderr for logs), `close` and `fcntl` (a thread that drops
/// the last handle on a device runs its clean-up), thread names, and signals
/// to this process's own threads.
fn minimal(rules: &mut Rules) -> Result<(), seccompiler::BackendError> {
    allow(
        rules,
        &[
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_close,
            libc::SYS_fcntl,
            libc::SYS_futex,
            libc::SYS_munmap,
            libc::SYS_madvise,
            libc::SYS_mremap,
            libc::SYS_brk,
            libc::SYS_rt_sigreturn,
            libc::SYS_rt_sigprocmask,
            libc::SYS_sigaltstack,
            libc::SYS_sched_yield,
            libc::SYS_clock_gettime,
            libc::SYS_clock_nanosleep,
            libc::SYS_nanosleep,
            libc::SYS_gettid,
            libc::SYS_getpid,
            libc::SYS_restart_syscall,
            libc::SYS_exit,
            libc::SYS_exit_group,
            libc::SYS_getrandom,
        ],
    );
    rules.insert(libc::SYS_mmap, no_exec()?);
    rules.insert(libc::SYS_mprotect, no_exec()?);
    rules.insert(libc::SYS_prctl, prctl_names()?);
    // Signals to this process's own threads only (vCPU kicks, glibc).
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    rules.insert(
        libc::SYS_tgkill,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::Eq,
            u64::try_from(pid).unwrap_or(u64::MAX),
        )?])?],
    );
    Ok(())
}

/// [`minimal`] and what vCPU, device I/O and VMM threads share: vectored and
/// positioned I/O, `poll`, `fcntl`, syncing files, and `openat` (denied softly
/// on vCPU and I/O threads, see the module docs).
fn common(rules: &mut Rules) -> Result<(), seccompiler::BackendError> {
    minimal(rules)?;
    allow(
        rules,
        &[
            libc::SYS_readv,
            libc::SYS_writev,
            libc::SYS_pread64,
            libc::SYS_pwrite64,
            libc::SYS_preadv,
            libc::SYS_pwritev,
            libc::SYS_lseek,
            libc::SYS_poll,
            libc::SYS_ppoll,
            libc::SYS_sched_getaffinity,
            libc::SYS_set_robust_list,
            libc::SYS_rseq,
            libc::SYS_fsync,
            libc::SYS_fdatasync,
            libc::SYS_openat,
        ],
    );
    Ok(())
}

/// An irqfd relay: [`minimal`] (the eventfd `read`, the interrupt
/// controller's lock and wake-ups) and the KVM interrupt-line ioctls.
fn irq_relay_rules() -> Result<Rules, seccompiler::BackendError> {
    let mut rules = Rules::new();
    minimal(&mut rules)?;
    rules.insert(libc::SYS_ioctl, ioctl_rules(&[KVM_IRQ_IOCTLS])?);
    Ok(rules)
}

/// A switch bridge: [`minimal`], `poll`, datagrams on its bound socket,
/// removing dead members' sockets, and listing the segment directory
/// (`openat` of a directory, read-only, no `O_CREAT`; `stat`, `getdents64`).
fn switch_bridge_rules() -> Result<Rules, seccompiler::BackendError> {
    let mut rules = Rules::new();
    minimal(&mut rules)?;
    allow(
        &mut rules,
        &[
            libc::SYS_poll,
            libc::SYS_ppoll,
            libc::SYS_sendto,
            libc::SYS_recvfrom,
            libc::SYS_unlink,
            libc::SYS_statx,
            libc::SYS_newfstatat,
            libc::SYS_fstat,
            libc::SYS_getdents64,
        ],
    );
    let flags = (libc::O_DIRECTORY | libc::O_ACCMODE | libc::O_CREAT) as u64;
    rules.insert(
        libc::SYS_openat,
        vec![rule(vec![cond(
            2,
            SeccompCmpOp::MaskedEq(flags),
            libc::O_DIRECTORY as u64,
        )?])?],
    );
    Ok(rules)
}

/// Serial console input: [`minimal`] (`read` on stdin, the port's lock, a
/// short sleep while the guest's FIFO is full).
fn serial_input_rules() -> Result<Rules, seccompiler::BackendError> {
    let mut rules = Rules::new();
    minimal(&mut rules)?;
    Ok(rules)
}

/// The daemon's VMM child on its control socket: [`minimal`] and socket
/// I/O on it (std and glibc use these on stream sockets).
fn control_rules() -> Result<Rules, seccompiler::BackendError> {
    let mut rules = Rules::new();
    minimal(&mut rules)?;
    allow(
        &mut rules,
        &[
            libc::SYS_sendto,
            libc::SYS_recvfrom,
            libc::SYS_sendmsg,
            libc::SYS_recvmsg,
            libc::SYS_poll,
            libc::SYS_writev,
        ],
    );
    Ok(rules)
}

fn vmm_rules() -> Result<Rules, seccompiler::BackendError> {
    let mut rules = Rules::new();
    common(&mut rules)?;
    allow(
        &mut rules,
        &[
            libc::SYS_newfstatat,
            libc::SYS_fstat,
            libc::SYS_statx,
            libc::SYS_getdents64,
            libc::SYS_access,
            libc::SYS_readlink,
            libc::SYS_getcwd,
            libc::SYS_mkdir,
            libc::SYS_rmdir,
            libc::SYS_unlink,
            libc::SYS_unlinkat,
            libc::SYS_rename,
            libc::SYS_fchmod,
            libc::SYS_fchmodat,
            libc::SYS_umask,
            libc::SYS_chmod,
            libc::SYS_ftruncate,
            libc::SYS_flock,
            libc::SYS_fallocate,
            libc::SYS_eventfd2,
            libc::SYS_pipe2,
            libc::SYS_dup,
            libc::SYS_dup3,
            libc::SYS_epoll_create1,
            libc::SYS_epoll_ctl,
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
            libc::SYS_socketpair,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_accept4,
            libc::SYS_connect,
            libc::SYS_sendto,
            libc::SYS_recvfrom,
            libc::SYS_sendmsg,
            libc::SYS_recvmsg,
            libc::SYS_shutdown,
            libc::SYS_setsockopt,
            libc::SYS_getsockopt,
            libc::SYS_getsockname,
            libc::SYS_getpeername,
            libc::SYS_rt_sigaction,
            libc::SYS_prlimit64,
            libc::SYS_getuid,
            libc::SYS_geteuid,
            libc::SYS_getgid,
            libc::SYS_getegid,
            libc::SYS_uname,
            libc::SYS_sysinfo,
            libc::SYS_set_tid_address,
            libc::SYS_membarrier,
            // clone3 answers ENOSYS (second program).
            libc::SYS_clone3,
        ],
    );
    // vCPU and device threads stack their own filters (which only restricts).
    rules.insert(
        libc::SYS_seccomp,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::Eq,
            u64::from(libc::SECCOMP_SET_MODE_FILTER),
        )?])?],
    );
    rules.insert(
        libc::SYS_prctl,
        [
            prctl_names()?,
            vec![rule(vec![cond(
                0,
                SeccompCmpOp::Eq,
                libc::PR_SET_NO_NEW_PRIVS as u64,
            )?])?],
        ]
        .concat(),
    );
    rules.insert(
        libc::SYS_ioctl,
        ioctl_rules(&[
            KVM_SETUP_IOCTLS,
            KVM_VCPU_IOCTLS,
            KVM_IRQ_IOCTLS,
            TUN_IOCTLS,
            FD_IOCTLS,
        ])?,
    );
    // Unix sockets only (switches, API and control sockets).
    rules.insert(
        libc::SYS_socket,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::Eq,
            libc::AF_UNIX as u64,
        )?])?],
    );
    // Threads only: no fork, no new process.
    rules.insert(
        libc::SYS_clone,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            libc::CLONE_THREAD as u64,
        )?])?],
    );
    // The process-wide filter lets executable mappings through under W^X
    // for the one kind that needs them (a translating vCPU, whose own
    // filter stacks on this one); every other kind's filter refuses them.
    rules.insert(libc::SYS_mmap, write_xor_exec()?);
    rules.insert(libc::SYS_mprotect, write_xor_exec()?);
    Ok(rules)
}

fn vcpu_rules() -> Result<Rules, seccompiler::BackendError> {
    let mut rules = Rules::new();
    common(&mut rules)?;
    // A NIC transmits on the vCPU thread that notified it.
    allow(&mut rules, &[libc::SYS_sendto, libc::SYS_sendmsg]);
    rules.insert(
        libc::SYS_ioctl,
        ioctl_rules(&[
            KVM_VCPU_IOCTLS,
            KVM_IRQ_IOCTLS,
            TUN_FEATURE_IOCTLS,
            FD_IOCTLS,
        ])?,
    );
    Ok(rules)
}

/// A vCPU whose engine translates guest code: [`vcpu_rules`], plus
/// executable mappings under W^X.
fn translating_vcpu_rules() -> Result<Rules, seccompiler::BackendError> {
    let mut rules = vcpu_rules()?;
    rules.insert(libc::SYS_mmap, write_xor_exec()?);
    rules.insert(libc::SYS_mprotect, write_xor_exec()?);
    Ok(rules)
}

fn device_io_rules() -> Result<Rules, seccompiler::BackendError> {
    let mut rules = Rules::new();
    common(&mut rules)?;
    allow(
        &mut rules,
        &[
            libc::SYS_sendto,
            libc::SYS_recvfrom,
            libc::SYS_sendmsg,
            libc::SYS_recvmsg,
        ],
    );
    rules.insert(libc::SYS_ioctl, ioctl_rules(&[KVM_IRQ_IOCTLS, FD_IOCTLS])?);
    Ok(rules)
}

/// The allow list of `kind` (syscall number: argument rules, none = any).
fn rules_for(kind: ThreadKind) -> Result<Rules, seccompiler::BackendError> {
    match kind {
        ThreadKind::Vmm => vmm_rules(),
        ThreadKind::Vcpu => vcpu_rules(),
        ThreadKind::TranslatingVcpu => translating_vcpu_rules(),
        ThreadKind::DeviceIo => device_io_rules(),
        ThreadKind::IrqRelay => irq_relay_rules(),
        ThreadKind::SwitchBridge => switch_bridge_rules(),
        ThreadKind::SerialInput => serial_input_rules(),
        ThreadKind::Control => control_rules(),
    }
}

/// The allow-list program and the "deny softly" program for `kind`.
pub(super) fn programs(
    kind: ThreadKind,
    level: SeccompLevel,
) -> Result<Vec<BpfProgram>, seccompiler::Error> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let on_violation = match level {
        SeccompLevel::Log => SeccompAction::Trap,
        SeccompLevel::Off | SeccompLevel::Kill => SeccompAction::KillProcess,
    };
    // glibc's malloc may open `/proc/sys/vm/overcommit_memory` on any
    // thread: a file `openat` answers ENOENT everywhere but on the VMM thread.
    let files = vec![rule(vec![cond(
        2,
        SeccompCmpOp::MaskedEq(libc::O_DIRECTORY as u64),
        0,
    )?])?];
    let soft = match kind {
        ThreadKind::Vmm => vec![(libc::SYS_clone3, libc::ENOSYS, vec![])],
        ThreadKind::SwitchBridge => vec![(libc::SYS_openat, libc::ENOENT, files)],
        _ => vec![(libc::SYS_openat, libc::ENOENT, vec![])],
    };
    let rules = rules_for(kind)?;
    // Installed in this order: the allow list last, so it need not allow
    // installing filters (seccompiler sets PR_SET_NO_NEW_PRIVS each time).
    let mut programs = Vec::new();
    for (nr, errno, conditions) in soft {
        let errno = u32::try_from(errno).unwrap_or(1);
        let rules = Rules::from([(nr, conditions)]);
        programs.push(
            SeccompFilter::new(
                rules,
                SeccompAction::Allow,
                SeccompAction::Errno(errno),
                arch,
            )?
            .try_into()?,
        );
    }
    programs.push(SeccompFilter::new(rules, on_violation, SeccompAction::Allow, arch)?.try_into()?);
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_compiles_at_every_filtering_level() {
        for kind in ThreadKind::ALL {
            for level in [SeccompLevel::Log, SeccompLevel::Kill] {
                let programs = programs(kind, level).expect("compiles");
                // The soft-deny program first, the allow list last.
                assert_eq!(programs.len(), 2, "{kind:?}");
                assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
            }
        }
    }

    #[test]
    fn only_a_translating_vcpu_may_map_code_and_never_writable() {
        let exec_rules = |kind| rules_for(kind).expect("compiles")[&libc::SYS_mprotect].len();
        for kind in ThreadKind::ALL {
            // One rule: no PROT_EXEC; two (either bit clear): W^X.
            let want = match kind {
                ThreadKind::Vmm | ThreadKind::TranslatingVcpu => 2,
                _ => 1,
            };
            assert_eq!(exec_rules(kind), want, "{kind:?}");
        }
    }

    #[test]
    fn every_thread_list_is_a_subset_of_the_vmm_list() {
        let vmm = vmm_rules().expect("vmm");
        for kind in ThreadKind::ALL.into_iter().skip(1) {
            let rules = rules_for(kind).expect("compiles");
            for nr in rules.keys() {
                assert!(
                    vmm.contains_key(nr),
                    "{kind:?} allows syscall {nr}, the VMM does not"
                );
            }
            for nr in [
                libc::SYS_socket,
                libc::SYS_clone,
                libc::SYS_clone3,
                libc::SYS_execve,
                libc::SYS_seccomp,
            ] {
                assert!(!rules.contains_key(&nr), "{kind:?} allows syscall {nr}");
            }
        }
        for nr in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_mount,
            libc::SYS_kill,
            libc::SYS_bpf,
        ] {
            assert!(!vmm.contains_key(&nr), "the VMM allows syscall {nr}");
        }
    }
}
