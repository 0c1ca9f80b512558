//! PIO exit round trip (`KVM_RUN` -> `KVM_EXIT_IO` -> back) through our
//! `Vcpu::run()` versus a minimal raw `kvm-ioctls` loop, on the same guest in
//! the same run: a real-mode `out 0x80, al; jmp` loop, one exit per iteration.
//! Goal: ours <= 1.10x raw. Besides criterion's report, `main` prints medians
//! of alternated batches and their ratio, and the same for our vCPU loop on a
//! thread with the sandbox's seccomp filters against one without (written to
//! `target/bench/extra/kvm_exit_seccomp.json` for `cargo xtask bench`).

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod pio {
    use criterion::Criterion;
    use kvm_bindings::kvm_userspace_memory_region;
    use kvm_ioctls::{Kvm, VcpuExit as RawExit, VcpuFd, VmFd};
    use std::hint::black_box;
    use std::time::{Duration, Instant};
    use vm_accel::kvm::KvmAccelerator;
    use vm_accel::{
        Accelerator, GuestAddress, GuestMemoryMmap, Registers, Vcpu, VcpuExit, VcpuId, VmOptions,
    };
    use vm_memory::Bytes;

    const CODE: u64 = 0x1000;
    const MEM: usize = 0x10000;
    /// `out 0x80, al; jmp short -4`.
    const GUEST: [u8; 4] = [0xe6, 0x80, 0xeb, 0xfc];

    /// Our path: VM, memory and vCPU through the vm-accel traits.
    pub(crate) struct Ours {
        vcpu: Box<dyn Vcpu>,
        _mem: GuestMemoryMmap,
    }

    impl Ours {
        fn new(kvm: &KvmAccelerator) -> Self {
            let vm = kvm
                .create_vm(&VmOptions {
                    in_kernel_irqchip: false,
                    ..VmOptions::default()
                })
                .expect("create VM");
            let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).expect("RAM");
            mem.write_slice(&GUEST, GuestAddress(CODE))
                .expect("load guest");
            vm.map_memory(&mem).expect("map RAM");
            let mut vcpu = vm.create_vcpu(VcpuId(0)).expect("vCPU");
            let mut sregs = vcpu.x86_64_special_registers().expect("sregs");
            sregs.cs.base = 0;
            sregs.cs.selector = 0;
            vcpu.set_x86_64_special_registers(&sregs).expect("sregs");
            let Registers::X86_64(mut regs) = vcpu.registers().expect("regs") else {
                unreachable!("KVM on x86_64 runs x86_64 vCPUs")
            };
            regs.rip = CODE;
            regs.rflags = 2;
            vcpu.set_registers(&Registers::X86_64(regs)).expect("regs");
            Self { vcpu, _mem: mem }
        }

        #[inline]
        fn exit(&mut self) {
            match self.vcpu.run() {
                Ok(VcpuExit::IoOut { port, data }) => {
                    black_box((port, data));
                }
                other => panic!("unexpected exit {other:?}"),
            }
        }
    }

    /// The baseline: the same guest through kvm-ioctls only.
    pub(crate) struct Raw {
        vcpu: VcpuFd,
        _vm: VmFd,
        _mem: GuestMemoryMmap,
    }

    impl Raw {
        fn new(kvm: &Kvm) -> Self {
            let vm = kvm.create_vm().expect("create VM");
            let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).expect("RAM");
            mem.write_slice(&GUEST, GuestAddress(CODE))
                .expect("load guest");
            let host = vm_memory::GuestMemoryBackend::iter(&mem)
                .next()
                .expect("one region")
                .as_ptr() as u64;
            let region = kvm_userspace_memory_region {
                slot: 0,
                flags: 0,
                guest_phys_addr: 0,
                memory_size: MEM as u64,
                userspace_addr: host,
            };
            // SAFETY: `host` is the start of `mem`'s MEM-byte mapping, which this
            // struct owns for as long as the VM exists.
            unsafe { vm.set_user_memory_region(region) }.expect("memory slot");
            let vcpu = vm.create_vcpu(0).expect("vCPU");
            let mut sregs = vcpu.get_sregs().expect("sregs");
            sregs.cs.base = 0;
            sregs.cs.selector = 0;
            vcpu.set_sregs(&sregs).expect("sregs");
            let mut regs = vcpu.get_regs().expect("regs");
            regs.rip = CODE;
            regs.rflags = 2;
            vcpu.set_regs(&regs).expect("regs");
            Self {
                vcpu,
                _vm: vm,
                _mem: mem,
            }
        }

        #[inline]
        fn exit(&mut self) {
            match self.vcpu.run() {
                Ok(RawExit::IoOut(port, data)) => {
                    black_box((port, data));
                }
                other => panic!("unexpected exit {other:?}"),
            }
        }
    }

    fn batch(mut exit: impl FnMut(), n: u32) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            exit();
        }
        start.elapsed() / n
    }

    /// Criterion groups plus an alternated-batch ratio, or KVM reported missing.
    pub(crate) fn run(c: &mut Criterion) {
        let (ours_kvm, raw_kvm) = match (KvmAccelerator::new(), Kvm::new()) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) => {
                return test_prerequisites::prerequisite_missing(format_args!("kvm_exit: {e}"))
            }
            (_, Err(e)) => {
                return test_prerequisites::prerequisite_missing(format_args!(
                    "kvm_exit: /dev/kvm: {e}"
                ))
            }
        };
        let mut ours = Ours::new(&ours_kvm);
        let mut raw = Raw::new(&raw_kvm);

        let mut group = c.benchmark_group("pio_exit_round_trip");
        group.bench_function("raw_kvm_ioctls", |b| b.iter(|| raw.exit()));
        group.bench_function("vm_accel_vcpu_run", |b| b.iter(|| ours.exit()));
        group.finish();

        // Alternate short batches (swapping which goes first) so drift on this
        // shared machine hits both alike; the ratio is the median of per-pair ratios.
        let (pairs, per_batch) = (201, 500);
        let m = benches::alternate(
            pairs,
            || batch(|| ours.exit(), per_batch),
            || batch(|| raw.exit(), per_batch),
        );
        println!(
            "kvm_exit: PIO round trip, {pairs} alternated pairs of {per_batch}-exit batches: \
             median raw kvm-ioctls {:?}, median vm-accel Vcpu::run {:?}, \
             median per-pair ratio ours/raw {:.3} (goal <= 1.10)",
            m.peer, m.ours, m.ratio
        );
        filters_ratio(&ours_kvm, pairs, per_batch);
    }

    /// A thread that owns one of our vCPUs and runs batches of exits on request.
    struct Runner {
        work: std::sync::mpsc::Sender<u32>,
        done: std::sync::mpsc::Receiver<Duration>,
    }

    impl Runner {
        /// `filtered`: the thread first stacks the VMM and vCPU seccomp filters
        /// (level 2), as a sandboxed VMM's vCPU thread does.
        fn spawn(kvm: &KvmAccelerator, filtered: bool) -> Self {
            let mut vcpu = Ours::new(kvm);
            let (work, work_rx) = std::sync::mpsc::channel::<u32>();
            let (done_tx, done) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                if filtered {
                    use vm_service::sandbox::{filter_current_thread, SeccompLevel, ThreadKind};
                    filter_current_thread(&[ThreadKind::Vmm, ThreadKind::Vcpu], SeccompLevel::Kill)
                        .expect("seccomp filters");
                }
                while let Ok(n) = work_rx.recv() {
                    if done_tx.send(batch(|| vcpu.exit(), n)).is_err() {
                        break;
                    }
                }
            });
            Self { work, done }
        }

        fn batch(&self, n: u32) -> Duration {
            self.work.send(n).expect("runner alive");
            self.done.recv().expect("runner alive")
        }
    }

    /// The same exit loop on a vCPU thread with the sandbox's filters and on
    /// one without, alternated in one run: what the filters cost per exit.
    fn filters_ratio(kvm: &KvmAccelerator, pairs: usize, per_batch: u32) {
        let (with, without) = (Runner::spawn(kvm, true), Runner::spawn(kvm, false));
        let m = benches::alternate(pairs, || with.batch(per_batch), || without.batch(per_batch));
        let (w, o, ratio) = (m.ours, m.peer, m.ratio);
        println!(
            "kvm_exit: seccomp filters (VMM + vCPU, level 2) vs none, {pairs} alternated pairs: \
             median {w:?} vs {o:?} per exit, median per-pair ratio {ratio:.3}"
        );
        benches::write_extra(
            "kvm_exit_seccomp.json",
            &serde_json::json!({
                "area": "kvm_exit",
                "name": "PIO exit with seccomp filters (vs none)",
                "ours_ns": w.as_secs_f64() * 1e9,
                "peer_name": "same vCPU loop without filters",
                "peer_ns": o.as_secs_f64() * 1e9,
                "runs": pairs,
                "goal": "<= 1.05x the unfiltered time",
            }),
        );
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn main() {
    let mut c = criterion::Criterion::default()
        .configure_from_args()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(benches::measurement_time(std::time::Duration::from_secs(5)));
    pio::run(&mut c);
    c.final_summary();
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn main() {
    test_prerequisites::prerequisite_missing("kvm_exit: needs KVM on an x86_64 Linux host");
}
