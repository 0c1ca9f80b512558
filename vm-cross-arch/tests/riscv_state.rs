//! Interpreter snapshot state: a hart saved mid-run and restored into a new
//! VM (with a copy of guest memory) goes on exactly as the original does,
//! an MMIO load in flight completes after restore, and states the hart could
//! never have produced are refused without changing the hart.

use std::sync::Arc;

use vm_accel::{BootState, GuestAddress, Registers, Vcpu, VcpuExit, VcpuId, Vm};
use vm_cross_arch::interp::riscv64::state::{HartState, MmioLoadState};
use vm_cross_arch::interp::riscv64::{RiscvVcpu, RiscvVm, Tier};
use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

const RAM: u64 = 0x8000_0000;
const MEM: usize = 4 << 20;

/// A change that makes a hart state impossible.
type Spoil = Box<dyn Fn(&mut HartState)>;

fn r_type(f7: u32, rs2: u32, rs1: u32, f3: u32, rd: u32, op: u32) -> u32 {
    (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op
}
fn addi(rd: u32, rs1: u32, imm: i32) -> u32 {
    ((imm as u32 & 0xfff) << 20) | (rs1 << 15) | (rd << 7) | 0x13
}
const A0: u32 = 10;
const A1: u32 = 11;
const A2: u32 = 12;
const T0: u32 = 5;

/// a2 = 31; loop: a0 = a0 * a2 + a1; a1 += 1; j loop — a running hash.
fn hash_loop() -> Vec<u32> {
    vec![
        addi(A2, 0, 31),
        r_type(1, A2, A0, 0, A0, 0x33), // mul a0, a0, a2
        r_type(0, A1, A0, 0, A0, 0x33), // add a0, a0, a1
        addi(A1, A1, 1),
        0xff5f_f06f, // j -12
    ]
}

/// Every execution tier: each test runs in each.
const TIERS: [Tier; 3] = [Tier::Interpret, Tier::Translate, Tier::TranslateAll];

fn vm_with(tier: Tier, code: &[u32]) -> (Arc<RiscvVm>, RiscvVcpu, GuestMemoryMmap<()>) {
    let vm = Arc::new(RiscvVm::new(1).expect("vm"));
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(RAM), MEM)]).expect("mem");
    vm.map_memory(&mem).expect("map");
    let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(RAM)).expect("code");
    let mut vcpu = vm.create_riscv_vcpu(VcpuId(0)).expect("vcpu");
    vcpu.hart_mut().set_tier(tier);
    vcpu.apply_boot_state(&BootState::Riscv64 {
        entry: GuestAddress(RAM),
        hart_id: 0,
        fdt: GuestAddress(0),
    })
    .expect("boot state");
    (vm, vcpu, mem)
}

fn copy_memory(from: &GuestMemoryMmap<()>, to: &GuestMemoryMmap<()>) {
    for region in from.iter() {
        let mut buf = vec![0u8; region.len() as usize];
        from.read_slice(&mut buf, region.start_addr())
            .expect("read");
        to.write_slice(&buf, region.start_addr()).expect("write");
    }
}

fn x(vcpu: &RiscvVcpu) -> [u64; 32] {
    match vcpu.registers().expect("regs") {
        Registers::Riscv64(r) => r.x,
        other => panic!("{other:?}"),
    }
}

/// In one tier: tiers may end a run at different instructions (a
/// translating one ends a run-loop chunk early rather than interpret a
/// block that does not fit in it), so a hart and its copy are compared in
/// the same tier.
#[test]
fn a_restored_hart_goes_on_exactly_like_the_original() {
    for tier in TIERS {
        restored_goes_on_like_the_original(tier);
    }
}

fn restored_goes_on_like_the_original(tier: Tier) {
    let (vm, mut original, mem) = vm_with(tier, &hash_loop());
    original.set_budget(50_000);
    assert!(matches!(
        original.run().expect("run"),
        VcpuExit::Interrupted
    ));
    let state = original.state();
    let machine = original.machine().state();

    let (vm2, mut restored, mem2) = vm_with(tier, &[0; 4]);
    copy_memory(&mem, &mem2);
    restored.machine().restore(&machine).expect("machine");
    restored.restore(&state).expect("hart");
    assert_eq!(restored.state(), state);

    for v in [&mut original, &mut restored] {
        v.set_budget(30_000);
        assert!(matches!(v.run().expect("run"), VcpuExit::Interrupted));
    }
    assert_eq!(x(&original), x(&restored), "{tier:?}");
    assert_eq!(
        original.hart().instret(),
        restored.hart().instret(),
        "{tier:?}"
    );
    assert_ne!(x(&original)[A0 as usize], 0);
    drop((vm, vm2));
}

#[test]
fn an_mmio_load_in_flight_completes_after_restore() {
    for tier in TIERS {
        mmio_load_completes_after_restore(tier);
    }
}

fn mmio_load_completes_after_restore(tier: Tier) {
    // t0 = 0x10000000 (the UART); a0 = lw 0(t0); a0 += 1; j .
    let code = [
        0x1000_02b7, // lui t0, 0x10000
        (T0 << 15) | (2 << 12) | (A0 << 7) | 0x03,
        addi(A0, A0, 1),
        0x0000_006f,
    ];
    let (_vm, mut original, mem) = vm_with(tier, &code);
    let exit = original.run().expect("run");
    assert!(
        matches!(
            exit,
            VcpuExit::MmioRead {
                addr: 0x1000_0000,
                ..
            }
        ),
        "{exit:?}"
    );
    let state = original.state();
    assert!(state.mmio_load.is_some());

    let (_vm2, mut restored, mem2) = vm_with(tier, &[0; 4]);
    copy_memory(&mem, &mem2);
    restored.restore(&state).expect("hart");
    restored.hart_mut().mmio_data()[..4].copy_from_slice(&41u32.to_le_bytes());
    restored.set_budget(100);
    assert!(matches!(
        restored.run().expect("run"),
        VcpuExit::Interrupted
    ));
    assert_eq!(x(&restored)[A0 as usize], 42);
}

#[test]
fn impossible_states_are_refused_and_leave_the_hart_alone() {
    let (_vm, mut vcpu, _mem) = vm_with(Tier::default(), &hash_loop());
    vcpu.set_budget(1000);
    vcpu.run().expect("run");
    let good = vcpu.state();
    let cases: Vec<(&str, Spoil)> = vec![
        ("mode 2", Box::new(|s| s.mode = 2)),
        ("other hart", Box::new(|s| s.id = 3)),
        ("satp mode 15", Box::new(|s| s.csr.satp = 15 << 60)),
        ("mstatus bits", Box::new(|s| s.csr.mstatus = u64::MAX)),
        ("mie bits", Box::new(|s| s.csr.mie = 1 << 40)),
        ("pmp", Box::new(|s| s.csr.pmpaddr = vec![0; 100_000])),
        (
            "mmio rd",
            Box::new(|s| {
                s.mmio_load = Some(MmioLoadState {
                    rd: 40,
                    size: 4,
                    unsigned: false,
                    fp: false,
                    len: 4,
                });
            }),
        ),
        ("hsm", Box::new(|s| s.hsm = 9)),
        ("console", Box::new(|s| s.console = vec![0; 2 << 20])),
    ];
    for (what, spoil) in cases {
        let mut bad = good.clone();
        spoil(&mut bad);
        assert!(vcpu.restore(&bad).is_err(), "{what} was accepted");
        assert_eq!(vcpu.state(), good, "{what}: the hart changed");
    }
    // A reservation outside RAM is dropped, not kept as a wild address.
    let mut far = good.clone();
    far.reservation = Some((1 << 50, 7));
    vcpu.restore(&far).expect("restore");
    assert_eq!(vcpu.state().reservation, None);
    assert_eq!(
        vcpu.machine().state().clint.msip.len(),
        1,
        "one hart, one msip"
    );
}
